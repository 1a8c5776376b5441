//! Ferry demo on embedded defaults: three nodes on loopback.
//!
//! Alice and Bob exchange contact codes and compare safety numbers. Bob goes
//! offline. Alice sends him a message; the relay takes it into custody.
//! Bob comes back (same encrypted store), the relay hands the message over,
//! and Alice gets the end-to-end receipt. Every step is printed on a
//! timeline.
//!
//! ```text
//! cargo run -p ferry-demo                       # the timeline
//! cargo run -p ferry-demo -- --qr-dir /tmp/qr   # also write Alice's code as PNG and SVG
//! ```

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use ferry_core::contact::{ContactCard, qr};
use ferry_node::{EventStream, MessageStatus, Node, NodeEvent};

struct Timeline(Instant);

impl Timeline {
    fn say(&self, who: &str, what: impl AsRef<str>) {
        println!(
            "[{:>7.3} s] {who:<6} {}",
            self.0.elapsed().as_secs_f64(),
            what.as_ref()
        );
    }
}

async fn start(dir: &Path, name: &str, relay: Option<&ferry_node::Multiaddr>) -> Result<Node> {
    let mut builder = Node::builder()
        .storage(dir.join(name), format!("{name}'s passphrase"))
        .display_name(name)
        .listen_on("/ip4/127.0.0.1/tcp/0".parse()?)
        // The demo stays on loopback: no LAN discovery, no QUIC.
        .mdns(false)
        .quic(false)
        // The demo shows the receipt within seconds; real nodes wait a
        // random 30-300 s so a watcher cannot pair message and receipt.
        .delivery_delays((0, 1), (1, 2));
    builder = match relay {
        Some(address) => builder.bootstrap(address.clone()),
        None => builder.relay(),
    };
    Ok(Node::start(builder.build()?).await?)
}

/// Waits for the first event that `pick` accepts (printing nothing else).
async fn wait_for<T>(
    events: &mut EventStream,
    what: &str,
    mut pick: impl FnMut(NodeEvent) -> Option<T>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .with_context(|| format!("timed out waiting for {what}"))?
            .with_context(|| format!("node stopped before {what}"))?;
        if let Some(found) = pick(event) {
            return Ok(found);
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let qr_dir = match (args.next().as_deref(), args.next()) {
        (None, _) => None,
        (Some("--qr-dir"), Some(dir)) => Some(PathBuf::from(dir)),
        _ => bail!("usage: ferry-demo [--qr-dir DIR]"),
    };
    let dir = std::env::temp_dir().join(format!("ferry-demo-{}", std::process::id()));
    let result = run(&dir, qr_dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(dir: &Path, qr_dir: Option<PathBuf>) -> Result<()> {
    let t = Timeline(Instant::now());
    println!("Ferry demo: Alice, a relay and Bob on loopback; Bob is offline when Alice writes.\n");

    let relay = start(dir, "relay", None).await?;
    let relay_addr = relay
        .listen_addrs()
        .await?
        .into_iter()
        .next()
        .context("relay address")?;
    t.say("relay", format!("listening on {relay_addr}"));

    let alice = start(dir, "Alice", Some(&relay_addr)).await?;
    let mut alice_events = alice.events().context("events")?;
    t.say("Alice", "started, connecting to the relay");
    let bob = start(dir, "Bob", Some(&relay_addr)).await?;
    t.say("Bob", "started");

    // Contact codes: in real life scanned as QR codes or pasted.
    let alice_code = alice.contact_code().await?;
    let bob_code = bob.contact_code().await?;
    t.say(
        "Alice",
        format!(
            "contact code ({} chars): {}…",
            alice_code.len(),
            &alice_code[..32]
        ),
    );
    println!("{}", qr::to_terminal(&alice_code)?);
    let bob_key = alice.add_contact(&bob_code).await?;
    let alice_key = bob.add_contact(&alice_code).await?;
    t.say("Alice", "added Bob from his code");
    t.say("Bob", "added Alice from her code");
    let on_alice = alice.safety_number(&bob_key);
    let on_bob = bob.safety_number(&alice_key);
    ensure!(
        on_alice == on_bob,
        "safety numbers differ: someone is in the middle"
    );
    t.say("both", format!("safety numbers match: {on_alice}"));
    let card = ContactCard::from_code(&alice_code)?;
    t.say(
        "Bob",
        format!(
            "card of {:?}: signature verified, issued at {}",
            card.display_name().unwrap_or("?"),
            card.issued_at()
        ),
    );

    bob.shutdown().await;
    drop(bob);
    t.say("Bob", "goes offline");

    wait_for(&mut alice_events, "Alice to reach the relay", |e| {
        matches!(e, NodeEvent::PeerUp { .. }).then_some(())
    })
    .await?;
    t.say("Alice", "connected to the relay");
    let text = "Meet at the library at six. Bring the USB stick.";
    let message_id = alice.send(&bob_key, text.as_bytes()).await?;
    t.say(
        "Alice",
        format!("sent {text:?} (stored durably before send returned)"),
    );

    let relay = Arc::new(relay);
    let deadline = Instant::now() + Duration::from_secs(30);
    while relay.stats().await?.held_envelopes == 0 {
        ensure!(Instant::now() < deadline, "the relay never took custody");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = relay.stats().await?;
    t.say(
        "relay",
        format!(
            "holds {} sealed envelope(s), {} bytes: cannot read them or tell who they are for",
            held.held_envelopes, held.held_bytes
        ),
    );

    let bob = start(dir, "Bob", Some(&relay_addr)).await?;
    let mut bob_events = bob.events().context("events")?;
    t.say(
        "Bob",
        "back online (same encrypted store), connecting to the relay",
    );
    let received = wait_for(&mut bob_events, "Bob's message", |e| match e {
        NodeEvent::Message(m) => Some(m),
        _ => None,
    })
    .await?;
    ensure!(received.from == alice_key, "message from someone else");
    t.say(
        "Bob",
        format!(
            "received from Alice: {:?}",
            String::from_utf8_lossy(&received.body)
        ),
    );
    bob.ack(received.message_id).await?;

    wait_for(&mut alice_events, "the receipt", |e| match e {
        NodeEvent::MessageStatus {
            message_id: id,
            status: MessageStatus::Delivered,
        } if id == message_id => Some(()),
        _ => None,
    })
    .await?;
    t.say("Alice", "got Bob's end-to-end receipt: delivered");

    if let Some(qr_dir) = qr_dir {
        std::fs::create_dir_all(&qr_dir)?;
        std::fs::write(qr_dir.join("alice.png"), qr::to_png(&alice_code, 6)?)?;
        std::fs::write(qr_dir.join("alice.svg"), qr::to_svg(&alice_code)?)?;
        t.say(
            "demo",
            format!("wrote {0}/alice.png and {0}/alice.svg", qr_dir.display()),
        );
    }

    alice.shutdown().await;
    bob.shutdown().await;
    relay.shutdown().await;
    t.say("all", "shut down");
    Ok(())
}
