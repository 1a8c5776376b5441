//! Ferry's sans-IO protocol core.
//!
//! This crate holds everything that decides *what* Ferry does, and nothing
//! that decides *how bytes move*: identities and contact cards, the
//! cryptographic layers ([`crypto`]), set reconciliation ([`reconcile`]) and
//! the store-and-forward engine ([`engine`], whose module doc states the
//! driving contract).
//! It never touches the network, the filesystem, threads or the wall clock:
//! time is a parameter and randomness comes from an injected RNG, so the same
//! code runs under the tokio/libp2p node and under the deterministic
//! simulator. `cargo tree -p ferry-core` contains neither tokio nor libp2p.
//!
//! Everything that parses outside input returns a typed error; nothing here
//! panics on bytes from a peer, a file or the app.
//!
//! ```
//! use ferry_core::{identity::Identity, contact::ContactCard, safety::SafetyNumber};
//!
//! let mut rng = rand::rng();
//! let mut alice = Identity::generate(&mut rng);
//! let bob = Identity::generate(&mut rng);
//!
//! // Alice shows Bob her contact code; Bob decodes and verifies it.
//! let code = alice.contact_card(Some("alice"), 1_700_000_000, 4)?.to_code()?;
//! let card = ContactCard::from_code(&code)?;
//! assert_eq!(card.identity_key(), &alice.identity_key());
//!
//! // Both see the same safety number.
//! let on_alice = SafetyNumber::new(&alice.identity_key(), &bob.identity_key());
//! let on_bob = SafetyNumber::new(&bob.identity_key(), card.identity_key());
//! assert_eq!(on_alice, on_bob);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bundle;
pub mod contact;
pub mod crypto;
pub mod engine;
pub mod identity;
pub mod keys;
pub mod reconcile;
pub mod safety;

pub use ferry_proto as proto;
