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
//!   source, and a whole shut-down neighbourhood may share one `/24`. IPv6
//!   unique-local and link-local addresses likewise count whole (there a
//!   `/64` is the whole LAN).
//! - A relay circuit counts as its relay, and loopback (a pluggable-transport
//!   proxy forwards every client from there) as one shared source: the
//!   PeerId behind them is free, and counting by it would give a flooder a
//!   fresh quota, and a fresh fair share of a full store, on every
//!   reconnect. The cost: honest peers behind the same relay or proxy share
//!   one quota. (A bridge server's clients arrive through the Extended
//!   ORPort with their own addresses, so they count by those.)
//! - Links the app attached (Bluetooth, Wi-Fi Direct) share one account.

use std::net::{Ipv4Addr, Ipv6Addr};

use ferry_core::engine::SourceId;
use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use sha2::{Digest as _, Sha256};

/// The quota account for a connection from `peer` at `remote`.
pub(crate) fn source_of(remote: &Multiaddr, peer: &PeerId) -> SourceId {
    let relayed = remote.iter().any(|p| matches!(p, Protocol::P2pCircuit));
    let relay = remote.iter().find_map(|p| match p {
        Protocol::P2p(relay) if relayed => Some(relay),
        _ => None,
    });
    let key: Vec<u8> = match (relay, remote.iter().next()) {
        (Some(relay), _) => [b"circuit:".as_slice(), &relay.to_bytes()].concat(),
        (None, _) if relayed => b"circuit:unknown".to_vec(),
        // Attached links: one account for all of them (a phone in radio
        // range brings a free PeerId, like any stranger).
        (None, Some(Protocol::Memory(_))) => b"links".to_vec(),
        (None, Some(Protocol::Ip4(ip))) if ip.is_loopback() => b"loopback".to_vec(),
        (None, Some(Protocol::Ip6(ip))) if is_loopback_v6(&ip) => b"loopback".to_vec(),
        (None, Some(Protocol::Ip4(ip))) if !ip.is_unspecified() => {
            [b"ip4:".as_slice(), &ip.octets()].concat()
        }
        (None, Some(Protocol::Ip6(ip))) if !ip.is_unspecified() => {
            let octets = ip.octets();
            // Global: the host's /64. Unique-local (fc00::/7) and
            // link-local (fe80::/10): the whole address.
            let len = if crate::ip_class::is_local_v6(&ip) {
                16
            } else {
                8
            };
            [b"ip6:".as_slice(), octets.get(..len).unwrap_or(&octets)].concat()
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

fn is_loopback_v6(ip: &Ipv6Addr) -> bool {
    ip.is_loopback()
        || ip
            .to_ipv4_mapped()
            .is_some_and(|v4: Ipv4Addr| v4.is_loopback())
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
