//! Which addresses an mDNS answer may make the node dial.
//!
//! Anyone on the LAN can answer mDNS queries, with any address: without a
//! check, a forged answer makes every Ferry node on the LAN dial a host
//! of the forger's choosing (a scan, or traffic towards a victim), and
//! tells that host they run Ferry. Only addresses on a local network are
//! taken: private and link-local IPv4, unique-local and link-local IPv6.

use libp2p::{Multiaddr, multiaddr::Protocol};

/// Whether an address from an mDNS answer may be dialled.
pub(crate) fn is_on_link(address: &Multiaddr) -> bool {
    if address.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return false;
    }
    match address.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_private() || ip.is_link_local(),
        Some(Protocol::Ip6(ip)) => {
            let first = ip.segments().first().copied().unwrap_or(0);
            first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_network_addresses_are_dialled() {
        let ok = |s: &str| is_on_link(&s.parse().unwrap_or_else(|_| Multiaddr::empty()));
        for good in [
            "/ip4/192.168.1.20/tcp/4001",
            "/ip4/10.0.0.7/udp/4001/quic-v1",
            "/ip4/172.16.3.4/tcp/1",
            "/ip4/169.254.9.9/tcp/1",
            "/ip6/fe80::1/tcp/1",
            "/ip6/fd12::7/tcp/1",
        ] {
            assert!(ok(good), "{good} is on a local network");
        }
        for bad in [
            "/ip4/8.8.8.8/tcp/53",
            "/ip4/127.0.0.1/tcp/1",
            "/ip6/2a00::1/tcp/1",
            "/ip6/::1/tcp/1",
            "/dns4/victim.example/tcp/80",
            "/ip4/10.0.0.1/tcp/1/p2p-circuit",
        ] {
            assert!(!ok(bad), "{bad} is not dialled from an mDNS answer");
        }
    }
}
