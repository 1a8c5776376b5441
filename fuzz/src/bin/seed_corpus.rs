//! Writes valid encodings of every wire message into `corpus/<target>/`, so
//! the fuzzers start from structure instead of noise.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --bin seed-corpus`

use std::{fs, path::Path};

use ferry_core::identity::Identity;
use ferry_proto::{encode, v1};

fn write(target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(format!("seed-{name}")), bytes)
}

fn envelope(len: usize) -> v1::Envelope {
    v1::Envelope {
        version: 1,
        content_id: vec![0xaa; 32],
        expiry: 1_700_000_000,
        hop_limit: 7,
        copy_budget: 4,
        recipient_tag: vec![0xbb; 16],
        stamp: vec![1; 8],
        sealed_body: vec![0xcc; len],
        delivery_commitment: vec![0xdd; 16],
    }
}

fn main() -> std::io::Result<()> {
    let mut rng = rand::rng();
    let mut id = Identity::generate(&mut rng);
    let card = id
        .contact_card(Some("seed"), 1_700_000_000, 2)
        .map_err(std::io::Error::other)?;

    write("envelope", "512", &encode(&envelope(512)))?;
    write("envelope", "2048", &encode(&envelope(2048)))?;
    write("contact_card", "card", &card.to_bytes())?;
    write(
        "contact_code",
        "code",
        card.to_code().map_err(std::io::Error::other)?.as_bytes(),
    )?;

    use v1::{reconcile_range::Payload as R, sync_frame::Kind};
    let frames = [
        Kind::Reconcile(v1::Reconcile {
            ranges: vec![
                v1::ReconcileRange {
                    upper_bound: vec![0x40],
                    payload: Some(R::Skip(true)),
                },
                v1::ReconcileRange {
                    upper_bound: vec![0x80],
                    payload: Some(R::Fingerprint(v1::Fingerprint {
                        digest: vec![1; 16],
                        count: 9,
                    })),
                },
                v1::ReconcileRange {
                    upper_bound: vec![],
                    payload: Some(R::IdList(vec![2; 64])),
                },
            ],
        }),
        Kind::Want(v1::WantEnvelopes { ids: vec![3; 64] }),
        Kind::Envelopes(v1::EnvelopeBatch {
            envelopes: vec![envelope(512)],
        }),
        Kind::Delivered(v1::DeliveredIds {
            proofs: vec![v1::DeliveryProof {
                content_id: vec![4; 32],
                secret: vec![5; 16],
                expiry: 7,
            }],
        }),
    ];
    for (i, kind) in frames.into_iter().enumerate() {
        write(
            "sync_frame",
            &i.to_string(),
            &encode(&v1::SyncFrame {
                version: 1,
                kind: Some(kind),
            }),
        )?;
    }

    write(
        "bundle_header",
        "header",
        &encode(&v1::BundleHeader {
            version: 1,
            created_at: 1_700_000_000,
            envelope_count: 3,
            body_digest: vec![5; 32],
            signer_key: vec![6; 32],
            signature: vec![7; 64],
        }),
    )?;

    use v1::payload::Kind as P;
    let payloads = [
        P::Text(v1::TextMessage {
            message_id: vec![8; 16],
            sent_at: 1,
            body: b"hello".to_vec(),
            delivery_secret: vec![9; 16],
        }),
        P::Receipt(v1::DeliveryReceipt {
            message_ids: vec![vec![9; 16]],
            content_ids: vec![vec![1; 32]],
            delivery_secrets: vec![vec![2; 16]],
            receipt_secret: Vec::new(),
        }),
        P::ContactRequest(v1::ContactRequest {
            card: Some(card.to_wire()),
            introduction: "hi".into(),
        }),
        P::PrekeyTopUp(v1::PrekeyTopUp {
            one_time_keys: vec![vec![2; 32]],
            fallback_key: vec![3; 32],
        }),
    ];
    for (i, kind) in payloads.into_iter().enumerate() {
        write(
            "payload",
            &i.to_string(),
            &encode(&v1::Payload { kind: Some(kind) }),
        )?;
    }
    let content = v1::EnvelopeContent {
        body: Some(v1::envelope_content::Body::Olm(v1::OlmMessage {
            message_type: 1,
            ciphertext: vec![4; 40],
        })),
    };
    write("payload", "content", &encode(&content))?;
    Ok(())
}
