//! The ONE simulator's external-events format, the lingua franca of DTN
//! studies:
//!
//! ```text
//! <time> CONN <a> <b> up|down        a contact between hosts a and b
//! <time> C <msgId> <from> <to> <size> a message is created
//! ```
//!
//! Times are seconds (decimals allowed), hosts are integers. Lines starting
//! with `#` and blank lines are ignored.

use thiserror::Error;

/// A parse error, with its 1-based line number.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct TraceError {
    /// Line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// One event of a trace.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceEvent {
    /// A contact starts or ends.
    Contact {
        /// Seconds.
        time: f64,
        /// One host.
        a: u32,
        /// The other host.
        b: u32,
        /// Up or down.
        up: bool,
    },
    /// A message is created.
    Message {
        /// Seconds.
        time: f64,
        /// The trace's message ID.
        id: String,
        /// Source host.
        from: u32,
        /// Destination host.
        to: u32,
        /// Size in bytes.
        size: u32,
    },
}

impl TraceEvent {
    /// The event's time in seconds.
    pub fn time(&self) -> f64 {
        match self {
            Self::Contact { time, .. } | Self::Message { time, .. } => *time,
        }
    }
}

fn field<T: std::str::FromStr>(
    parts: &[&str],
    i: usize,
    what: &str,
    line: usize,
) -> Result<T, TraceError> {
    parts
        .get(i)
        .ok_or_else(|| TraceError {
            line,
            reason: format!("missing {what}"),
        })?
        .parse()
        .map_err(|_| TraceError {
            line,
            reason: format!("bad {what}"),
        })
}

/// Parses a trace (contacts and/or message creations).
///
/// # Errors
/// [`TraceError`] for the first malformed line (see [`parse_lines`]).
pub fn parse(text: &str) -> Result<Vec<TraceEvent>, TraceError> {
    Ok(parse_lines(text, Duplicates::Refuse)?
        .events
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

/// Parses a trace strictly, keeping each event's line number. Besides the
/// syntax, refused: extra tokens, negative or unsorted times, a contact of
/// a host with itself, a second `up` of a contact already up, a `down` of
/// a contact not up, a message to its own source, a message ID used twice. With
/// [`Duplicates::Ignore`], a second `up` is skipped and counted instead, as
/// the ONE simulator does (its own Helsinki trace has one).
///
/// # Errors
/// [`TraceError`] for the first bad line.
pub fn parse_lines(text: &str, duplicates: Duplicates) -> Result<Parsed, TraceError> {
    let mut events = Vec::new();
    let mut duplicate_ups = 0;
    let mut last_time = 0.0f64;
    let mut up = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let fail = |reason: String| TraceError { line, reason };
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = raw.split_whitespace().collect();
        let time: f64 = field(&parts, 0, "time", line)?;
        if !time.is_finite() || time < 0.0 {
            return Err(fail("time must be a non-negative number".into()));
        }
        if time < last_time {
            return Err(fail(format!(
                "time {time} is before the previous line's {last_time}: lines must be sorted by time"
            )));
        }
        last_time = time;
        let expect = |count: usize, form: &str| {
            if parts.len() > count {
                Err(fail(format!(
                    "unexpected {:?} after the {count} fields of `{form}`",
                    parts.get(count).copied().unwrap_or_default()
                )))
            } else {
                Ok(())
            }
        };
        let event = match parts.get(1).copied() {
            Some("CONN") => {
                let is_up = match parts.get(4).copied() {
                    Some("up") => true,
                    Some("down") => false,
                    _ => return Err(fail("expected up or down".into())),
                };
                expect(5, "<time> CONN <a> <b> up|down")?;
                let a: u32 = field(&parts, 2, "host", line)?;
                let b: u32 = field(&parts, 3, "host", line)?;
                if a == b {
                    return Err(fail(format!("host {a} in contact with itself")));
                }
                let key = (a.min(b), a.max(b));
                if is_up && !up.insert(key) {
                    if duplicates == Duplicates::Ignore {
                        duplicate_ups += 1;
                        continue;
                    }
                    return Err(fail(format!(
                        "contact {a}-{b} is already up (set `duplicate_up = \"ignore\"` in [trace] to skip such lines, as ONE does)"
                    )));
                }
                if !is_up && !up.remove(&key) {
                    return Err(fail(format!("contact {a}-{b} goes down but is not up")));
                }
                TraceEvent::Contact {
                    time,
                    a,
                    b,
                    up: is_up,
                }
            }
            Some("C") => {
                expect(6, "<time> C <id> <from> <to> <size>")?;
                let id: String = field(&parts, 2, "message id", line)?;
                let from: u32 = field(&parts, 3, "source host", line)?;
                let to: u32 = field(&parts, 4, "destination host", line)?;
                let size: u32 = field(&parts, 5, "size", line)?;
                if from == to {
                    return Err(fail(format!("message {id} is addressed to its own source")));
                }
                if size == 0 {
                    return Err(fail(format!("message {id} has size 0")));
                }
                if !ids.insert(id.clone()) {
                    return Err(fail(format!("message ID {id} is used twice")));
                }
                TraceEvent::Message {
                    time,
                    id,
                    from,
                    to,
                    size,
                }
            }
            _ => return Err(fail("expected CONN or C".into())),
        };
        events.push((line, event));
    }
    Ok(Parsed {
        events,
        duplicate_ups,
    })
}

/// What to do with a second `up` of a contact already up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Duplicates {
    /// An error (the default: it usually means a broken trace).
    #[default]
    Refuse,
    /// Skipped and counted.
    Ignore,
}

/// A parsed trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// Events with their 1-based line numbers.
    pub events: Vec<(usize, TraceEvent)>,
    /// Second `up` lines skipped ([`Duplicates::Ignore`]).
    pub duplicate_ups: u64,
}
