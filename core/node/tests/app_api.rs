//! What an app embedding the node relies on: message status through its
//! whole life and across restarts, the conversation history, contacts
//! management, the wipe, and the mistakes a newcomer makes, each answered
//! with a typed error. Real nodes on loopback, real sled stores.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::{path::Path, time::Duration};

use bech32::{Bech32m, Hrp};
use ferry_node::{
    CardError, CodeError, ContactCard, MAX_MESSAGE_BODY, MessageStatus, Node, NodeError, SealError,
    SendError,
};
use support::*;

fn statuses(n: &TestNode, id: ferry_node::MessageId) -> Vec<MessageStatus> {
    let log = n.log.lock().unwrap();
    log.statuses
        .iter()
        .filter(|(m, _)| *m == id)
        .map(|(_, s)| *s)
        .chain(
            log.delivered
                .iter()
                .filter(|m| **m == id)
                .map(|_| MessageStatus::Delivered),
        )
        .collect()
}

async fn stored_status(n: &TestNode, id: ferry_node::MessageId) -> Option<MessageStatus> {
    n.node.message_status(id).await.unwrap().map(|(s, _)| s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_queued_sent_carried_and_delivered_and_its_status_survives_restarts() {
    let root = tempfile::tempdir().unwrap();
    let a = spawn(root.path(), "a").await;
    let relay = spawn(root.path(), "relay").await;
    let b = spawn(root.path(), "b").await;
    introduce(&a, &b).await;
    b.node.shutdown().await;
    connect(&a, &relay).await;
    wait_connected(&[&a, &relay], 1).await;
    // Gossip needs the relay's subscription before anything is "sent".
    tokio::time::sleep(Duration::from_secs(2)).await;

    let id = a.node.send(&b.node.identity(), b"hello b").await.unwrap();
    assert!(matches!(
        stored_status(&a, id).await,
        Some(MessageStatus::Queued | MessageStatus::Sent | MessageStatus::Carried)
    ));
    // Sent (published to the relay), then Carried once a reconciliation
    // round (every 5 s here, started by either side) shows the relay holds it.
    wait_until(30, "carried", || {
        let a = &a;
        async move { stored_status(a, id).await == Some(MessageStatus::Carried) }
    })
    .await;
    assert_eq!(
        statuses(&a, id),
        vec![MessageStatus::Sent, MessageStatus::Carried]
    );
    let relay_stats = stats(&relay).await;
    assert!(
        relay_stats.held_envelopes - relay_stats.held_own >= 1,
        "the relay says it carries someone's envelope"
    );
    assert_eq!(stats(&a).await.held_own, 1, "only our message");

    // The status and the history survive a restart.
    let history = a.node.messages(&b.node.identity(), None, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert!(history[0].outgoing);
    assert_eq!(history[0].body, b"hello b");
    a.node.shutdown().await;
    let a = start(builder(&a.dir), &a.dir).await;
    assert_eq!(stored_status(&a, id).await, Some(MessageStatus::Carried));

    // B comes back through the relay; its receipt reaches A.
    let b = start(builder(&b.dir), &b.dir).await;
    connect(&b, &relay).await;
    connect(&a, &relay).await;
    wait_for_body(&b, b"hello b", 30).await;
    wait_until(30, "delivered", || {
        let a = &a;
        async move { stored_status(a, id).await == Some(MessageStatus::Delivered) }
    })
    .await;
    assert!(statuses(&a, id).contains(&MessageStatus::Delivered));

    // B's history holds the received message, with both clocks.
    let got = b.node.messages(&a.node.identity(), None, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(!got[0].outgoing);
    assert_eq!(got[0].message_id, id);
    assert!(got[0].received_at.is_some());
    assert_eq!(got[0].status, None);
    // After a restart, a redelivered message is not stored twice.
    b.node.shutdown().await;
    let b = start(builder(&b.dir), &b.dir).await;
    assert_eq!(
        b.node
            .messages(&a.node.identity(), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    for n in [&a, &b, &relay] {
        n.node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_newest_first_and_deletes() {
    let root = tempfile::tempdir().unwrap();
    let a = spawn(root.path(), "a").await;
    let b = spawn(root.path(), "b").await;
    let c = spawn(root.path(), "c").await;
    introduce(&a, &b).await;
    introduce(&a, &c).await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(
            a.node
                .send(&b.node.identity(), format!("to b {i}").as_bytes())
                .await
                .unwrap(),
        );
    }
    a.node.send(&c.node.identity(), b"to c").await.unwrap();
    let first = a.node.messages(&b.node.identity(), None, 10).await.unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(first[0].body, b"to b 24", "newest first");
    let second = a
        .node
        .messages(&b.node.identity(), Some(first[9].seq), 10)
        .await
        .unwrap();
    assert_eq!(second[0].body, b"to b 14");
    let rest = a
        .node
        .messages(&b.node.identity(), Some(second[9].seq), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 5, "pages end");
    assert_eq!(rest[4].body, b"to b 0");
    assert!(rest.iter().all(|m| m.status.is_some()));
    // One message, then B's whole conversation; C's is untouched.
    assert!(
        !a.node.delete_message(ids[3], false).await.unwrap(),
        "not received"
    );
    assert!(a.node.delete_message(ids[3], true).await.unwrap());
    assert!(!a.node.delete_message(ids[3], true).await.unwrap());
    assert_eq!(a.node.message_status(ids[3]).await.unwrap(), None);
    assert_eq!(
        a.node
            .delete_conversation(&b.node.identity())
            .await
            .unwrap(),
        24
    );
    assert!(
        a.node
            .messages(&b.node.identity(), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        a.node
            .messages(&c.node.identity(), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    for n in [&a, &b, &c] {
        n.node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_listed_renamed_verified_and_removed_and_it_persists() {
    let root = tempfile::tempdir().unwrap();
    let a = spawn(root.path(), "a").await;
    let b = spawn(root.path(), "b").await;
    introduce(&a, &b).await;
    let bob = b.node.identity();
    let id = a.node.send(&bob, b"before removal").await.unwrap();
    assert!(a.node.rename_contact(&bob, Some("Bob")).await.unwrap());
    assert!(matches!(
        a.node.rename_contact(&bob, Some("bad\nname")).await,
        Err(NodeError::InvalidArgument(_))
    ));
    assert!(a.node.mark_verified(&bob).await.unwrap());
    a.node.shutdown().await;
    let a = start(builder(&a.dir), &a.dir).await;
    let contacts = a.node.contacts().await.unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].name(), Some("Bob"));
    assert!(contacts[0].verified);
    assert!(a.node.rename_contact(&bob, None).await.unwrap());
    assert_eq!(a.node.contacts().await.unwrap()[0].nickname, None);

    assert!(a.node.remove_contact(&bob).await.unwrap());
    assert!(!a.node.remove_contact(&bob).await.unwrap());
    assert!(a.node.contacts().await.unwrap().is_empty());
    assert!(matches!(
        a.node.send(&bob, b"x").await,
        Err(NodeError::Send(SendError::Seal(SealError::UnknownContact)))
    ));
    assert!(matches!(
        stored_status(&a, id).await,
        Some(MessageStatus::Failed(
            ferry_node::FailReason::ContactRemoved
        ))
    ));
    // The history stays until the app deletes it.
    assert_eq!(a.node.messages(&bob, None, 10).await.unwrap().len(), 1);
    a.node.shutdown().await;
    b.node.shutdown().await;
}

/// Every file under `dir`, read whole.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wipe_leaves_no_key_material_or_plaintext_and_the_key_file_is_overwritten_in_place() {
    use std::io::{Read as _, Seek as _};
    let root = tempfile::tempdir().unwrap();
    let a = spawn(root.path(), "a").await;
    let b = spawn(root.path(), "b").await;
    introduce(&a, &b).await;
    connect(&a, &b).await;
    let body: &'static [u8] = b"the plaintext that must not survive a wipe";
    exchange(&a, &b, body).await;
    a.node
        .rename_contact(&b.node.identity(), Some("nickname-marker"))
        .await
        .unwrap();
    let identity = a.node.identity().to_bytes();
    // Hold the key file open: after the wipe its inode still exists, and
    // must hold none of what it held.
    let mut key_file = std::fs::File::open(a.dir.join("key")).unwrap();
    let mut before = Vec::new();
    key_file.read_to_end(&mut before).unwrap();
    assert!(before.len() >= 32);

    a.node.wipe().await.unwrap();
    assert!(!a.dir.exists(), "the store's directory is gone");
    let mut after = Vec::new();
    key_file.rewind().unwrap();
    key_file.read_to_end(&mut after).unwrap();
    assert_eq!(after.len(), before.len());
    for window in before.windows(16).step_by(16) {
        assert!(
            !contains(&after, window),
            "key file bytes survived in place"
        );
    }
    for (path, bytes) in files_under(root.path()) {
        if path.starts_with(&b.dir) {
            continue;
        }
        assert!(!contains(&bytes, body), "{path:?} holds the plaintext");
        assert!(
            !contains(&bytes, &identity),
            "{path:?} holds the identity key"
        );
        assert!(
            !contains(&bytes, b"nickname-marker"),
            "{path:?} holds the nickname"
        );
    }
    // Every call after the wipe is refused.
    assert!(matches!(a.node.contacts().await, Err(NodeError::Closed)));
    assert!(matches!(a.node.wipe().await, Err(NodeError::Closed)));
    b.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_panic_wipe_needs_no_passphrase_and_works_on_a_running_node() {
    let root = tempfile::tempdir().unwrap();
    let a = spawn(root.path(), "a").await;
    let identity = a.node.identity();
    assert!(matches!(
        Node::wipe_store(root.path().join("not-a-store")),
        Err(NodeError::Store(ferry_node::StoreError::NotAStore))
    ));
    let dir = a.dir.clone();
    tokio::task::spawn_blocking(move || Node::wipe_store(&dir))
        .await
        .unwrap()
        .unwrap();
    assert!(!a.dir.exists());
    a.node.shutdown().await;
    // The passphrase opens nothing: a new start is a new identity.
    let again = start(builder(&a.dir), &a.dir).await;
    assert_ne!(again.node.identity(), identity);
    again.node.shutdown().await;
}

/// Re-encodes `bytes` as a contact code with a valid checksum.
fn code_of(bytes: &[u8]) -> String {
    bech32::encode::<Bech32m>(Hrp::parse("ferry").unwrap(), bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomers_mistakes_get_typed_errors() {
    let root = tempfile::tempdir().unwrap();
    let a = spawn(root.path(), "a").await;
    let b = spawn(root.path(), "b").await;
    let own = a.node.contact_code().await.unwrap();
    assert!(matches!(
        a.node.add_contact(&own).await,
        Err(NodeError::OwnIdentity)
    ));
    assert!(matches!(
        a.node.send(&a.node.identity(), b"me").await,
        Err(NodeError::OwnIdentity)
    ));
    // Codes: a typo, another bech32m string, a forged card.
    let code = b.node.contact_code().await.unwrap();
    let mut typo = code.clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'q' { b'p' } else { b'q' };
    assert!(matches!(
        a.node
            .add_contact(std::str::from_utf8(&typo).unwrap())
            .await,
        Err(NodeError::InvalidCode(CodeError::Checksum))
    ));
    let other = bech32::encode::<Bech32m>(Hrp::parse("bc").unwrap(), b"hello").unwrap();
    assert!(matches!(
        a.node.add_contact(&other).await,
        Err(NodeError::InvalidCode(CodeError::WrongPrefix))
    ));
    let mut card = ContactCard::from_code(&code).unwrap().to_bytes();
    let n = card.len() - 1;
    card[n] ^= 1; // the signature's last byte
    assert!(matches!(
        a.node.add_contact(&code_of(&card)).await,
        Err(NodeError::InvalidCode(CodeError::Card(
            CardError::BadSignature
        )))
    ));
    // Identity keys tell apart in Debug (without printing the key).
    let (ka, kb) = (
        format!("{:?}", a.node.identity()),
        format!("{:?}", b.node.identity()),
    );
    assert_ne!(ka, kb);
    assert!(!ka.contains(&a.node.identity().to_hex()));

    // Dials answer: a closed port, a QUIC address with QUIC off, a real peer.
    let closed = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    assert!(matches!(
        a.node.dial(closed.parse().unwrap()).await,
        Err(NodeError::Dial(_))
    ));
    assert!(matches!(
        a.node
            .dial("/ip4/127.0.0.1/udp/9/quic-v1".parse().unwrap())
            .await,
        Err(NodeError::Dial(_))
    ));
    assert_eq!(a.node.dial(b.addr.clone()).await.unwrap(), b.node.peer_id());

    // The documented size limit holds for a first message (the largest
    // envelope: it starts a session), and one byte more is refused.
    a.node.add_contact(&code).await.unwrap();
    let big = vec![7u8; MAX_MESSAGE_BODY];
    a.node.send(&b.node.identity(), &big).await.unwrap();
    assert!(matches!(
        a.node.send(&b.node.identity(), &[0u8; MAX_MESSAGE_BODY + 1]).await,
        Err(NodeError::TooLarge { len, max }) if len == MAX_MESSAGE_BODY + 1 && max == MAX_MESSAGE_BODY
    ));
    // Message IDs have a display form that parses back.
    let id = a.node.send(&b.node.identity(), b"x").await.unwrap();
    assert_eq!(id.to_string().parse::<ferry_node::MessageId>().unwrap(), id);
    a.node.shutdown().await;
    b.node.shutdown().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
