//! Message identity and the lifecycle of a message we sent.

use std::{fmt, str::FromStr};

use thiserror::Error;

/// A message ID: 16 random bytes chosen by the sender. Displays (and
/// parses) as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// The 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// From a byte slice of exactly 16 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(bytes).ok().map(Self)
    }
}

impl From<[u8; 16]> for MessageId {
    fn from(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Logs never carry a message ID or a prefix of one (a leaked log
        // must not match a captured device's history): a keyed label, as
        // for identity keys, tells them apart within this process.
        write!(f, "MessageId(~{})", crate::keys::debug_label(&self.0))
    }
}

/// A string that is not 32 hex digits.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("a message ID is 32 hex digits")]
pub struct InvalidMessageId;

impl FromStr for MessageId {
    type Err = InvalidMessageId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.as_bytes();
        if s.len() != 32 {
            return Err(InvalidMessageId);
        }
        let mut out = [0u8; 16];
        for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16).ok_or(InvalidMessageId);
            let (Some(&hi), Some(&lo)) = (pair.first(), pair.get(1)) else {
                return Err(InvalidMessageId);
            };
            *byte = u8::try_from(digit(hi)? << 4 | digit(lo)?).map_err(|_| InvalidMessageId)?;
        }
        Ok(Self(out))
    }
}

/// Why a message we sent will not (or may not) arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailReason {
    /// Its session was dropped before a receipt came (too many newer
    /// sessions with the contact, or their keys changed): the recipient
    /// probably cannot read it. Send it again if it matters; a receipt may
    /// still follow if the recipient kept the session.
    Unreadable,
    /// The contact was removed while it travelled; it keeps travelling
    /// (it cannot be recalled) but its receipt can no longer be matched.
    ContactRemoved,
}

impl FailReason {
    /// A stable, lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable",
            Self::ContactRemoved => "contact-removed",
        }
    }
}

/// Where a message we sent is. Statuses only move forward, in this order,
/// except that `Failed(Unreadable)` may still be followed by `Delivered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageStatus {
    /// Durable in our outbox: it survives a crash and will be sent.
    Queued,
    /// It left this device: published on the gossip overlay to at least
    /// one peer, handed over a direct link, or written to a bundle.
    Sent,
    /// A peer says it holds it: the peer's side of a reconciliation round
    /// included the envelope. It is the peer's claim, not a proof: a
    /// dishonest relay can claim it and drop the envelope (as it can drop
    /// one it really took), so apps show it as "handed on", never as
    /// "safe"; only `Delivered` is end to end.
    Carried,
    /// The recipient's node opened it and stored it durably (its receipt
    /// came back). It does not mean a person has read it: the recipient's
    /// app may not have fetched it yet.
    Delivered,
    /// Its lifetime ended without a receipt; it is gone from every store
    /// that follows the rules.
    Expired,
    /// It failed: see the reason.
    Failed(FailReason),
}

impl MessageStatus {
    /// A stable, lowercase name (`queued`, `sent`, `carried`, `delivered`,
    /// `expired`, `failed`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Carried => "carried",
            Self::Delivered => "delivered",
            Self::Expired => "expired",
            Self::Failed(_) => "failed",
        }
    }

    /// Whether nothing can follow it (`Delivered`, `Expired`).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Expired)
    }

    /// Whether `next` may replace `self`: forward only, and never anything
    /// after a final status.
    pub fn may_become(self, next: MessageStatus) -> bool {
        if self.is_final() {
            return false;
        }
        match (self, next) {
            (Self::Failed(_), Self::Delivered | Self::Expired) => true,
            (Self::Failed(_), _) => false,
            _ => next.rank() > self.rank(),
        }
    }

    fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Sent => 1,
            Self::Carried => 2,
            Self::Failed(_) => 3,
            Self::Delivered => 4,
            Self::Expired => 4,
        }
    }

    fn code(self) -> (u8, u8) {
        match self {
            Self::Queued => (0, 0),
            Self::Sent => (1, 0),
            Self::Carried => (2, 0),
            Self::Delivered => (3, 0),
            Self::Expired => (4, 0),
            Self::Failed(FailReason::Unreadable) => (5, 0),
            Self::Failed(FailReason::ContactRemoved) => (5, 1),
        }
    }

    fn from_code(status: u8, reason: u8) -> Option<Self> {
        Some(match (status, reason) {
            (0, _) => Self::Queued,
            (1, _) => Self::Sent,
            (2, _) => Self::Carried,
            (3, _) => Self::Delivered,
            (4, _) => Self::Expired,
            (5, 0) => Self::Failed(FailReason::Unreadable),
            (5, 1) => Self::Failed(FailReason::ContactRemoved),
            _ => return None,
        })
    }
}

/// A status as stored: the status and when it was reached (our clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRecord {
    /// The status.
    pub status: MessageStatus,
    /// When it was reached (seconds, our clock).
    pub at: u64,
}

impl StatusRecord {
    /// The stored form: status, reason, time (big-endian), 10 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (status, reason) = self.status.code();
        let mut out = Vec::with_capacity(10);
        out.push(status);
        out.push(reason);
        out.extend_from_slice(&self.at.to_be_bytes());
        out
    }

    /// Parses the stored form.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (&[status, reason], rest) = bytes.split_first_chunk::<2>()?;
        let at = u64::from_be_bytes(*rest.first_chunk::<8>()?);
        Some(Self {
            status: MessageStatus::from_code(status, reason)?,
            at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_round_trip_through_their_display_form() {
        let id = MessageId([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(id.to_string().parse::<MessageId>(), Ok(id));
        assert_eq!("ab".parse::<MessageId>(), Err(InvalidMessageId));
        assert_eq!("zz".repeat(16).parse::<MessageId>(), Err(InvalidMessageId));
        assert_eq!("é".repeat(16).parse::<MessageId>(), Err(InvalidMessageId));
    }

    #[test]
    fn statuses_only_move_forward() {
        use MessageStatus::*;
        assert!(Queued.may_become(Sent));
        assert!(Sent.may_become(Carried));
        assert!(!Carried.may_become(Sent));
        assert!(Carried.may_become(Delivered));
        assert!(!Delivered.may_become(Expired));
        assert!(!Expired.may_become(Delivered));
        assert!(Failed(FailReason::Unreadable).may_become(Delivered));
        assert!(!Failed(FailReason::Unreadable).may_become(Carried));
        for status in [
            Queued,
            Sent,
            Carried,
            Delivered,
            Expired,
            Failed(FailReason::Unreadable),
        ] {
            let record = StatusRecord { status, at: 7 };
            assert_eq!(StatusRecord::decode(&record.encode()), Some(record));
        }
        assert_eq!(StatusRecord::decode(&[9, 0, 0]), None);
    }
}
