//! Crash safety, for real (threat item 15): the worker process runs two
//! engines on sled stores, sending, delivering and acknowledging in a loop,
//! and is killed with SIGKILL at random points, 100 times. After every
//! restart: every message whose `send` returned is still in the sender's
//! outbox, in the recipient's inbox, or was handed to the app; nothing was
//! delivered twice (as a fresh delivery); and the stores open.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use rand::RngExt as _;

const ITERATIONS: usize = 100;

#[test]
fn kill_dash_nine_at_random_points_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut sent: HashSet<String> = HashSet::new();
    let mut delivered: HashMap<String, usize> = HashMap::new();
    let mut redelivered: HashSet<String> = HashSet::new();
    let mut acked: HashSet<String> = HashSet::new();
    let mut total_sent_lines = 0;

    for iteration in 0..ITERATIONS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_worker"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::sync_channel::<String>(1 << 16);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });

        // Start-up: the outbox as it survived the previous kill.
        let mut outbox = HashSet::new();
        let mut inbox = HashSet::new();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("worker did not start: store failed to open?");
            if line == "READY" {
                break;
            }
            if let Some(id) = line.strip_prefix("OUTBOX ") {
                outbox.insert(id.to_owned());
            }
            if let Some(id) = line.strip_prefix("INBOX ") {
                inbox.insert(id.to_owned());
            }
        }
        for id in &sent {
            assert!(
                outbox.contains(id)
                    || inbox.contains(id)
                    || delivered.contains_key(id)
                    || redelivered.contains(id),
                "iteration {iteration}: message {id} was accepted by send() but is in no outbox, inbox or delivery"
            );
        }

        // Let it run for a random while, then SIGKILL.
        std::thread::sleep(Duration::from_millis(rng.random_range(5..120)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        reader.join().unwrap();
        while let Ok(line) = rx.try_recv() {
            if let Some(id) = line.strip_prefix("SENT ") {
                sent.insert(id.to_owned());
                total_sent_lines += 1;
            } else if let Some(id) = line.strip_prefix("DELIVERED ") {
                *delivered.entry(id.to_owned()).or_default() += 1;
            } else if let Some(id) = line.strip_prefix("REDELIVERED ") {
                redelivered.insert(id.to_owned());
            } else if let Some(id) = line.strip_prefix("ACKED ") {
                acked.insert(id.to_owned());
            }
        }
        let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "iteration {iteration}: delivered twice: {twice:?}"
        );
        for id in &acked {
            // Receipts go out only after the delivery was durable; if the
            // kill came before the app saw it, it is handed out again.
            assert!(
                delivered.contains_key(id) || redelivered.contains(id),
                "acknowledged but never handed to the app: {id}"
            );
        }
    }
    eprintln!(
        "{ITERATIONS} kills: {total_sent_lines} sends, {} delivered, {} redelivered after a kill, {} acknowledged",
        delivered.len(),
        redelivered.len(),
        acked.len()
    );
    assert!(
        total_sent_lines > ITERATIONS,
        "the worker made progress between kills"
    );
}
