//! Threat item 16: at TRACE level (ours and libp2p's), the logs of a
//! real exchange hold no plaintext, no passphrase, no contact code, no
//! identity key and no full content or message IDs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use support::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_hold_no_secrets() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let root = tempfile::tempdir().unwrap();
    let a = spawn(root.path(), "a").await;
    let b = spawn(root.path(), "b").await;
    connect(&a, &b).await;
    let code_a = a.node.contact_code().await.unwrap();
    let code_b = b.node.contact_code().await.unwrap();
    a.node.add_contact(&code_b).await.unwrap();
    b.node.add_contact(&code_a).await.unwrap();
    wait_connected(&[&a, &b], 1).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let marker = "SECRET-PLAINTEXT-91c2";
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = format!("{marker} {i}");
        ids.push(
            a.node
                .send(&b.node.identity(), body.as_bytes())
                .await
                .unwrap(),
        );
    }
    wait_until(20, "receipts", || {
        let log = a.log.clone();
        let ids = ids.clone();
        async move {
            ids.iter()
                .all(|id| log.lock().unwrap().delivered.contains(id))
        }
    })
    .await;
    a.node.shutdown().await;
    b.node.shutdown().await;

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(
        logs.len() > 10_000,
        "TRACE logging was on ({} bytes)",
        logs.len()
    );
    assert!(
        logs.contains("sync frame out"),
        "our own trace events are in"
    );
    let mut forbidden = vec![
        ("plaintext".to_owned(), marker.to_owned()),
        ("passphrase".to_owned(), "test passphrase".to_owned()),
        ("contact code a".to_owned(), code_a[..40].to_owned()),
        ("contact code b".to_owned(), code_b[..40].to_owned()),
    ];
    for (who, key) in [("a", a.node.identity()), ("b", b.node.identity())] {
        forbidden.push((
            format!("identity key {who} (hex)"),
            hex(&key.to_bytes())[..16].to_owned(),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        // Logs carry 4-byte prefixes only.
        forbidden.push((format!("full message id {i}"), hex(id.as_bytes())));
    }
    for (what, needle) in &forbidden {
        assert!(
            !logs.contains(needle.as_str()),
            "{what} found in TRACE logs"
        );
    }
}
