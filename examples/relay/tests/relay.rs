//! `ferry-relay` run as an operator would: no configuration at all, bad
//! configurations, and a SIGTERM while a client is sending.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use ferry_node::{KdfParams, Node};

const RELAY: &str = env!("CARGO_BIN_EXE_ferry-relay");

struct Relay {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Relay {
    fn start(dir: &Path, config: Option<&Path>) -> Self {
        let mut command = Command::new(RELAY);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::sync_channel(1024);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn expect(&mut self, prefix: &str, secs: u64) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(secs);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line starting with {prefix:?}; saw {:?}", self.seen);
    }

    fn terminate(mut self) -> Vec<String> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "the relay exited with {exit:?}");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        self.seen
    }
}

fn check_config(dir: &Path, text: &str) -> (bool, String) {
    let path = dir.join("relay.toml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(RELAY)
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn each_config_error_names_the_key_and_line_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[storage]\npath = \"x\"\nquotass = 3\n",
            "relay.toml:3",
            "quotass",
        ),
        ("[log]\nlevel = 5\n", "relay.toml:2", "string"),
        ("[log]\n\nlevel = \"loud\"\n", "relay.toml:3", "log.level"),
        (
            "[listen]\ntcp = [\"/ip4/1.2.3.4/tcp/x\"]\n",
            "relay.toml:2",
            "listen.tcp",
        ),
        (
            "[metrics]\nlisten = \"localhost\"\n",
            "relay.toml:2",
            "metrics.listen",
        ),
        (
            "[quotas]\nglobal_mib = 0\n",
            "relay.toml:2",
            "quotas.global_mib",
        ),
        (
            "[obfs4]\nenabled = true\nbind = \"nowhere\"\n",
            "relay.toml:3",
            "obfs4.bind",
        ),
        (
            "[listen]\ntcp = []\nquic = []\n",
            "relay.toml",
            "no address",
        ),
        ("this is not toml", "relay.toml:1", ""),
    ];
    for (text, place, what) in cases {
        let (ok, output) = check_config(dir.path(), text);
        assert!(!ok, "accepted:\n{text}");
        assert!(output.contains(place), "{text:?} → {output}");
        assert!(output.contains(what), "{text:?} → {output}");
        assert_eq!(output.trim().lines().count(), 1, "one line: {output}");
        assert!(!output.contains("panicked"), "{output}");
    }
    let (ok, output) = check_config(dir.path(), "[log]\nlevel = \"debug\"\n");
    assert!(ok, "{output}");
    assert!(output.contains("configuration OK"));
    let missing = Command::new(RELAY)
        .args(["--config", "/nonexistent/relay.toml", "--check-config"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/relay.toml"));
}

#[test]
fn it_runs_with_no_configuration_at_all_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::start(dir.path(), None);
    relay.expect("listening on /ip4/", 60);
    let seen = relay.terminate();
    assert!(seen.iter().any(|l| l == "stopped"), "{seen:?}");
    assert!(dir.path().join("ferry-relay-data").is_dir());
    let passphrase = dir.path().join("ferry-relay-data.passphrase");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&passphrase).unwrap().permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the generated passphrase is private");
}

#[test]
fn it_stops_cleanly_when_its_output_went_away() {
    // A closed pipe (`ferry-relay | head`, a log collector restarted):
    // printing must not kill the daemon on its way down.
    let dir = tempfile::tempdir().unwrap();
    // Its own ports: the no-configuration test holds the default 4001.
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        "[listen]\ntcp = [\"/ip4/127.0.0.1/tcp/0\"]\nquic = []\n",
    )
    .unwrap();
    let mut child = Command::new(RELAY)
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.starts_with("listening on "));
    assert!(listening);
    drop(lines);
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "the relay exited with {exit:?}");
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
}

fn scrape_text(address: &str) -> String {
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    socket.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut text = String::new();
    socket.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

fn scrape(address: &str) -> u64 {
    metric(&scrape_text(address), "ferry_stored_envelopes")
}

#[test]
fn sigterm_under_load_loses_nothing_the_relay_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        "[listen]\ntcp = [\"/ip4/127.0.0.1/tcp/0\"]\nquic = []\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[log]\nlevel = \"warn\"\n",
    )
    .unwrap();
    let mut relay = Relay::start(dir.path(), Some(&config));
    let address = relay.expect("listening on ", 60)["listening on ".len()..].to_owned();
    let metrics = relay.expect("metrics on http://", 10)["metrics on http://".len()..]
        .trim_end_matches("/metrics")
        .to_owned();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sender = rt.block_on(async {
        let node = |name: &str| {
            Node::builder()
                .storage(dir.path().join(name), "p")
                .kdf(KdfParams::insecure_for_tests())
                .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
                .quic(false)
                .build()
                .unwrap()
        };
        let alice = std::sync::Arc::new(Node::start(node("alice")).await.unwrap());
        let bob = Node::start(node("bob")).await.unwrap();
        alice
            .add_contact(&bob.contact_code().await.unwrap())
            .await
            .unwrap();
        let bob_key = bob.identity();
        bob.shutdown().await; // offline: the relay must hold Alice's mail
        alice.dial(address.parse().unwrap()).await.unwrap();
        let sending = alice.clone();
        let task = tokio::spawn(async move {
            for i in 0..2000u32 {
                if sending
                    .send(&bob_key, format!("message {i}").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        (alice, task)
    });
    // Under load: the relay is taking envelopes when the signal comes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let held = scrape(&metrics);
        if held >= 100 {
            break held;
        }
        assert!(
            Instant::now() < deadline,
            "the relay never held 100 envelopes"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // The other counters an operator watches are there and moving.
    let text = scrape_text(&metrics);
    assert_eq!(metric(&text, "ferry_peers"), 1, "Alice is connected");
    assert!(metric(&text, "ferry_sync_rounds_total") >= 1, "{text}");
    assert!(
        metric(&text, "ferry_envelopes_accepted_total") >= before,
        "{text}"
    );
    assert!(
        metric(&text, "ferry_bytes_total{direction=\"in\"}") > 0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "ferry_rejections_total{reason=\"invalid\"}"),
        0
    );
    let seen = relay.terminate();
    assert!(
        seen.iter().any(|l| l.starts_with("shutting down")),
        "{seen:?}"
    );
    rt.block_on(async {
        sender.1.abort();
        sender.0.shutdown().await;
    });

    // The same store, started again: everything it held is still there.
    let mut again = Relay::start(dir.path(), Some(&config));
    let metrics = again.expect("metrics on http://", 60)["metrics on http://".len()..]
        .trim_end_matches("/metrics")
        .to_owned();
    let after = scrape(&metrics);
    eprintln!("BEFORE {before} AFTER {after}");
    assert!(
        after >= before,
        "held {before} before SIGTERM, {after} after restart"
    );
    again.terminate();
}
