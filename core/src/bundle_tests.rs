#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;

fn sample() -> Vec<Vec<u8>> {
    vec![vec![1; 100], vec![2; 700], vec![3; MAX_ENVELOPE_LEN]]
}

fn bundle() -> Vec<u8> {
    encode(&sample(), 1_700_000_000, &mut rand::rng()).unwrap()
}

#[test]
fn a_bundle_round_trips() {
    let bytes = bundle();
    let decoded = decode(&bytes, BundleLimits::default()).unwrap();
    assert_eq!(decoded.created_at, 1_700_000_000);
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
        let err = decode(&bytes[..len], BundleLimits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                BundleError::NotABundle | BundleError::Truncated | BundleError::Digest
            ),
            "{len}: {err:?}"
        );
    }
    let mut padded = bytes.clone();
    padded.push(0);
    assert!(decode(&padded, BundleLimits::default()).is_err());
}

#[test]
fn every_bit_flip_is_refused() {
    let bytes = bundle();
    // Every byte of the header, the first records and the trailer; a
    // sample of the rest.
    let positions = (0..2000)
        .chain((2000..bytes.len()).step_by(97))
        .chain(bytes.len() - 96..bytes.len());
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
fn a_bundle_re_signed_with_another_key_is_refused() {
    let bytes = bundle();
    let body_end = bytes.len() - TRAILER_LEN;
    let digest: [u8; 32] = bytes[body_end..body_end + 32].try_into().unwrap();
    let other = SigningKey::from_bytes(&[9; 32]);
    let mut forged = bytes[..body_end + 32].to_vec();
    forged.extend_from_slice(&other.sign(&signed_message(&digest)).to_bytes());
    assert_eq!(
        decode(&forged, BundleLimits::default()).unwrap_err(),
        BundleError::Signature
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
    // A count of four billion in a small file: refused by the limit, and
    // without the limit by the missing records, never by allocation.
    let mut huge = bytes.clone();
    huge[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        decode(&huge, BundleLimits::default()),
        Err(BundleError::TooLarge(_))
    ));
    let unlimited = BundleLimits {
        max_envelopes: u32::MAX,
        max_bytes: u64::MAX,
    };
    assert!(decode(&huge, unlimited).is_err());
}

#[test]
fn other_files_and_versions_are_named() {
    assert_eq!(
        decode(b"PNG\x89 not a bundle at all", BundleLimits::default()).unwrap_err(),
        BundleError::NotABundle
    );
    let mut v2 = bundle();
    v2[8] = 2;
    assert_eq!(
        decode(&v2, BundleLimits::default()).unwrap_err(),
        BundleError::Version(2)
    );
    assert!(matches!(
        encode(&[vec![]], 0, &mut rand::rng()),
        Err(BundleError::RecordLength(0))
    ));
}
