#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;

fn sample() -> Vec<Vec<u8>> {
    vec![vec![1; 100], vec![2; 700], vec![3; MAX_ENVELOPE_LEN]]
}

fn bundle() -> Vec<u8> {
    encode(&sample(), 1_700_000_000, &mut rand::rng()).unwrap()
}

/// The header and the body of an encoded bundle.
fn split(bytes: &[u8]) -> (BundleHeader, Vec<u8>) {
    let len = u32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let header = proto::decode::<BundleHeader>(&bytes[12..12 + len]).unwrap();
    (header, bytes[12 + len..].to_vec())
}

fn join(header: &BundleHeader, body: &[u8]) -> Vec<u8> {
    let header = proto::encode(header);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    out
}

#[test]
fn a_bundle_round_trips() {
    let bytes = bundle();
    let decoded = decode(&bytes, BundleLimits::default()).unwrap();
    assert_eq!(decoded.created_at, 1_700_000_000);
    assert_eq!(signer_key(&bytes), Some(decoded.key));
    let got: Vec<Vec<u8>> = decoded.envelopes.iter().map(|e| e.to_vec()).collect();
    assert_eq!(got, sample());
    // A fresh key each time: two bundles of the same envelopes differ.
    assert_ne!(
        decode(&bundle(), BundleLimits::default()).unwrap().key,
        decoded.key
    );
}

#[test]
fn every_truncation_is_refused() {
    let bytes = bundle();
    for len in 0..bytes.len() {
        assert!(
            decode(&bytes[..len], BundleLimits::default()).is_err(),
            "cut at {len}"
        );
    }
    let mut padded = bytes.clone();
    padded.push(0);
    assert_eq!(
        decode(&padded, BundleLimits::default()).unwrap_err(),
        BundleError::Truncated
    );
}

#[test]
fn every_bit_flip_is_refused() {
    let bytes = bundle();
    // Every byte of the header and the first records; a sample of the rest.
    let positions = (0..2000).chain((2000..bytes.len()).step_by(97));
    for i in positions {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x10;
        assert!(
            decode(&flipped, BundleLimits::default()).is_err(),
            "flip at {i}"
        );
    }
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let (mut header, body) = split(&bundle());
    let other = SigningKey::from_bytes(&[9; 32]);
    header.signature = other.sign(&signed_message(&header)).to_bytes().to_vec();
    assert_eq!(
        decode(&join(&header, &body), BundleLimits::default()).unwrap_err(),
        BundleError::Signature
    );
}

#[test]
fn a_changed_body_under_a_re_signed_header_fails_the_digest() {
    let (header, mut body) = split(&bundle());
    body[10] ^= 1;
    // The attacker may re-sign, but the digest in the header still names
    // the original body.
    assert_eq!(
        decode(&join(&header, &body), BundleLimits::default()).unwrap_err(),
        BundleError::Digest
    );
}

#[test]
fn limits_are_checked_before_the_records_are_read() {
    let bytes = bundle();
    let few = BundleLimits {
        max_envelopes: 2,
        ..BundleLimits::default()
    };
    assert!(matches!(decode(&bytes, few), Err(BundleError::TooLarge(_))));
    let small = BundleLimits {
        max_bytes: 1000,
        ..BundleLimits::default()
    };
    assert!(matches!(
        decode(&bytes, small),
        Err(BundleError::TooLarge(_))
    ));
    // Four billion envelopes claimed by a properly signed header in a
    // small file: refused by the limit, and without the limit by the
    // missing records, never by allocation.
    let (mut header, body) = split(&bytes);
    header.envelope_count = u32::MAX;
    let key = SigningKey::from_bytes(&[5; 32]);
    header.signer_key = key.verifying_key().as_bytes().to_vec();
    header.signature = key.sign(&signed_message(&header)).to_bytes().to_vec();
    let huge = join(&header, &body);
    assert!(matches!(
        decode(&huge, BundleLimits::default()),
        Err(BundleError::TooLarge(_))
    ));
    let unlimited = BundleLimits {
        max_envelopes: u32::MAX,
        max_bytes: u64::MAX,
    };
    assert_eq!(
        decode(&huge, unlimited).unwrap_err(),
        BundleError::Truncated
    );
}

#[test]
fn other_files_and_versions_are_named() {
    assert_eq!(
        decode(b"PNG\x89 not a bundle at all", BundleLimits::default()).unwrap_err(),
        BundleError::NotABundle
    );
    let (mut header, body) = split(&bundle());
    header.version = 2;
    assert!(matches!(
        decode(&join(&header, &body), BundleLimits::default()),
        Err(BundleError::Header(_))
    ));
    assert!(matches!(
        encode(&[vec![]], 0, &mut rand::rng()),
        Err(BundleError::RecordLength(0))
    ));
}
