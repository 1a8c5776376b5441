//! Ferry demo on embedded defaults: two people, Alice and Bob, create
//! identities, exchange contact codes (one shown as a terminal QR code),
//! verify each other's cards and compare safety numbers.
//!
//! ```text
//! cargo run -p ferry-demo                       # print everything
//! cargo run -p ferry-demo -- --qr-dir /tmp/qr   # also write PNG and SVG files
//! ```

use std::{path::PathBuf, time::SystemTime};

use anyhow::{Context, Result, bail, ensure};
use ferry_core::{
    contact::{ContactCard, qr},
    identity::Identity,
    safety::SafetyNumber,
};

/// One-time prekeys on a card shown as a code: enough for a few first
/// messages, small enough that the code stays one screen long.
const CODE_ONE_TIME_KEYS: usize = 4;

fn now() -> u64 {
    // Drivers (binaries) read the clock and hand it to the core.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let qr_dir = match (args.next().as_deref(), args.next()) {
        (None, _) => None,
        (Some("--qr-dir"), Some(dir)) => Some(PathBuf::from(dir)),
        _ => bail!("usage: ferry-demo [--qr-dir DIR]"),
    };

    let mut rng = rand::rng();
    let mut alice = Identity::generate(&mut rng);
    let mut bob = Identity::generate(&mut rng);
    let now = now();

    let alice_code = alice
        .contact_card(Some("Alice"), now, CODE_ONE_TIME_KEYS)?
        .to_code()?;
    let bob_code = bob
        .contact_card(Some("Bob"), now, CODE_ONE_TIME_KEYS)?
        .to_code()?;

    println!(
        "== Alice's contact code ({} characters)\n{alice_code}\n",
        alice_code.len()
    );
    println!(
        "== Bob's contact code ({} characters)\n{bob_code}\n",
        bob_code.len()
    );
    println!("== Alice's code as a QR code (Bob scans this)");
    println!("{}", qr::to_terminal(&alice_code)?);

    // Each side decodes the other's code: checksum, then card signature.
    let card_of_alice = ContactCard::from_code(&alice_code).context("Bob reads Alice's code")?;
    let card_of_bob = ContactCard::from_code(&bob_code).context("Alice reads Bob's code")?;
    println!(
        "Bob verified the card of {:?} ({} one-time prekeys)",
        card_of_alice.display_name().unwrap_or("?"),
        card_of_alice.one_time_keys().len()
    );
    println!(
        "Alice verified the card of {:?} ({} one-time prekeys)\n",
        card_of_bob.display_name().unwrap_or("?"),
        card_of_bob.one_time_keys().len()
    );

    let on_alice = SafetyNumber::new(&alice.identity_key(), card_of_bob.identity_key());
    let on_bob = SafetyNumber::new(&bob.identity_key(), card_of_alice.identity_key());
    println!("== Safety number on Alice's screen\n{on_alice}\n");
    println!("== Safety number on Bob's screen\n{on_bob}\n");
    ensure!(
        on_alice == on_bob,
        "safety numbers differ: someone is in the middle"
    );
    println!("The safety numbers match: no one is in the middle.");

    // A typo is caught by the checksum before any cryptography runs.
    let mut typo = alice_code.clone().into_bytes();
    if let Some(c) = typo.get_mut(20) {
        *c = if *c == b'q' { b'p' } else { b'q' };
    }
    let typo = String::from_utf8(typo)?;
    match ContactCard::from_code(&typo) {
        Err(e) => println!("A mistyped code is refused: {e}"),
        Ok(_) => bail!("a mistyped code was accepted"),
    }

    if let Some(dir) = qr_dir {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("alice.png"), qr::to_png(&alice_code, 6)?)?;
        std::fs::write(dir.join("alice.svg"), qr::to_svg(&alice_code)?)?;
        println!("Wrote {0}/alice.png and {0}/alice.svg", dir.display());
    }
    Ok(())
}
