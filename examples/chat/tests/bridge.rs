//! Through a censor: the relay is reachable only through its obfs4
//! bridge (a real obfs4proxy on each side), and two people chat with the
//! bridge line the relay printed, pasted into `--bridge`. The relay runs
//! in its own network namespace so that the bridge sees its clients'
//! real (non-loopback) addresses, as on the Internet.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::process::{Command, Stdio};

use support::*;

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Namespaces deleted however the test ends.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

fn read_code(pane: &Pane<'_>) -> String {
    pane.line("/code");
    let screen = pane.wait_for("-----END CODE-----", 10);
    pane.key("Escape");
    between(&screen, "-----BEGIN CODE-----", "-----END CODE-----").replace('\n', "")
}

#[test]
fn two_people_chat_through_an_obfs4_bridge_line_the_relay_printed() {
    let Some(tmux) = Tmux::new("bridge") else {
        return;
    };
    if tool("obfs4proxy").is_none() {
        return;
    }
    let id = std::process::id();
    let (relay_ns, users_ns) = (format!("fcbr{id}"), format!("fcbu{id}"));
    if !ip(&["netns", "add", &relay_ns]) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: this test needs root and `ip` (iproute2)"
        );
        eprintln!("SKIPPED: network namespaces need root and `ip`");
        return;
    }
    let namespaces = Namespaces(vec![relay_ns.clone(), users_ns.clone()]);
    assert!(ip(&["netns", "add", &users_ns]));
    assert!(ip(&[
        "link", "add", "wan0", "netns", &relay_ns, "type", "veth", "peer", "name", "wan0", "netns",
        &users_ns,
    ]));
    for (ns, addr) in [(&relay_ns, "10.80.0.1/24"), (&users_ns, "10.80.0.2/24")] {
        for args in [
            vec!["-n", ns, "link", "set", "lo", "up"],
            vec!["-n", ns, "addr", "add", addr, "dev", "wan0"],
            vec!["-n", ns, "link", "set", "wan0", "up"],
        ] {
            assert!(ip(&args), "ip {}", args.join(" "));
        }
    }

    let root = tempfile::tempdir().unwrap();
    // The relay's plain ports listen only on its loopback: from outside,
    // the obfs4 bridge is the only way in.
    let relay = Relay::start_with(
        &root.path().join("relay"),
        "[listen]\ntcp = [\"/ip4/127.0.0.1/tcp/0\"]\nquic = []\n\
         [obfs4]\nenabled = true\nbind = \"10.80.0.1:4003\"\n",
        Some(&namespaces.0[0]),
    );
    let line = relay
        .bridge
        .clone()
        .expect("the relay printed a bridge line");
    assert!(line.starts_with("obfs4 10.80.0.1:4003 "), "{line}");

    let a = tmux.pane_in("alice", root.path(), Some(&namespaces.0[1]));
    let b = tmux.pane_in("bob", root.path(), Some(&namespaces.0[1]));
    a.wait_for_shell(10);
    b.wait_for_shell(10);
    let config = root.path().join("fast-receipts.toml");
    std::fs::write(
        &config,
        "[privacy]\nreceipt_delay_secs = [0, 1]\nproof_delay_secs = [0, 1]\n",
    )
    .unwrap();
    let args = |who: &str| {
        format!(
            "--data-dir {root}/{who} --name {who} --config {config} --no-lan --no-quic \
             --listen /ip4/127.0.0.1/tcp/0 --bridge '{line}'",
            root = root.path().display(),
            config = config.display(),
        )
    };
    start_chat(&a, &args("Alice"), true);
    start_chat(&b, &args("Bob"), true);
    for pane in [&a, &b] {
        // A row of the peers panel (the title lists the ways out too).
        pane.wait("the bridge in the peers panel", 90, |s| {
            s.contains("1 peer(s)") && s.lines().any(|l| l.contains("│…") && l.contains(" obfs4"))
        });
    }
    a.record("Alice behind a censor: connected through the obfs4 bridge");

    let code_a = read_code(&a);
    let code_b = read_code(&b);
    a.line(&format!("/add {code_b}"));
    a.wait_for("added Bob", 15);
    b.line(&format!("/add {code_a}"));
    b.wait_for("added Alice", 15);
    a.line("Through the bridge");
    b.wait_for("Alice: Through the bridge", 60);
    a.wait_for("[delivered", 60);
    for pane in [&a, &b] {
        pane.line("/quit");
        pane.wait_for_shell(30);
    }
    relay.stop();
}
