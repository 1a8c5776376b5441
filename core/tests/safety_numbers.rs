//! Safety numbers: symmetric, stable, and different for different pairs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test helpers, not only #[test] fns

use ferry_core::{identity::Identity, keys::IdentityKey, safety::SafetyNumber};

fn key() -> IdentityKey {
    Identity::generate(&mut rand::rng()).identity_key()
}

#[test]
fn both_sides_see_the_same_number() {
    let (a, b) = (key(), key());
    assert_eq!(SafetyNumber::new(&a, &b), SafetyNumber::new(&b, &a));
    assert_eq!(
        SafetyNumber::new(&a, &b).to_string(),
        SafetyNumber::new(&b, &a).to_string()
    );
}

#[test]
fn the_number_is_sixty_digits_in_twelve_groups() {
    let n = SafetyNumber::new(&key(), &key());
    assert_eq!(n.digits().len(), 60);
    assert!(n.digits().bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(n.groups().len(), 12);
    assert!(n.groups().iter().all(|g| g.len() == 5));
    let shown = n.to_string();
    assert_eq!(shown.lines().count(), 3);
    assert_eq!(shown.replace([' ', '\n'], ""), n.digits());
}

#[test]
fn a_substituted_key_changes_the_number() {
    let (a, b, mallory) = (key(), key(), key());
    let real = SafetyNumber::new(&a, &b);
    assert_ne!(real, SafetyNumber::new(&a, &mallory));
    assert_ne!(real, SafetyNumber::new(&mallory, &b));
    // Each half depends only on one identity: a change shows in 30 digits.
    let forged = SafetyNumber::new(&a, &mallory);
    let differing = real
        .digits()
        .bytes()
        .zip(forged.digits().bytes())
        .filter(|(x, y)| x != y);
    assert!(differing.count() >= 10);
}

#[test]
fn the_number_is_a_pure_function_of_the_keys() {
    let bytes = [
        0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07,
        0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07,
        0x51, 0x1a,
    ]; // RFC 8032 test vector 1 public key
    let a = IdentityKey::from_bytes(&bytes).unwrap();
    let b = key();
    assert_eq!(SafetyNumber::new(&a, &b), SafetyNumber::new(&a, &b));
    assert_eq!(
        SafetyNumber::new(&a, &a).digits()[..30],
        SafetyNumber::new(&a, &a).digits()[30..]
    );
}
