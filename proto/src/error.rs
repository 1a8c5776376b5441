use thiserror::Error;

/// Why bytes from outside were not accepted as a wire message.
///
/// Callers treat every variant the same way: drop the input (and, for a peer,
/// count it against the peer's score). The variants exist for logs and tests.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is longer than the message type allows; it was not parsed.
    #[error("input of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Length of the rejected input.
        len: usize,
        /// The limit for this message type.
        max: usize,
    },
    /// The input is not a valid protobuf encoding of the message type.
    #[error("malformed protobuf: {0}")]
    Malformed(#[source] prost::DecodeError),
    /// The message carries a version this build does not speak.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion {
        /// Which message's version.
        what: &'static str,
        /// The version found.
        version: u32,
    },
    /// A field breaks a structural rule (wrong length, too many items, …).
    #[error("invalid {field}: {rule}")]
    Invalid {
        /// The offending field, as `Message.field`.
        field: &'static str,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The input decodes, but is not the one canonical encoding of its value
    /// (unknown fields, non-minimal varints, repeated or reordered fields,
    /// explicit defaults). Refused for signed structures, whose signature
    /// covers only the known fields: any other bytes would be free for an
    /// attacker to choose. Drop the input.
    #[error("non-canonical encoding of {what}")]
    NonCanonical {
        /// Which message type.
        what: &'static str,
    },
}

impl DecodeError {
    pub(crate) const fn invalid(field: &'static str, rule: &'static str) -> Self {
        Self::Invalid { field, rule }
    }
}
