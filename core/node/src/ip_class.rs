//! Address classes the node's checks share.

use std::net::{IpAddr, Ipv6Addr};

use libp2p::{Multiaddr, multiaddr::Protocol};

/// An IPv6 link-local address (fe80::/10).
pub(crate) fn is_link_local_v6(ip: &Ipv6Addr) -> bool {
    ip.segments().first().is_some_and(|s| s & 0xffc0 == 0xfe80)
}

/// An IPv6 address that names a host on a local network: unique-local
/// (fc00::/7) or link-local.
pub(crate) fn is_local_v6(ip: &Ipv6Addr) -> bool {
    ip.segments().first().is_some_and(|s| s & 0xfe00 == 0xfc00) || is_link_local_v6(ip)
}

/// Whether `address` is a global IP address (a hole-punch candidate, an
/// address a relay announces by itself).
pub(crate) fn is_global(address: &Multiaddr) -> bool {
    if address.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return false;
    }
    match address.iter().next() {
        Some(Protocol::Ip4(ip)) => is_global_ip(IpAddr::V4(ip)),
        Some(Protocol::Ip6(ip)) => is_global_ip(IpAddr::V6(ip)),
        _ => false,
    }
}

/// A global unicast address (not private, loopback, link-local, shared,
/// documentation, multicast, unique-local or unspecified).
pub(crate) fn is_global_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || a >= 240
                // 100.64.0.0/10, carrier-grade NAT
                || (a == 100 && (64..128).contains(&b))
                // 198.18.0.0/15, benchmarking
                || (a == 198 && (b == 18 || b == 19)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_global_ip(IpAddr::V4(v4));
            }
            let first = v6.segments().first().copied().unwrap_or(0);
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || is_local_v6(&v6)
                || first == 0x2001 && v6.segments().get(1) == Some(&0x0db8))
        }
    }
}
