//! Size limits and fixed lengths of the wire format.
//!
//! They are part of the protocol: changing one is a wire-format change.

/// Current version of every versioned message in [`crate::v1`].
pub const WIRE_VERSION: u32 = 1;

/// Length of a content ID (SHA-256).
pub const CONTENT_ID_LEN: usize = 32;
/// Length of a recipient tag.
pub const RECIPIENT_TAG_LEN: usize = 16;
/// Length of an application message ID.
pub const MESSAGE_ID_LEN: usize = 16;
/// Length of every public key on the wire (Ed25519, X25519, Curve25519).
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a delivery commitment and of a delivery secret.
pub const DELIVERY_COMMITMENT_LEN: usize = 16;
/// Length of a range fingerprint in reconciliation.
pub const FINGERPRINT_LEN: usize = 16;
/// Longest proof-of-work stamp.
pub const MAX_STAMP_LEN: usize = 32;

/// The only lengths a sealed envelope body may have: every payload is padded
/// to one of these buckets so that its size reveals as little as possible.
pub const SEALED_BODY_BUCKETS: [usize; 5] = [512, 2048, 8192, 32 * 1024, 64 * 1024];
/// The largest bucket.
pub const MAX_SEALED_BODY_LEN: usize = 64 * 1024;
/// Largest encoded envelope: the largest body plus the cleartext header.
pub const MAX_ENVELOPE_LEN: usize = MAX_SEALED_BODY_LEN + 256;

/// Most one-time prekeys a card or a top-up carries.
pub const MAX_ONE_TIME_KEYS: usize = 32;
/// Longest display name on a card, in bytes.
pub const MAX_DISPLAY_NAME_LEN: usize = 64;
/// Largest encoded contact card.
pub const MAX_CARD_LEN: usize = 2048;
/// Longest introduction in a contact request, in bytes.
pub const MAX_INTRODUCTION_LEN: usize = 512;
/// Largest encoded plaintext inside an envelope (content or payload).
pub const MAX_PAYLOAD_LEN: usize = MAX_SEALED_BODY_LEN;
/// Most IDs in one receipt.
pub const MAX_RECEIPT_IDS: usize = 256;

/// Largest encoded sync frame (a batch of envelopes is the largest kind).
pub const MAX_SYNC_FRAME_LEN: usize = 1024 * 1024 + 4096;
/// Most ranges in one reconciliation round.
pub const MAX_RECONCILE_RANGES: usize = 4096;
/// Most IDs in one ID list, want list or delivered list.
pub const MAX_IDS_PER_FRAME: usize = 16 * 1024;
/// Most envelopes in one batch.
pub const MAX_ENVELOPES_PER_BATCH: usize = 1024;

/// Largest encoded bundle header.
pub const MAX_BUNDLE_HEADER_LEN: usize = 512;

/// Longest lifetime (expiry − now) any node accepts on an envelope. Nodes
/// choose their own, lower limit; an envelope beyond this one breaks the
/// protocol and its forwarder is penalised.
pub const MAX_LIFETIME_SECS: u64 = 30 * 24 * 3600;
/// Clock difference between nodes tolerated on top of
/// [`MAX_LIFETIME_SECS`] before an envelope counts as invalid.
pub const MAX_CLOCK_SKEW_SECS: u64 = 24 * 3600;
