//! Strict input: every value a researcher can get wrong is refused with the
//! file, the line and what is valid, all problems of a file at once.

use std::fmt::Display;

/// Collects problems found in one scenario file.
pub(crate) struct Checker<'a> {
    file: &'a str,
    text: Option<&'a str>,
    problems: Vec<String>,
}

/// The 1-based line where `key` is set in the `index`-th occurrence of
/// table `table` (`""` for the top level; `[[name]]` arrays count their
/// occurrences, plain tables are occurrence 0).
fn line_of(text: &str, table: &str, index: usize, key: &str) -> Option<usize> {
    let mut current = String::new();
    let mut occurrence: std::collections::HashMap<String, usize> = Default::default();
    let mut current_index = 0;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line
            .strip_prefix("[[")
            .and_then(|l| l.split("]]").next())
            .map(str::trim)
        {
            let count = occurrence.entry(name.to_owned()).or_default();
            current = name.to_owned();
            current_index = *count;
            *count += 1;
            if key.is_empty() && current == table && current_index == index {
                return Some(n + 1);
            }
            continue;
        }
        if let Some(name) = line
            .strip_prefix('[')
            .and_then(|l| l.split(']').next())
            .map(str::trim)
        {
            current = name.to_owned();
            current_index = 0;
            if key.is_empty() && current == table {
                return Some(n + 1);
            }
            continue;
        }
        if current == table
            && current_index == index
            && !key.is_empty()
            && let Some(rest) = line.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some(n + 1);
        }
    }
    None
}

impl<'a> Checker<'a> {
    pub(crate) fn new(file: &'a str, text: Option<&'a str>) -> Self {
        Self {
            file,
            text,
            problems: Vec::new(),
        }
    }

    /// `file:line` of a key (the table's header, or just the file, when
    /// the key is not written out: a default).
    fn place(&self, table: &str, index: usize, key: &str) -> String {
        let line = self
            .text
            .and_then(|t| line_of(t, table, index, key).or_else(|| line_of(t, table, index, "")));
        match line {
            Some(line) => format!("{}:{line}", self.file),
            None => self.file.to_owned(),
        }
    }

    /// Records a problem with `table.key` (its `index`-th occurrence).
    pub(crate) fn fail(
        &mut self,
        table: &str,
        index: usize,
        key: &str,
        value: impl Display,
        valid: &str,
    ) {
        let place = self.place(table, index, key);
        let name = if table.is_empty() {
            key.to_owned()
        } else if key.is_empty() {
            format!("[{table}]")
        } else {
            format!("[{table}] {key}")
        };
        self.problems
            .push(format!("{place}: {name} = {value}: {valid}"));
    }

    /// Records a problem that is not about one key.
    pub(crate) fn fail_at(&mut self, table: &str, index: usize, problem: String) {
        let place = self.place(table, index, "");
        self.problems.push(format!("{place}: {problem}"));
    }

    /// A number that must be finite and `> 0`.
    pub(crate) fn positive(&mut self, table: &str, index: usize, key: &str, v: f64) {
        if !(v.is_finite() && v > 0.0) {
            self.fail(table, index, key, v, "must be a number > 0");
        }
    }

    /// A number that must be finite and `>= 0`.
    pub(crate) fn non_negative(&mut self, table: &str, index: usize, key: &str, v: f64) {
        if !(v.is_finite() && v >= 0.0) {
            self.fail(table, index, key, v, "must be a number ≥ 0");
        }
    }

    /// A `[low, high]` range of finite numbers with `min <= low <= high`.
    pub(crate) fn range(
        &mut self,
        table: &str,
        index: usize,
        key: &str,
        [lo, hi]: [f64; 2],
        min: f64,
    ) {
        if !(lo.is_finite() && hi.is_finite() && lo >= min && lo <= hi) {
            self.fail(
                table,
                index,
                key,
                format!("[{lo}, {hi}]"),
                &format!("must be [low, high] with {min} ≤ low ≤ high"),
            );
        }
    }

    /// The problems, or `Ok` if there were none.
    pub(crate) fn finish(self) -> Result<(), crate::SimError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(crate::SimError::Scenario(self.problems.join("\n")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::line_of;

    #[test]
    fn keys_are_found_in_their_table_and_occurrence() {
        let text = "name = \"x\"\nttl_secs = 5\n[routing]\ncopies = 1\n[[partition]]\nat_secs = 1\n[[partition]]\nat_secs = 2\n";
        assert_eq!(line_of(text, "", 0, "ttl_secs"), Some(2));
        assert_eq!(line_of(text, "routing", 0, "copies"), Some(4));
        assert_eq!(line_of(text, "partition", 1, "at_secs"), Some(8));
        assert_eq!(line_of(text, "partition", 1, ""), Some(7));
        assert_eq!(line_of(text, "routing", 0, "strategy"), None);
    }
}
