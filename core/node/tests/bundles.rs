//! Sneakernet bundles between nodes that never meet: a message hops
//! A → file → B → file → C and its receipt comes back the same way; a
//! damaged, forged, oversized, expired or repeated bundle gives its
//! documented result and leaves the importer's store as it was.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::{collections::BTreeSet, path::Path, time::Duration};

use ferry_core::proto::{self, v1::BundleHeader};
use ferry_node::{
    BundleError, BundleFileError, BundleLimits, ExportFilter, ImportSummary, NodeError,
};
use support::*;

/// Nodes with no network at all: only files connect them.
async fn offline(root: &Path, name: &str) -> TestNode {
    spawn(root, name).await
}

/// What `node` holds, as a set of envelopes (read back through a bundle).
async fn held(node: &TestNode, scratch: &Path) -> BTreeSet<Vec<u8>> {
    let path = scratch.join(format!("held-{}.bundle", rand_suffix()));
    node.node
        .export_bundle(&path, ExportFilter::All)
        .await
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    ferry_core::bundle::decode(&bytes, BundleLimits::default())
        .unwrap()
        .envelopes
        .iter()
        .map(|e| e.to_vec())
        .collect()
}

// Tests drive the node: they may read the clock.
#[allow(clippy::disallowed_methods)]
fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn import(node: &TestNode, path: &Path) -> Result<ImportSummary, NodeError> {
    node.node.import_bundle(path).await.map(|r| r.summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_hops_through_two_bundles_and_its_receipt_comes_back() {
    let root = tempfile::tempdir().unwrap();
    let stick = root.path().join("stick");
    std::fs::create_dir_all(&stick).unwrap();
    let a = offline(root.path(), "a").await;
    let b = offline(root.path(), "b").await;
    let c = offline(root.path(), "c").await;
    introduce(&a, &c).await;
    let id = a
        .node
        .send(
            &c.node.identity(),
            b"the checkpoint on the north road is closed",
        )
        .await
        .unwrap();

    // A → B: B carries it (not for B).
    let report = a
        .node
        .export_bundle(
            stick.join("1.bundle"),
            ExportFilter::To(vec![c.node.identity()]),
        )
        .await
        .unwrap();
    assert_eq!(report.envelopes, 1);
    let imported = b.node.import_bundle(stick.join("1.bundle")).await.unwrap();
    assert_eq!(
        imported.fingerprint, report.fingerprint,
        "one bundle, one key"
    );
    assert_eq!(imported.summary.imported, 1, "{:?}", imported.summary);

    // B → C: delivered.
    b.node
        .export_bundle(stick.join("2.bundle"), ExportFilter::All)
        .await
        .unwrap();
    let summary = import(&c, &stick.join("2.bundle")).await.unwrap();
    assert_eq!(summary.for_us, 1, "{summary:?}");
    wait_until(10, "C has the message", || {
        let log = c.log.clone();
        async move { log.lock().unwrap().received.iter().any(|r| r.1 == id) }
    })
    .await;

    // C → B → A: the receipt (released after its short test delay).
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.node
        .export_bundle(stick.join("3.bundle"), ExportFilter::All)
        .await
        .unwrap();
    let summary = import(&b, &stick.join("3.bundle")).await.unwrap();
    assert!(summary.imported >= 1, "B carries the receipt: {summary:?}");
    b.node
        .export_bundle(stick.join("4.bundle"), ExportFilter::All)
        .await
        .unwrap();
    let summary = import(&a, &stick.join("4.bundle")).await.unwrap();
    assert!(summary.for_us >= 1, "{summary:?}");
    wait_until(10, "A hears the receipt", || {
        let log = a.log.clone();
        async move { log.lock().unwrap().delivered.contains(&id) }
    })
    .await;
}

/// `bundle` with its header changed by `change` (not re-signed).
fn with_header(bundle: &[u8], change: impl FnOnce(&mut BundleHeader)) -> Vec<u8> {
    let len = u32::from_be_bytes(bundle[8..12].try_into().unwrap()) as usize;
    let mut header = proto::decode::<BundleHeader>(&bundle[12..12 + len]).unwrap();
    change(&mut header);
    let encoded = proto::encode(&header);
    let mut out = bundle[..8].to_vec();
    out.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    out.extend_from_slice(&encoded);
    out.extend_from_slice(&bundle[12 + len..]);
    out
}

/// A bundle from `a` of a few live envelopes, and a fresh importer.
async fn setup(root: &Path) -> (TestNode, TestNode, TestNode, Vec<u8>) {
    let a = offline(root, "a").await;
    let b = offline(root, "b").await;
    let c = offline(root, "c").await;
    introduce(&a, &c).await;
    for i in 0..5 {
        a.node
            .send(&c.node.identity(), format!("note {i}").as_bytes())
            .await
            .unwrap();
    }
    let path = root.join("good.bundle");
    a.node
        .export_bundle(&path, ExportFilter::All)
        .await
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (a, b, c, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_forged_bundles_import_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (_a, b, _c, good) = setup(root.path()).await;
    let before = held(&b, root.path()).await;
    let write = |name: &str, bytes: &[u8]| {
        let path = root.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let refused = |result: Result<ImportSummary, NodeError>| match result {
        Err(NodeError::Bundle(BundleFileError::Bundle(e))) => e,
        other => panic!("not refused whole: {other:?}"),
    };

    // A stick pulled mid-copy: the bundle ends early.
    let cut = write("cut.bundle", &good[..good.len() / 2]);
    assert!(matches!(
        refused(import(&b, &cut).await),
        BundleError::Truncated | BundleError::Digest
    ));
    // One bit flipped inside an envelope.
    let mut flipped = good.clone();
    flipped[200] ^= 1;
    let flipped = write("flipped.bundle", &flipped);
    assert_eq!(refused(import(&b, &flipped).await), BundleError::Digest);
    // The signature replaced (the header keeps its key).
    let resigned = write(
        "resigned.bundle",
        &with_header(&good, |h| h.signature = vec![7; 64]),
    );
    assert_eq!(refused(import(&b, &resigned).await), BundleError::Signature);
    // A header claiming four billion envelopes.
    let huge = write(
        "huge.bundle",
        &with_header(&good, |h| h.envelope_count = u32::MAX),
    );
    assert!(matches!(
        refused(import(&b, &huge).await),
        BundleError::TooLarge(_)
    ));
    // Not a bundle at all.
    let photo = write("photo.jpg", b"\xff\xd8\xff\xe0 a photo, not a bundle");
    assert_eq!(refused(import(&b, &photo).await), BundleError::NotABundle);

    assert_eq!(
        held(&b, root.path()).await,
        before,
        "the store is as it was"
    );
    assert!(b.log.lock().unwrap().received.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_new_bundle_around_a_tampered_envelope_imports_only_the_others() {
    // Anyone can sign a bundle: a carrier who alters an envelope and
    // signs the result with their own key gets the bundle accepted, and
    // the altered envelope refused on its own.
    let root = tempfile::tempdir().unwrap();
    let (_a, b, _c, good) = setup(root.path()).await;
    let bundle = ferry_core::bundle::decode(&good, BundleLimits::default()).unwrap();
    let mut envelopes: Vec<Vec<u8>> = bundle.envelopes.iter().map(|e| e.to_vec()).collect();
    let last = envelopes[0].len() - 1;
    envelopes[0][last] ^= 1;
    let forged = ferry_core::bundle::encode(&envelopes, 0, &mut rand::rng()).unwrap();
    let path = root.path().join("forged.bundle");
    std::fs::write(&path, forged).unwrap();
    let summary = import(&b, &path).await.unwrap();
    assert_eq!(summary.total, envelopes.len() as u64);
    assert_eq!(summary.invalid, 1, "{summary:?}");
    assert_eq!(summary.imported, envelopes.len() as u64 - 1, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_repeated_envelopes_are_counted_and_not_stored() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, c, good) = setup(root.path()).await;
    let path = root.path().join("good.bundle");
    std::fs::write(&path, &good).unwrap();
    let first = import(&b, &path).await.unwrap();
    assert_eq!(first.imported, first.total, "{first:?}");
    let after_first = held(&b, root.path()).await;
    let again = import(&b, &path).await.unwrap();
    assert_eq!(again.duplicate, again.total, "{again:?}");
    assert_eq!(again.imported, 0);
    assert_eq!(held(&b, root.path()).await, after_first);

    // Envelopes a carrier kept past their expiry (expiries are coarse,
    // ten minutes, so the test writes them as a stranger would: a relay
    // checks only the outer envelope), in a bundle with live ones.
    let now = unix_now();
    let stale: Vec<Vec<u8>> = (0..3u8).map(|i| stranger_envelope(now - 600, i)).collect();
    let live = stranger_envelope(now + 3600, 9);
    let mut envelopes = stale.clone();
    envelopes.push(live.clone());
    let late = root.path().join("late.bundle");
    std::fs::write(
        &late,
        ferry_core::bundle::encode(&envelopes, now, &mut rand::rng()).unwrap(),
    )
    .unwrap();
    let d = offline(root.path(), "d").await;
    let before = held(&d, root.path()).await;
    let summary = import(&d, &late).await.unwrap();
    assert_eq!(summary.expired, 3, "{summary:?}");
    assert_eq!(summary.imported, 1, "{summary:?}");
    let after = held(&d, root.path()).await;
    let added: Vec<_> = after.difference(&before).collect();
    assert_eq!(added.len(), 1, "only the live one is held");
    let _ = (a, c);
}

#[allow(clippy::disallowed_methods)]
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A well-formed envelope for nobody we know, expiring at `expiry`.
fn stranger_envelope(expiry: u64, seed: u8) -> Vec<u8> {
    let mut envelope = ferry_core::proto::v1::Envelope {
        version: 1,
        content_id: Vec::new(),
        expiry,
        hop_limit: 8,
        copy_budget: 0,
        recipient_tag: vec![seed; 16],
        stamp: Vec::new(),
        sealed_body: vec![seed; 512],
        delivery_commitment: vec![seed; 16],
    };
    envelope.content_id = ferry_core::crypto::tags::content_id_of(&envelope).to_vec();
    proto::encode(&envelope)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_never_leaves_a_half_bundle_under_its_name() {
    let root = tempfile::tempdir().unwrap();
    let (a, _b, _c, _) = setup(root.path()).await;
    // A directory that does not exist: the write fails, nothing appears.
    let nowhere = root.path().join("no-such-stick").join("x.bundle");
    assert!(matches!(
        a.node.export_bundle(&nowhere, ExportFilter::All).await,
        Err(NodeError::Bundle(BundleFileError::Io { .. }))
    ));
    assert!(!nowhere.exists());
    // A good export leaves exactly one file, no temporary beside it.
    let dir = root.path().join("stick");
    std::fs::create_dir_all(&dir).unwrap();
    a.node
        .export_bundle(dir.join("x.bundle"), ExportFilter::All)
        .await
        .unwrap();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["x.bundle".to_string()]);
}
