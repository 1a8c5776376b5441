//! A LAN with no Internet and no relay, as in a shutdown: two laptops on
//! one network segment (two network namespaces joined by a veth pair),
//! each running `ferry-chat` with its defaults. They find each other by
//! mDNS and connect without anyone typing an address; a message and its
//! receipt cross.

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

#[test]
fn two_laptops_on_a_lan_find_each_other_and_chat_with_nothing_configured() {
    let Some(tmux) = Tmux::new("lan") else {
        return;
    };
    let id = std::process::id();
    let (na, nb) = (format!("fcla{id}"), format!("fclb{id}"));
    if !ip(&["netns", "add", &na]) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: this test needs root and `ip` (iproute2)"
        );
        eprintln!("SKIPPED: network namespaces need root and `ip`");
        return;
    }
    let namespaces = Namespaces(vec![na.clone(), nb.clone()]);
    assert!(ip(&["netns", "add", &nb]));
    assert!(ip(&[
        "link", "add", "lan0", "netns", &na, "type", "veth", "peer", "name", "lan0", "netns", &nb,
    ]));
    for (ns, addr) in [(&na, "10.79.0.1/24"), (&nb, "10.79.0.2/24")] {
        for args in [
            vec!["-n", ns, "link", "set", "lo", "up"],
            vec!["-n", ns, "addr", "add", addr, "dev", "lan0"],
            vec!["-n", ns, "link", "set", "lan0", "multicast", "on"],
            vec!["-n", ns, "link", "set", "lan0", "up"],
            vec!["-n", ns, "route", "add", "224.0.0.0/4", "dev", "lan0"],
        ] {
            assert!(ip(&args), "ip {}", args.join(" "));
        }
    }

    let root = tempfile::tempdir().unwrap();
    let a = tmux.pane_in("alice", root.path(), Some(&namespaces.0[0]));
    let b = tmux.pane_in("bob", root.path(), Some(&namespaces.0[1]));
    a.wait_for_shell(10);
    b.wait_for_shell(10);
    // Only the data directory and the name: every other setting is the
    // default a person gets (TCP and QUIC on every interface, LAN on).
    let args = |who: &str| format!("--data-dir {}/{who} --name {who}", root.path().display());
    start_chat(&a, &args("Alice"), true);
    start_chat(&b, &args("Bob"), true);

    // Nobody typed an address: the peers panel fills by itself.
    for pane in [&a, &b] {
        pane.wait("the other laptop in the peers panel", 60, |s| {
            s.contains("1 peer(s)") && (s.contains(" tcp lan") || s.contains(" quic lan"))
        });
    }
    a.record("Alice on a LAN: Bob's laptop found by mDNS");

    a.line("/code");
    let screen = a.wait_for("-----END CODE-----", 10);
    let code_a = between(&screen, "-----BEGIN CODE-----", "-----END CODE-----").replace('\n', "");
    a.key("Escape");
    b.line("/code");
    let screen = b.wait_for("-----END CODE-----", 10);
    let code_b = between(&screen, "-----BEGIN CODE-----", "-----END CODE-----").replace('\n', "");
    b.key("Escape");
    a.line(&format!("/add {code_b}"));
    a.wait_for("added Bob", 15);
    b.line(&format!("/add {code_a}"));
    b.wait_for("added Alice", 15);

    a.line("The Internet is off. Meet at the square?");
    b.wait_for("Alice: The Internet is off. Meet at the square?", 60);
    b.line("Yes, at noon");
    a.wait_for("Bob: Yes, at noon", 60);
    for pane in [&a, &b] {
        pane.line("/quit");
        pane.wait_for_shell(30);
    }
}
