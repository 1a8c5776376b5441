//! Which addresses an mDNS answer may make the node dial.
//!
//! Anyone on the LAN can answer mDNS queries. libp2p-mdns replaces the IP
//! of each announced address with the answer's source IP (unless that is
//! link-local), but a source IP is easy to forge on a LAN: without a check,
//! a forged answer makes every Ferry node on the LAN dial a host of the
//! forger's choosing (a scan, traffic towards a victim, a host behind a
//! VPN route) and tells that host it runs Ferry. Only addresses on a
//! network the node itself is on are taken: the same IPv4 /24 or IPv6 /64
//! as one of its own (non-loopback) listen addresses, or link-local.

use std::task::{Context, Poll};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    mdns,
    multiaddr::Protocol,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm,
    },
};

/// mDNS whose discoveries reach dials only through [`is_on_link`].
///
/// libp2p-mdns also hands every address it discovered to any dial by
/// PeerId that asks behaviours for addresses (autonat probes, the relay
/// client's listen dial): a forger answering with a bootstrap peer's or
/// relay's PeerId (both public) would be dialled there. This wrapper
/// filters those addresses too, against the node's own listen addresses,
/// which it tracks itself.
pub(crate) struct LanDiscovery {
    inner: mdns::tokio::Behaviour,
    own: Vec<Multiaddr>,
}

impl LanDiscovery {
    pub(crate) fn new(inner: mdns::tokio::Behaviour) -> Self {
        Self {
            inner,
            own: Vec::new(),
        }
    }
}

impl NetworkBehaviour for LanDiscovery {
    type ConnectionHandler = THandler<mdns::tokio::Behaviour>;
    type ToSwarm = mdns::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(connection, peer, local, remote)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        let found = self
            .inner
            .handle_pending_outbound_connection(connection, peer, addresses, role)?;
        Ok(found
            .into_iter()
            .filter(|a| is_on_link(a, &self.own))
            .collect())
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(connection, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match &event {
            FromSwarm::NewListenAddr(new)
                if !self.own.contains(new.addr) && self.own.len() < 256 =>
            {
                self.own.push(new.addr.clone());
            }
            FromSwarm::ExpiredListenAddr(expired) => self.own.retain(|a| a != expired.addr),
            _ => {}
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer, connection, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}

/// Whether an address from an mDNS answer may be dialled, given the
/// node's own listen addresses.
pub(crate) fn is_on_link(address: &Multiaddr, own: &[Multiaddr]) -> bool {
    if address.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return false;
    }
    // A circuit listen address starts with the relay's IP: not our network.
    let own_ips = || {
        own.iter()
            .filter(|a| !a.iter().any(|p| matches!(p, Protocol::P2pCircuit)))
            .filter_map(|a| a.iter().next())
    };
    match address.iter().next() {
        Some(Protocol::Ip4(ip)) => {
            if ip.is_link_local() {
                return true;
            }
            let net = |o: [u8; 4]| [o[0], o[1], o[2]];
            !ip.is_loopback()
                && !ip.is_unspecified()
                && own_ips().any(|p| match p {
                    Protocol::Ip4(mine) => {
                        !mine.is_loopback() && net(mine.octets()) == net(ip.octets())
                    }
                    _ => false,
                })
        }
        Some(Protocol::Ip6(ip)) => {
            if crate::ip_class::is_link_local_v6(&ip) {
                return true;
            }
            let net = |s: [u16; 8]| [s[0], s[1], s[2], s[3]];
            !ip.is_loopback()
                && !ip.is_unspecified()
                && own_ips().any(|p| match p {
                    Protocol::Ip6(mine) => {
                        !mine.is_loopback() && net(mine.segments()) == net(ip.segments())
                    }
                    _ => false,
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Multiaddr {
        s.parse().unwrap_or_else(|_| Multiaddr::empty())
    }

    #[test]
    fn only_addresses_on_our_own_networks_are_dialled() {
        let own = [
            parse("/ip4/127.0.0.1/tcp/4001"),
            parse("/ip4/192.168.1.20/tcp/4001"),
            parse("/ip6/2a00:1:2:3::9/tcp/4001"),
            parse(
                "/ip4/9.9.9.9/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA/p2p-circuit",
            ),
        ];
        let ok = |s: &str| is_on_link(&parse(s), &own);
        for good in [
            "/ip4/192.168.1.77/tcp/4001",
            "/ip4/169.254.9.9/tcp/1",
            "/ip6/fe80::1/tcp/1",
            "/ip6/2a00:1:2:3::77/udp/1/quic-v1",
        ] {
            assert!(ok(good), "{good} is on one of our networks");
        }
        for bad in [
            "/ip4/8.8.8.8/tcp/53",
            "/ip4/9.9.9.10/tcp/1",
            "/ip4/10.0.0.7/tcp/22",
            "/ip4/192.168.2.1/tcp/1",
            "/ip4/127.0.0.2/tcp/1",
            "/ip6/2a00:1:2:4::1/tcp/1",
            "/ip6/::1/tcp/1",
            "/dns4/victim.example/tcp/80",
            "/ip4/192.168.1.1/tcp/1/p2p-circuit",
        ] {
            assert!(!ok(bad), "{bad} is not dialled from an mDNS answer");
        }
    }
}
