//! Replays the checked-in fuzz corpus (`fuzz/corpus/<target>/`) through the
//! same decoders and invariants as the libFuzzer targets, so every input the
//! fuzzers ever kept is checked on stable in every CI run (threat item 9).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use std::{fs, path::PathBuf};

use ferry_core::contact::ContactCard;
use ferry_proto::{WireMessage, decode, encode, v1};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let inputs: Vec<Vec<u8>> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} missing: {e}", dir.display()))
        .map(|entry| fs::read(entry.unwrap().path()).unwrap())
        .collect();
    assert!(!inputs.is_empty(), "corpus {target} is empty");
    inputs
}

fn reencodes<T: WireMessage + PartialEq + std::fmt::Debug>(data: &[u8]) -> bool {
    match decode::<T>(data) {
        Ok(value) => {
            assert_eq!(decode::<T>(&encode(&value)).unwrap(), value);
            true
        }
        Err(_) => false,
    }
}

#[test]
fn envelope_corpus() {
    let valid = corpus("envelope")
        .iter()
        .filter(|d| reencodes::<v1::Envelope>(d))
        .count();
    assert!(valid > 0, "no valid envelope in the corpus");
}

#[test]
fn sync_frame_corpus() {
    let valid = corpus("sync_frame")
        .iter()
        .filter(|d| reencodes::<v1::SyncFrame>(d))
        .count();
    assert!(valid > 0);
}

#[test]
fn bundle_header_corpus() {
    let valid = corpus("bundle_header")
        .iter()
        .filter(|d| reencodes::<v1::BundleHeader>(d))
        .count();
    assert!(valid > 0);
}

#[test]
fn payload_corpus() {
    for data in corpus("payload") {
        let _ = decode::<v1::EnvelopeContent>(&data);
        let card = match decode::<v1::Payload>(&data) {
            Ok(v1::Payload {
                kind: Some(v1::payload::Kind::ContactRequest(req)),
            }) => req.card,
            _ => None,
        };
        if let Some(card) = card {
            let _ = ContactCard::from_wire(&card);
        }
    }
}

#[test]
fn contact_card_corpus() {
    let mut verified = 0;
    for data in corpus("contact_card") {
        if let Ok(card) = ContactCard::from_bytes(&data) {
            assert_eq!(ContactCard::from_bytes(&card.to_bytes()).unwrap(), card);
            verified += 1;
        }
    }
    assert!(
        verified > 0,
        "the corpus should keep at least the valid seed card"
    );
}

#[test]
fn contact_code_corpus() {
    let mut verified = 0;
    for data in corpus("contact_code") {
        if let Ok(text) = std::str::from_utf8(&data) {
            verified += usize::from(ContactCard::from_code(text).is_ok());
        }
    }
    assert!(verified > 0);
}
