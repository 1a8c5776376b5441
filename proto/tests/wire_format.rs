//! Round trips of every wire message, structural rules, and the guarantee
//! that no byte string makes a decoder panic (threat item 9).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use ferry_proto::{DecodeError, WireMessage, decode, encode, limits::*, v1};
use proptest::prelude::*;

fn envelope(body_len: usize) -> v1::Envelope {
    v1::Envelope {
        version: 1,
        content_id: vec![1; CONTENT_ID_LEN],
        expiry: 1_700_003_600,
        hop_limit: 7,
        copy_budget: 8,
        recipient_tag: vec![2; RECIPIENT_TAG_LEN],
        stamp: vec![3; 8],
        sealed_body: vec![4; body_len],
        delivery_commitment: vec![5; DELIVERY_COMMITMENT_LEN],
    }
}

fn card() -> v1::ContactCard {
    v1::ContactCard {
        version: 1,
        identity_key: vec![1; 32],
        olm_identity_key: vec![2; 32],
        request_key: vec![3; 32],
        fallback_key: vec![4; 32],
        one_time_keys: vec![vec![5; 32], vec![6; 32]],
        display_name: "Zoë".into(),
        issued_at: 1_700_000_000,
        signature: vec![7; 64],
    }
}

fn payloads() -> Vec<v1::Payload> {
    use v1::payload::Kind;
    [
        Kind::Text(v1::TextMessage {
            message_id: vec![9; 16],
            sent_at: 5,
            body: b"hi".to_vec(),
            delivery_secret: vec![6; 16],
        }),
        Kind::Receipt(v1::DeliveryReceipt {
            message_ids: vec![vec![1; 16]],
            content_ids: vec![vec![2; 32]],
            delivery_secrets: vec![vec![3; 16]],
            receipt_secret: Vec::new(),
        }),
        Kind::ContactRequest(v1::ContactRequest {
            card: Some(card()),
            introduction: "hello".into(),
        }),
        Kind::PrekeyTopUp(v1::PrekeyTopUp {
            one_time_keys: vec![vec![8; 32]; 3],
            fallback_key: vec![],
        }),
    ]
    .into_iter()
    .map(|k| v1::Payload { kind: Some(k) })
    .collect()
}

fn sync_frames() -> Vec<v1::SyncFrame> {
    use v1::{reconcile_range::Payload, sync_frame::Kind};
    let range = |upper: Vec<u8>, payload| v1::ReconcileRange {
        upper_bound: upper,
        payload: Some(payload),
    };
    [
        Kind::Reconcile(v1::Reconcile {
            ranges: vec![
                range(vec![0x40], Payload::Skip(true)),
                range(
                    vec![0x80, 1],
                    Payload::Fingerprint(v1::Fingerprint {
                        digest: vec![1; 16],
                        count: 42,
                    }),
                ),
                range(vec![], Payload::IdList(vec![3; 64])),
            ],
        }),
        Kind::Want(v1::WantEnvelopes { ids: vec![4; 96] }),
        Kind::Envelopes(v1::EnvelopeBatch {
            envelopes: vec![envelope(512), envelope(2048)],
        }),
        Kind::Delivered(v1::DeliveredIds {
            proofs: vec![v1::DeliveryProof {
                content_id: vec![5; 32],
                secret: vec![6; 16],
                expiry: 9,
            }],
        }),
    ]
    .into_iter()
    .map(|k| v1::SyncFrame {
        version: 1,
        kind: Some(k),
    })
    .collect()
}

fn bundle_header() -> v1::BundleHeader {
    v1::BundleHeader {
        version: 1,
        created_at: 1_700_000_000,
        envelope_count: 12,
        body_digest: vec![1; 32],
        signer_key: vec![2; 32],
        signature: vec![3; 64],
    }
}

fn round_trip<T: WireMessage + PartialEq + std::fmt::Debug>(value: &T) {
    let bytes = encode(value);
    assert!(bytes.len() <= T::MAX_ENCODED_LEN);
    assert_eq!(&decode::<T>(&bytes).unwrap(), value);
}

#[test]
fn every_message_type_round_trips() {
    for len in SEALED_BODY_BUCKETS {
        round_trip(&envelope(len));
    }
    round_trip(&card());
    for p in payloads() {
        round_trip(&p);
    }
    round_trip(&v1::EnvelopeContent {
        body: Some(v1::envelope_content::Body::Olm(v1::OlmMessage {
            message_type: 0,
            ciphertext: vec![1, 2, 3],
        })),
    });
    round_trip(&v1::EnvelopeContent {
        body: Some(v1::envelope_content::Body::ContactRequest(vec![7; 100])),
    });
    for f in sync_frames() {
        round_trip(&f);
    }
    round_trip(&bundle_header());
}

#[test]
fn the_largest_envelope_fits_its_limit() {
    let mut e = envelope(MAX_SEALED_BODY_LEN);
    e.stamp = vec![0xff; MAX_STAMP_LEN];
    e.expiry = u64::MAX;
    e.hop_limit = u32::MAX;
    e.copy_budget = u32::MAX;
    round_trip(&e);
}

#[test]
fn size_is_checked_before_parsing() {
    // Valid protobuf (one huge bytes field) but over the limit: refused unread.
    let mut e = envelope(512);
    e.sealed_body = vec![0; MAX_ENVELOPE_LEN];
    let bytes = encode(&e);
    assert!(matches!(
        decode::<v1::Envelope>(&bytes),
        Err(DecodeError::TooLarge { .. })
    ));
    let garbage = vec![0xff; MAX_BUNDLE_HEADER_LEN + 1];
    assert!(matches!(
        decode::<v1::BundleHeader>(&garbage),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn structural_rules_are_enforced() {
    type Mutation = Box<dyn Fn(&mut v1::Envelope)>;
    let bad_envelopes: Vec<Mutation> = vec![
        Box::new(|e| e.version = 2),
        Box::new(|e| e.version = 0),
        Box::new(|e| e.content_id.pop().map(drop).unwrap_or(())),
        Box::new(|e| e.recipient_tag.push(0)),
        Box::new(|e| e.stamp = vec![0; MAX_STAMP_LEN + 1]),
        Box::new(|e| e.sealed_body = vec![0; 513]),
        Box::new(|e| e.sealed_body.clear()),
        Box::new(|e| e.delivery_commitment.pop().map(drop).unwrap_or(())),
    ];
    for (i, mutate) in bad_envelopes.iter().enumerate() {
        let mut e = envelope(512);
        mutate(&mut e);
        assert!(
            decode::<v1::Envelope>(&encode(&e)).is_err(),
            "envelope mutation {i} accepted"
        );
    }

    let mut c = card();
    c.one_time_keys = vec![vec![0; 32]; MAX_ONE_TIME_KEYS + 1];
    assert!(decode::<v1::ContactCard>(&encode(&c)).is_err());
    let mut c = card();
    c.display_name = "x".repeat(MAX_DISPLAY_NAME_LEN + 1);
    assert!(decode::<v1::ContactCard>(&encode(&c)).is_err());
    let mut c = card();
    c.signature.pop();
    assert!(decode::<v1::ContactCard>(&encode(&c)).is_err());

    let frame = |kind| v1::SyncFrame {
        version: 1,
        kind: Some(kind),
    };
    use v1::sync_frame::Kind;
    for bad in [
        frame(Kind::Want(v1::WantEnvelopes { ids: vec![0; 33] })),
        frame(Kind::Delivered(v1::DeliveredIds {
            proofs: vec![v1::DeliveryProof {
                content_id: vec![0; 31],
                secret: vec![0; 16],
                expiry: 1,
            }],
        })),
        v1::SyncFrame {
            version: 1,
            kind: None,
        },
        v1::SyncFrame {
            version: 9,
            kind: Some(Kind::Want(v1::WantEnvelopes { ids: vec![] })),
        },
        frame(Kind::Envelopes(v1::EnvelopeBatch {
            envelopes: vec![envelope(100)],
        })),
        frame(Kind::Reconcile(v1::Reconcile {
            ranges: vec![v1::ReconcileRange {
                upper_bound: vec![0; 33],
                payload: None,
            }],
        })),
    ] {
        assert!(
            decode::<v1::SyncFrame>(&encode(&bad)).is_err(),
            "{bad:?} accepted"
        );
    }

    assert!(decode::<v1::Payload>(&encode(&v1::Payload { kind: None })).is_err());
    let mut h = bundle_header();
    h.body_digest.clear();
    assert!(decode::<v1::BundleHeader>(&encode(&h)).is_err());
}

#[test]
fn truncations_never_panic_and_mostly_fail() {
    let bytes = encode(&envelope(512));
    for len in 0..bytes.len() {
        assert!(
            decode::<v1::Envelope>(&bytes[..len]).is_err(),
            "prefix {len} accepted"
        );
    }
}

/// Decodes `bytes` as every wire message type; each must return, not panic.
fn decode_all(bytes: &[u8]) {
    let _ = decode::<v1::Envelope>(bytes);
    let _ = decode::<v1::ContactCard>(bytes);
    let _ = decode::<v1::EnvelopeContent>(bytes);
    let _ = decode::<v1::Payload>(bytes);
    let _ = decode::<v1::SyncFrame>(bytes);
    let _ = decode::<v1::BundleHeader>(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        decode_all(&bytes);
    }

    #[test]
    fn mutated_valid_encodings_never_panic(
        which in 0usize..4,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = match which {
            0 => encode(&envelope(512)),
            1 => encode(&card()),
            2 => encode(&sync_frames()[0]),
            _ => encode(&bundle_header()),
        };
        for (pos, xor) in flips {
            let len = bytes.len();
            bytes[pos % len] ^= xor;
        }
        decode_all(&bytes);
    }
}
