//! Two people chatting with `ferry-chat` through a `ferry-relay`, driven
//! in tmux as a person would: typing keys, reading the screen. Then the
//! relay goes away and a bundle file carries the next message and its
//! receipt. Then the exits people hit: a wrong passphrase, a crash,
//! SIGTERM, and both wipes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::*;

/// Flags for a chat that reaches the world only through `relay` (no
/// LAN discovery: the test must not meet other tests' nodes).
fn chat_args(dir: &std::path::Path, name: &str, relay: Option<&str>) -> String {
    // Receipts without the privacy delay (30 s to 5 min by default).
    let config = dir.with_extension("toml");
    std::fs::write(
        &config,
        "[privacy]\nreceipt_delay_secs = [0, 1]\nproof_delay_secs = [0, 1]\n",
    )
    .unwrap();
    let mut args = format!(
        "--data-dir {} --config {} --name {name} --no-quic --no-lan --listen /ip4/127.0.0.1/tcp/0",
        dir.display(),
        config.display()
    );
    if let Some(relay) = relay {
        args.push_str(&format!(" --relay {relay}"));
    }
    args
}

/// The contact code shown by `/code`.
fn read_code(pane: &Pane<'_>) -> String {
    pane.line("/code");
    let screen = pane.wait_for("-----END CODE-----", 10);
    let code = between(&screen, "-----BEGIN CODE-----", "-----END CODE-----").replace('\n', "");
    assert!(code.starts_with("ferry1"), "not a code: {code:?}\n{screen}");
    pane.key("Escape");
    code
}

/// The safety number shown by `/verify`, confirmed with `y`.
fn verify(pane: &Pane<'_>) -> String {
    pane.line("/verify");
    let screen = pane.wait_for("sees the same number", 10);
    pane.record("/verify");
    // Twelve groups of five digits, in three rows.
    let number = between(&screen, "Safety number with", "sees the same number");
    let groups: Vec<&str> = number.split_whitespace().collect();
    assert_eq!(groups.len(), 12, "{number:?}\n{screen}");
    assert!(
        groups
            .iter()
            .all(|g| g.len() == 5 && g.chars().all(|c| c.is_ascii_digit()))
    );
    pane.type_text("y");
    pane.wait_for("is verified", 10);
    number
}

#[test]
fn two_people_chat_through_a_relay_then_by_usb_stick() {
    let Some(tmux) = Tmux::new("e2e") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (da, db) = (root.path().join("alice"), root.path().join("bob"));
    let relay = Relay::start(&root.path().join("relay"));
    let a = tmux.pane("alice", root.path());
    let b = tmux.pane("bob", root.path());
    a.wait_for_shell(10);
    b.wait_for_shell(10);
    let clean_tty = a.stty();

    // 1. Both create an identity; the passphrase is never on screen.
    start_chat(&a, &chat_args(&da, "Alice", Some(&relay.address)), true);
    start_chat(&b, &chat_args(&db, "Bob", Some(&relay.address)), true);
    for pane in [&a, &b] {
        assert!(!pane.screen().contains(PASSPHRASE));
    }

    // 2. They exchange codes and add each other.
    let code_a = read_code(&a);
    let code_b = read_code(&b);
    assert_ne!(code_a, code_b);
    a.line(&format!("/add {code_b}"));
    a.wait_for("added Bob", 15);
    b.line(&format!("/add {code_a}"));
    b.wait_for("added Alice", 15);

    // 3. They compare safety numbers and mark each other verified.
    let on_a = verify(&a);
    let on_b = verify(&b);
    assert_eq!(on_a, on_b, "safety numbers differ");
    a.wait_for("Bob (verified)", 10);

    // 4. Bob goes offline; Alice writes; the relay takes it.
    b.line("/quit");
    b.wait_for_shell(30);
    a.wait_for("1 peer(s)", 60);
    a.line("Meet at the library at six");
    a.wait("the relay to take the message", 60, |s| {
        s.contains("you: Meet at the library at six")
            && (s.contains("[sent") || s.contains("[carried"))
    });

    // 5. Bob comes back: the message arrives; Alice sees "delivered".
    start_chat(&b, &chat_args(&db, "Bob", Some(&relay.address)), false);
    b.wait_for("Alice: Meet at the library at six", 60);
    b.record("Bob, back online: the message waited on the relay");
    a.wait_for("[delivered", 60);
    a.record("Alice: the receipt came back");

    // 6. The relay is gone. Alice's next message goes by USB stick.
    relay.stop();
    b.line("/quit");
    b.wait_for_shell(30);
    a.wait_for("0 peer(s)", 60);
    a.line("The stick has the flyers");
    a.wait_for("you: The stick has the flyers  [queued", 10);
    let stick = root.path().join("stick.bundle");
    a.line(&format!("/export {}", stick.display()));
    a.wait_for("wrote ", 15);
    a.record("Alice, no network: /export to a USB stick");
    assert!(stick.is_file());

    start_chat(&b, &chat_args(&db, "Bob", None), false);
    b.line(&format!("/import {}", stick.display()));
    b.wait("the bundle's summary", 30, |s| {
        s.contains("1 for you") || s.contains("for you")
    });
    b.wait_for("Alice: The stick has the flyers", 30);
    b.record("Bob: /import from the stick");
    // The receipt goes back the same way, once released (up to 1 s here).
    std::thread::sleep(std::time::Duration::from_secs(3));
    let back = root.path().join("back.bundle");
    b.line(&format!("/export {}", back.display()));
    b.wait_for("wrote ", 15);
    a.line(&format!("/import {}", back.display()));
    a.wait("both messages delivered", 30, |s| {
        s.matches("[delivered").count() >= 2
    });

    // 7. Misuse: one line each, nothing changed.
    a.line("/add ferry1thisisnotacode");
    a.wait_for("not added: not a valid contact code", 10);
    a.line("/peers");
    a.wait_for("no peers connected", 10);
    a.line("/add hello");
    a.wait_for("not added:", 10);
    a.line(&format!("/add {code_a}"));
    a.wait_for("that is your own code", 10);
    let contacts = a.screen();
    assert!(contacts.contains(">✓ Bob"), "{contacts}");
    let missing = root.path().join("missing.bundle");
    a.line(&format!("/import {}", missing.display()));
    a.wait_for(&format!("not imported from {}:", missing.display()), 10);
    let not_a_bundle = root.path().join("notes.txt");
    std::fs::write(&not_a_bundle, "shopping list\n").unwrap();
    a.line(&format!("/import {}", not_a_bundle.display()));
    a.wait_for(
        &format!(
            "not imported from {}: not a Ferry bundle",
            not_a_bundle.display()
        ),
        10,
    );
    assert!(
        a.screen().contains(">✓ Bob"),
        "an import changed the contacts"
    );
    a.line("/no-such-command");
    a.wait_for("unknown command", 10);

    // 8. A crash: one line, no backtrace, the terminal restored.
    a.line("/__panic");
    let screen = a.wait_for_shell(30);
    assert!(screen.contains("ferry-chat: internal error"), "{screen}");
    assert!(!screen.contains("panicked"), "{screen}");
    assert!(!screen.contains("backtrace"), "{screen}");
    assert_eq!(
        a.stty(),
        clean_tty,
        "terminal settings not restored after a panic"
    );

    // 9. SIGTERM: the same.
    start_chat(&a, &chat_args(&da, "Alice", None), false);
    a.wait_for("Bob (verified)", 10);
    terminate(pid_of(&format!("--data-dir {} ", da.display())));
    a.wait_for_shell(30);
    assert_eq!(
        a.stty(),
        clean_tty,
        "terminal settings not restored after SIGTERM"
    );

    // 10. The history survived all of it.
    start_chat(&a, &chat_args(&da, "Alice", None), false);
    a.wait_for("you: Meet at the library at six", 10);
    a.wait_for("you: The stick has the flyers", 10);

    // 11. A paste is text: its newlines press no Enter, so pasted
    //     commands do not run.
    a.paste("look at this\n/wipe\nWIPE\n");
    a.wait_for("look at this /wipe WIPE", 10);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(da.join("store").is_dir(), "a paste ran /wipe");
    a.key("Escape");

    // 12. Wipes: in the app, and --panic-wipe without the passphrase.
    a.line("/wipe");
    a.wait_for("type WIPE", 10);
    a.line("WIPE");
    let screen = a.wait_for_shell(30);
    assert!(screen.contains("wiped"), "{screen}");
    assert!(!da.exists(), "alice's data survived /wipe");

    b.line("/quit");
    b.wait_for_shell(30);
    b.line(&format!("{CHAT} --data-dir {} --panic-wipe", db.display()));
    b.wait_for("Type WIPE to confirm", 10);
    b.line("WIPE");
    b.wait_for("wiped", 30);
    assert!(!db.exists(), "bob's data survived --panic-wipe");
}
