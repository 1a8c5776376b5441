//! First-contact requests sealed with the Noise `X` one-way pattern.
//!
//! `X`: `<- s ... -> e, es, s, ss`. The sender knows the recipient's request
//! key from their card; the single message carries the sender's static key
//! (encrypted) and, as payload, an encoded [`v1::Payload`] with the sender's
//! card. Weaker than a session message, and documented as such: no forward
//! secrecy against compromise of the recipient's request key, and the
//! message is replayable (the replay guard stops that).

use snow::{Builder, params::NoiseParams};

use crate::{identity::Identity, keys::Curve25519Key, proto::v1};

const PATTERN: &str = "Noise_X_25519_ChaChaPoly_SHA256";
const PROLOGUE: &[u8] = b"ferry/contact-request/v1";
/// Noise's own message size limit.
const NOISE_MAX: usize = 65535;

fn params() -> Option<NoiseParams> {
    PATTERN.parse().ok()
}

/// Seals `payload` to `recipient`'s request key; `None` if it is too large or
/// the key is unusable.
pub(crate) fn seal(
    sender: &Identity,
    recipient: &Curve25519Key,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let secret = sender.request_secret().to_bytes();
    let mut state = Builder::new(params()?)
        .prologue(PROLOGUE)
        .ok()?
        .local_private_key(&secret)
        .ok()?
        .remote_public_key(recipient.as_bytes())
        .ok()?
        .build_initiator()
        .ok()?;
    let mut out = vec![0u8; NOISE_MAX];
    let len = state.write_message(payload, &mut out).ok()?;
    out.truncate(len);
    Some(out)
}

/// Opens a request: returns the sender's request key (authenticated by the
/// `ss` exchange) and the payload; `None` on any failure.
pub(crate) fn open(recipient: &Identity, message: &[u8]) -> Option<(Curve25519Key, Vec<u8>)> {
    let secret = recipient.request_secret().to_bytes();
    let mut state = Builder::new(params()?)
        .prologue(PROLOGUE)
        .ok()?
        .local_private_key(&secret)
        .ok()?
        .build_responder()
        .ok()?;
    let mut payload = vec![0u8; message.len()];
    let len = state.read_message(message, &mut payload).ok()?;
    payload.truncate(len);
    let remote: [u8; 32] = state.get_remote_static()?.try_into().ok()?;
    Some((Curve25519Key::from_bytes(remote), payload))
}

/// Builds the request payload.
pub(crate) fn payload(card: v1::ContactCard, introduction: &str) -> v1::Payload {
    v1::Payload {
        kind: Some(v1::payload::Kind::ContactRequest(v1::ContactRequest {
            card: Some(card),
            introduction: introduction.to_owned(),
        })),
    }
}
