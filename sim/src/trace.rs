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
/// [`TraceError`] for the first malformed line.
pub fn parse(text: &str) -> Result<Vec<TraceEvent>, TraceError> {
    let mut events = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = raw.split_whitespace().collect();
        let time: f64 = field(&parts, 0, "time", line)?;
        if !time.is_finite() || time < 0.0 {
            return Err(TraceError {
                line,
                reason: "time must be a non-negative number".into(),
            });
        }
        match parts.get(1).copied() {
            Some("CONN") => {
                let up = match parts.get(4).copied() {
                    Some("up") => true,
                    Some("down") => false,
                    _ => {
                        return Err(TraceError {
                            line,
                            reason: "expected up or down".into(),
                        });
                    }
                };
                events.push(TraceEvent::Contact {
                    time,
                    a: field(&parts, 2, "host", line)?,
                    b: field(&parts, 3, "host", line)?,
                    up,
                });
            }
            Some("C") => events.push(TraceEvent::Message {
                time,
                id: field(&parts, 2, "message id", line)?,
                from: field(&parts, 3, "source host", line)?,
                to: field(&parts, 4, "destination host", line)?,
                size: field(&parts, 5, "size", line)?,
            }),
            _ => {
                return Err(TraceError {
                    line,
                    reason: "expected CONN or C".into(),
                });
            }
        }
    }
    Ok(events)
}
