//! The outbox record: what the sender remembers about a message until its
//! receipt arrives or it expires. Fixed layout, 72 bytes:
//! `message_id(16) || recipient identity key(32) || delivery secret(16) ||
//! expiry u64 BE(8)`.

pub(crate) struct OutboxRecord {
    pub(crate) message_id: [u8; 16],
    pub(crate) to: [u8; 32],
    pub(crate) secret: [u8; 16],
    pub(crate) expiry: u64,
}

const LEN: usize = 16 + 32 + 16 + 8;

impl OutboxRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEN);
        out.extend_from_slice(&self.message_id);
        out.extend_from_slice(&self.to);
        out.extend_from_slice(&self.secret);
        out.extend_from_slice(&self.expiry.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != LEN {
            return None;
        }
        let (message_id, rest) = bytes.split_first_chunk::<16>()?;
        let (to, rest) = rest.split_first_chunk::<32>()?;
        let (secret, rest) = rest.split_first_chunk::<16>()?;
        let expiry = u64::from_be_bytes(*rest.first_chunk::<8>()?);
        Some(Self {
            message_id: *message_id,
            to: *to,
            secret: *secret,
            expiry,
        })
    }
}
