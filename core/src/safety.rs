//! Safety numbers: a numeric fingerprint of two identities that both people
//! compare out of band (read aloud, or side by side) to rule out a
//! man-in-the-middle, as Signal shows them.
//!
//! Each identity's half is 30 digits derived by iterating SHA-512 over its
//! key (5200 rounds, to make grinding for a look-alike number expensive); the
//! two halves are ordered so both people see the same 60 digits.

use std::fmt;

use sha2::{Digest, Sha512};

use crate::keys::IdentityKey;

/// Version tag mixed into the hash; bump it if the derivation changes.
const VERSION: [u8; 2] = [0, 1];
/// Hash iterations per half (Signal uses the same figure).
const ITERATIONS: usize = 5200;
/// Digits per half.
const HALF_DIGITS: usize = 30;

/// The 60-digit safety number of a pair of identities.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SafetyNumber(String);

fn half(key: &IdentityKey) -> String {
    let key = key.to_bytes();
    let mut hasher = Sha512::new();
    hasher.update(VERSION);
    hasher.update(key);
    hasher.update(b"ferry/safety-number");
    let mut hash = hasher.finalize();
    for _ in 0..ITERATIONS {
        let mut hasher = Sha512::new();
        hasher.update(hash);
        hasher.update(key);
        hash = hasher.finalize();
    }
    // Six chunks of five bytes, each reduced to five decimal digits.
    let mut out = String::with_capacity(HALF_DIGITS);
    for chunk in hash.chunks_exact(5).take(HALF_DIGITS / 5) {
        let value = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        out.push_str(&format!("{:05}", value % 100_000));
    }
    out
}

impl SafetyNumber {
    /// Computes the safety number of `ours` and `theirs`; swapping the
    /// arguments gives the same number.
    pub fn new(ours: &IdentityKey, theirs: &IdentityKey) -> Self {
        let (a, b) = (half(ours), half(theirs));
        if a <= b { Self(a + &b) } else { Self(b + &a) }
    }

    /// The 60 digits without separators.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// The digits in twelve groups of five, as shown to people.
    pub fn groups(&self) -> Vec<&str> {
        let mut groups = Vec::with_capacity(12);
        let mut rest = self.0.as_str();
        while !rest.is_empty() {
            let (group, tail) = rest.split_at(rest.len().min(5));
            groups.push(group);
            rest = tail;
        }
        groups
    }
}

impl fmt::Display for SafetyNumber {
    /// Twelve groups of five digits in three lines of four, as shown to people.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.groups().iter().enumerate() {
            let sep = match i {
                0 => "",
                4 | 8 => "\n",
                _ => " ",
            };
            write!(f, "{sep}{group}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SafetyNumber(..)")
    }
}
