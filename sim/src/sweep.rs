//! Sweeps: one run per combination of values of any scalar keys.
//!
//! ```toml
//! [sweep]
//! seed = [1, 2, 3]
//! ttl_secs = [1800, 3600]
//! "routing.strategy" = ["epidemic", "spray-and-wait"]
//! "mobility.group.mules.count" = [0, 5, 10]   # a group, by its name
//! "trace.events" = ["week1.txt", "week2.txt"]
//! ```
//!
//! A key is a dotted path into the scenario; inside an array of tables
//! (`mobility.group`) the next part names the element by its `name`.
//! `strategy`, `copies` and `bandwidth_bytes_per_sec` are short for their
//! keys under `routing` and `link`. Every combination is checked like a
//! scenario of its own; seeds vary fastest, so runs that differ only by
//! seed are adjacent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::{Scenario, SimError};

/// Values to sweep, by key.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(transparent)]
pub struct Sweep(pub BTreeMap<String, Vec<Value>>);

/// A swept value as written in TOML.
pub fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// The full path of a key (expanding the short forms).
fn full_path(key: &str) -> &str {
    match key {
        "strategy" => "routing.strategy",
        "copies" => "routing.copies",
        "bandwidth_bytes_per_sec" => "link.bandwidth_bytes_per_sec",
        other => other,
    }
}

/// Sets `path` in `table` to `value`.
fn set(table: &mut Table, path: &str, value: Value) -> Result<(), String> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut current = table;
    let mut i = 0;
    while let Some(part) = parts.get(i) {
        if i + 1 == parts.len() {
            if let Some(old) = current.get(*part)
                && (old.is_table() || old.is_array())
            {
                return Err(format!("`{path}` is a table or array, not a value"));
            }
            current.insert((*part).to_owned(), value);
            return Ok(());
        }
        let entry = current
            .entry((*part).to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        current = match entry {
            Value::Table(t) => t,
            Value::Array(items) => {
                let Some(name) = parts.get(i + 1) else {
                    return Err(format!("`{path}`: name an element of `{part}`"));
                };
                i += 1;
                let found = items.iter_mut().find_map(|v| match v {
                    Value::Table(t) if t.get("name").and_then(Value::as_str) == Some(*name) => {
                        Some(t)
                    }
                    _ => None,
                });
                found.ok_or_else(|| format!("`{path}`: `{part}` has no element named {name:?}"))?
            }
            _ => return Err(format!("`{path}`: `{part}` is not a table")),
        };
        i += 1;
    }
    Err(format!("`{path}`: empty key"))
}

/// The runs `scenario`'s sweep expands to (the scenario itself without
/// one), each checked.
///
/// # Errors
/// [`SimError::Scenario`] naming the swept key and value of every
/// combination that is not a valid scenario.
pub(crate) fn expand(scenario: &Scenario) -> Result<Vec<Scenario>, SimError> {
    let Some(sweep) = &scenario.sweep else {
        return Ok(vec![scenario.clone()]);
    };
    let file = &scenario.source.file;
    let mut base = Scenario {
        sweep: None,
        ..scenario.clone()
    };
    base.swept.clear();
    let base_table = match Value::try_from(&base) {
        Ok(Value::Table(t)) => t,
        _ => {
            return Err(SimError::Scenario(format!(
                "{file}: the scenario cannot be swept"
            )));
        }
    };
    // One key once (a short form and its full path are the same key), each
    // value once: a repeated seed would count as an independent run.
    let mut paths = std::collections::HashSet::new();
    for (key, values) in &sweep.0 {
        if !paths.insert(full_path(key)) {
            return Err(SimError::Scenario(format!(
                "{file}: [sweep] {key}: swept twice (as `{key}` and as `{}`)",
                full_path(key)
            )));
        }
        for (i, v) in values.iter().enumerate() {
            if values.iter().skip(i + 1).any(|w| w == v) {
                return Err(SimError::Scenario(format!(
                    "{file}: [sweep] {key}: the value {} is given twice",
                    show(v)
                )));
            }
        }
    }
    // Seeds vary fastest.
    let mut keys: Vec<(&String, &Vec<Value>)> = sweep.0.iter().collect();
    keys.sort_by_key(|(k, _)| full_path(k) == "seed");
    let mut combos: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (key, values) in keys {
        if values.is_empty() {
            return Err(SimError::Scenario(format!(
                "{file}: [sweep] {key} = []: give at least one value"
            )));
        }
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((key.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    let mut runs = Vec::with_capacity(combos.len());
    let mut problems = Vec::new();
    for combo in combos {
        let mut table = base_table.clone();
        let described = combo
            .iter()
            .map(|(k, v)| format!("{k} = {}", show(v)))
            .collect::<Vec<_>>()
            .join(", ");
        let mut failed = false;
        for (key, value) in &combo {
            if let Err(e) = set(&mut table, full_path(key), value.clone()) {
                problems.push(format!("{file}: [sweep] {e}"));
                failed = true;
            }
        }
        if failed {
            continue;
        }
        let run: Result<Scenario, _> = Value::Table(table).try_into();
        match run {
            Ok(mut run) => {
                run.source = scenario.source.clone();
                run.swept = combo.into_iter().collect();
                match run.validate() {
                    Ok(()) => runs.push(run),
                    Err(e) => problems.push(format!("[sweep] {described}:\n{e}")),
                }
            }
            Err(e) => problems.push(format!("{file}: [sweep] {described}: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(runs)
    } else {
        problems.dedup();
        Err(SimError::Scenario(problems.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_reach_tables_and_named_array_elements() {
        let mut t: Table = toml::from_str(
            "ttl_secs = 1.0\n[mobility]\nwidth = 1.0\n[[mobility.group]]\nname = \"mules\"\ncount = 2\n",
        )
        .unwrap_or_default();
        assert!(set(&mut t, "ttl_secs", Value::Integer(5)).is_ok());
        assert!(set(&mut t, "mobility.group.mules.count", Value::Integer(7)).is_ok());
        assert!(set(&mut t, "buffers.default_bytes", Value::Integer(9)).is_ok());
        assert!(set(&mut t, "mobility.group.cars.count", Value::Integer(1)).is_err());
        assert!(set(&mut t, "mobility", Value::Integer(1)).is_err());
        assert_eq!(
            t.get("mobility")
                .and_then(|m| m.get("group"))
                .and_then(|g| g.get(0))
                .and_then(|g| g.get("count"))
                .and_then(Value::as_integer),
            Some(7)
        );
    }
}
