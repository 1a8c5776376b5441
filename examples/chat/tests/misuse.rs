//! What a person gets wrong before the chat screen appears: a wrong or
//! mistyped passphrase, a bad config file or flag. One line each, a
//! non-zero exit, nothing changed on disk. (The passphrase is read from
//! stdin when it is not a terminal, as here.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::{
    io::Write as _,
    path::Path,
    process::{Command, Output, Stdio},
};

use support::{CHAT, PASSPHRASE, snapshot};

fn chat(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(CHAT)
        .arg("--data-dir")
        .arg(dir)
        .args(["--no-lan", "--no-quic", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The `ferry-chat: …` lines a run printed.
fn errors(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter_map(|l| l.find("ferry-chat: ").map(|i| l[i..].to_string()))
        .collect()
}

fn assert_one_line(output: &Output, expected: &str) {
    let lines = errors(output);
    assert!(!output.status.success());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(expected), "{lines:?}");
    let all = String::from_utf8_lossy(&output.stderr);
    assert!(
        !all.contains("panicked") && !all.contains("backtrace"),
        "{all}"
    );
}

#[test]
fn a_wrong_passphrase_says_so_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    // Create the identity (it then stops: stdout is not a terminal).
    let first = chat(&dir, &[], &format!("{PASSPHRASE}\n{PASSPHRASE}\n"));
    assert_one_line(&first, "needs a terminal");
    assert!(dir.join("store").is_dir());
    let before = snapshot(&dir);

    let wrong = chat(&dir, &[], "not the passphrase\n");
    assert_one_line(&wrong, "wrong passphrase; nothing was changed");
    let after = snapshot(&dir);
    let changed: Vec<_> = after
        .iter()
        .filter(|f| !before.contains(f))
        .chain(before.iter().filter(|f| !after.contains(f)))
        .map(|(path, bytes)| (path.strip_prefix(&dir).unwrap().to_path_buf(), bytes.len()))
        .collect();
    assert!(changed.is_empty(), "a wrong passphrase changed {changed:?}");

    // The right one still opens it.
    let right = chat(&dir, &[], &format!("{PASSPHRASE}\n"));
    assert_one_line(&right, "needs a terminal");
}

#[test]
fn a_new_identity_needs_the_same_passphrase_twice() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let mismatch = chat(&dir, &[], &format!("{PASSPHRASE}\n{PASSPHRASE}x\n"));
    assert_one_line(&mismatch, "the passphrases differ; nothing was created");
    assert!(!dir.join("store").exists());
    let short = chat(&dir, &[], "short\nshort\n");
    assert_one_line(&short, "passphrase too short");
    assert!(!dir.join("store").exists());

    // The name on the card is kept for later runs.
    let name = "Zoë \"Z\" \\o/";
    let first = chat(
        &dir,
        &["--name", name],
        &format!("{PASSPHRASE}\n{PASSPHRASE}\n"),
    );
    assert_one_line(&first, "needs a terminal");
    let check = chat(&dir, &["--check-config"], "");
    assert!(check.status.success());
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(stdout.contains(&format!("name {name:?}")), "{stdout}");
}

#[test]
fn bad_configs_and_flags_name_what_is_wrong() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let config = root.path().join("chat.toml");
    for (text, expected) in [
        (
            "[network]\ntcp = true\nspeed = 3\n",
            "chat.toml:3: unknown field `speed`",
        ),
        ("[network]\nquic = \"yes\"\n", "chat.toml:2: invalid type"),
        (
            "[network]\nbootstrap = [\"/ip4/1.2.3.4/tcp/1\"]\n",
            "must end in /p2p/<peer id>",
        ),
        (
            "[network]\nrelays = [\"not an address\"]\n",
            "chat.toml:2: network.relays: `not an address` is not a multiaddr",
        ),
        (
            "[obfs4]\nbridges = [\"obfs4 1.2.3.4:443 cert=short iat-mode=0\"]\n",
            "chat.toml:2: obfs4.bridges:",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = chat(
            &dir,
            &["--config", config.to_str().unwrap(), "--check-config"],
            "",
        );
        assert_one_line(&out, expected);
    }
    let out = chat(&dir, &["--relay", "nonsense", "--check-config"], "");
    assert_one_line(&out, "--relay: `nonsense` is not a multiaddr");
    for bad in ["", " ", "evil\u{202e}gnp.exe", &"n".repeat(65)] {
        let out = chat(&dir, &["--name", bad, "--check-config"], "");
        assert_one_line(&out, "name: 1 to 64 bytes");
    }
    let out = chat(&dir, &["--no-tcp", "--check-config"], "");
    assert_one_line(&out, "every transport is off");
    let out = chat(&dir, &["--check-config"], "");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("config ok"));
    assert!(
        !dir.exists(),
        "checking the config created the data directory"
    );

    let out = chat(&dir, &["--panic-wipe"], "WIPE\n");
    assert_one_line(&out, "nothing wiped");
    // A mistyped --data-dir (a home directory, a USB stick) is never
    // emptied: it holds no chat store.
    let home = root.path().join("home");
    std::fs::create_dir_all(home.join("Documents")).unwrap();
    std::fs::write(home.join("Documents/thesis.pdf"), "years of work").unwrap();
    let out = chat(&home, &["--panic-wipe"], "WIPE\n");
    assert_one_line(&out, "no ferry-chat data in");
    assert!(home.join("Documents/thesis.pdf").is_file());
}
