//! The chat's view over real nodes, drawn on a test terminal: what a
//! person sees for a key change, for hostile text, on tiny terminals.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use ferry_node::{KdfParams, MessageId, MessageStatus, Node, NodeEvent, StoredMessage};
use ratatui::{
    Terminal,
    backend::TestBackend,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
};

use crate::{
    app::{App, Overlay, clean},
    ui,
};

async fn node(dir: &Path, name: &str) -> Node {
    let config = Node::builder()
        .storage(dir.join(name), "test passphrase")
        .kdf(KdfParams::insecure_for_tests())
        .display_name(name)
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .quic(false)
        .mdns(false)
        .build()
        .unwrap();
    Node::start(config).await.unwrap()
}

/// The screen as text, one string per row.
fn screen(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| ui::draw(frame, app, 1_764_592_496))
        .unwrap();
    let buffer = terminal.backend().buffer().clone();
    (0..height)
        .map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect())
        .collect()
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

async fn type_line(app: &mut App, line: &str) {
    for c in line.chars() {
        app.on_key(key(KeyCode::Char(c))).await;
    }
    app.on_key(key(KeyCode::Enter)).await;
}

/// Alice's chat with Bob as a contact.
async fn alice_with_bob(dir: &Path) -> (App, Node) {
    let alice = node(dir, "Alice").await;
    let bob = node(dir, "Bob").await;
    let mut app = App::new(alice, dir.join("Alice"), "tcp".into());
    let code = bob.contact_code().await.unwrap();
    type_line(&mut app, &format!("/add {code}")).await;
    assert!(app.status.1.starts_with("added Bob"), "{}", app.status.1);
    (app, bob)
}

#[tokio::test]
async fn a_key_change_stays_on_screen_until_the_contact_is_verified_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut app, bob) = alice_with_bob(dir.path()).await;
    app.on_event(NodeEvent::KeyChanged {
        contact: bob.identity(),
        was_verified: true,
    })
    .await;
    for _ in 0..3 {
        // Other things happen; the banner stays.
        type_line(&mut app, "/peers").await;
        let rows = screen(&app, 80, 24);
        assert!(
            rows[1].contains("WARNING: keys changed for Bob."),
            "{rows:#?}"
        );
        assert!(rows.iter().any(|r| r.contains(">⚠ Bob")), "{rows:#?}");
        assert!(rows.iter().any(|r| r.contains("KEYS CHANGED")), "{rows:#?}");
    }
    type_line(&mut app, "/verify").await;
    assert!(matches!(app.overlay, Some(Overlay::Safety { .. })));
    let rows = screen(&app, 80, 24);
    let number = app.node.safety_number(&bob.identity()).to_string();
    for row in number.lines() {
        assert_eq!(row.len(), 23, "{number}");
        assert!(rows.iter().any(|r| r.contains(row)), "{row} in {rows:#?}");
    }
    app.on_key(key(KeyCode::Char('y'))).await;
    let rows = screen(&app, 80, 24);
    assert!(!rows.iter().any(|r| r.contains("WARNING")), "{rows:#?}");
    assert!(rows.iter().any(|r| r.contains(">✓ Bob")), "{rows:#?}");
    app.node.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test]
async fn text_from_others_never_reaches_the_terminal_raw() {
    let dir = tempfile::tempdir().unwrap();
    let (mut app, bob) = alice_with_bob(dir.path()).await;
    // A title change, a bell, a carriage return over the line, a
    // right-to-left override, and a second line.
    let hostile = "hi\u{1b}]0;pwned\u{7}\rX\u{202e}gnp.exe\nsecond line";
    app.conversation = vec![StoredMessage {
        seq: 1,
        message_id: MessageId::from([7; 16]),
        contact: bob.identity(),
        outgoing: false,
        body: hostile.as_bytes().to_vec(),
        sent_at: 1_764_592_000,
        received_at: Some(1_764_592_100),
        status: None,
    }];
    let rows = screen(&app, 80, 24);
    let all = rows.concat();
    for bad in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
        assert!(!all.contains(bad), "{bad:?} reached the screen");
    }
    assert!(all.contains("Bob: hi�]0;pwned��X�gnp.exe"), "{rows:#?}");
    assert!(all.contains("second line"), "{rows:#?}");
    assert_eq!(clean("a\nb", false), "a�b");
    assert_eq!(clean("a\nb", true), "a\nb");
    app.node.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test]
async fn every_screen_draws_on_any_terminal_size() {
    let dir = tempfile::tempdir().unwrap();
    let (mut app, bob) = alice_with_bob(dir.path()).await;
    app.conversation = vec![StoredMessage {
        seq: 1,
        message_id: MessageId::from([1; 16]),
        contact: bob.identity(),
        outgoing: true,
        body: "x".repeat(5_000).into_bytes(),
        sent_at: 1_764_592_000,
        received_at: None,
        status: Some((MessageStatus::Carried, 1_764_592_050)),
    }];
    app.input = "y".repeat(3_000);
    app.on_event(NodeEvent::PeerDiscovered {
        peer: bob.peer_id(),
        address: "/ip4/192.168.1.7/tcp/4001".parse().unwrap(),
    })
    .await;
    let code = app.node.contact_code().await.unwrap();
    let qr = ferry_core::contact::qr::to_terminal(&code).unwrap();
    let overlays = [
        None,
        Some(Overlay::Help),
        Some(Overlay::Code(code)),
        Some(Overlay::Qr(qr)),
        Some(Overlay::ConfirmWipe),
    ];
    for overlay in overlays {
        app.overlay = overlay;
        for (w, h) in [
            (1, 1),
            (2, 2),
            (10, 5),
            (30, 8),
            (80, 24),
            (80, 45),
            (200, 60),
        ] {
            screen(&app, w, h);
        }
    }
    // At 80×24 the main screen shows every panel.
    app.overlay = None;
    let rows = screen(&app, 80, 24);
    assert!(rows[0].contains("ferry-chat"), "{rows:#?}");
    assert!(rows.iter().any(|r| r.contains(" Contacts ")), "{rows:#?}");
    assert!(rows.iter().any(|r| r.contains(" Peers ")), "{rows:#?}");
    assert!(rows.iter().any(|r| r.contains("lan (found)")), "{rows:#?}");
    assert!(rows.iter().any(|r| r.contains("[carried ")), "{rows:#?}");
    // The QR code is drawn whole on a terminal tall enough for it, and
    // within 80 columns.
    app.overlay = Some(Overlay::Qr(
        ferry_core::contact::qr::to_terminal(&app.node.contact_code().await.unwrap()).unwrap(),
    ));
    let rows = screen(&app, 80, 45);
    assert!(rows.iter().any(|r| r.contains("Scan me")), "{rows:#?}");
    app.node.shutdown().await;
    bob.shutdown().await;
}
