//! Which quota account a connection's envelopes are charged to.
//!
//! Client PeerIds are free (a fresh key per start), so quotas kept per
//! PeerId reset whenever a flooder reconnects. The engine instead charges
//! custody to a [`SourceId`] that the driver derives from what a peer
//! cannot choose as freely: its network address.
//!
//! - A global IPv4 address counts as itself (`/32`: carrier-grade NAT puts
//!   many honest users behind one address, so a wider prefix would starve
//!   them); a global IPv6 address by its `/64` (one host's allocation).
//! - A private (LAN) address counts as itself: on a LAN each host is one
//!   source, and a whole shut-down neighbourhood may share one `/24`.
//! - Loopback, relay circuits and anything else say nothing about the
//!   sender (a pluggable-transport proxy or a relay forwards for many), so
//!   the PeerId is the source there: no worse than before.

use std::net::{Ipv4Addr, Ipv6Addr};

use ferry_core::engine::SourceId;
use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use sha2::{Digest as _, Sha256};

/// The quota account for a connection from `peer` at `remote`.
pub(crate) fn source_of(remote: &Multiaddr, peer: &PeerId) -> SourceId {
    let relayed = remote.iter().any(|p| matches!(p, Protocol::P2pCircuit));
    let key: Vec<u8> = match remote.iter().next() {
        Some(Protocol::Ip4(ip)) if !relayed && counts_by_address_v4(&ip) => {
            [b"ip4:".as_slice(), &ip.octets()].concat()
        }
        Some(Protocol::Ip6(ip)) if !relayed && counts_by_address_v6(&ip) => {
            let prefix = ip.octets();
            [b"ip6:".as_slice(), prefix.get(..8).unwrap_or(&prefix)].concat()
        }
        _ => [b"peer:".as_slice(), &peer.to_bytes()].concat(),
    };
    let digest = Sha256::new_with_prefix(b"ferry/source/v1")
        .chain_update(&key)
        .finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    SourceId(u64::from_be_bytes(id))
}

fn counts_by_address_v4(ip: &Ipv4Addr) -> bool {
    !(ip.is_loopback() || ip.is_unspecified())
}

fn counts_by_address_v6(ip: &Ipv6Addr) -> bool {
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
