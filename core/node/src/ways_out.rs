//! The node's side of its non-TCP ways out: attached links (labels and
//! their events) and the pluggable-transport processes it supervises.

use std::collections::HashMap;

use ferry_transports::{
    Stream,
    pipe::{LinkAttacher, LinkId},
    pt::{PtEvent, PtServer, Supervisor},
};
use libp2p::{Multiaddr, PeerId, core::ConnectedPoint, multiaddr::Protocol, swarm::ConnectionId};
use tokio::sync::mpsc;

use crate::{config::TransportKind, events::NodeEvent};

/// One connection to a peer, as the app may show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The peer's address on this connection (for a relayed connection,
    /// the circuit; for an attached link, `/memory/<link>`).
    pub address: Multiaddr,
    /// How it travels (`None` when the address does not say).
    pub transport: Option<TransportKind>,
    /// Whether we dialed it.
    pub outbound: bool,
    /// The app's label, for an attached link.
    pub link_label: Option<String>,
}

/// A connected peer and its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's network ID.
    pub peer: PeerId,
    /// Its connections (usually one; two while a relayed connection is
    /// upgraded to a direct one).
    pub routes: Vec<Route>,
}

/// Links, their labels and the PT supervisors.
pub(crate) struct WaysOut {
    links: LinkAttacher,
    labels: HashMap<LinkId, String>,
    connections: HashMap<ConnectionId, (LinkId, PeerId)>,
    /// Every open connection: its peer and how it travels.
    routes: HashMap<ConnectionId, (PeerId, Route)>,
    /// Bridge addresses we dial (without `/p2p`), and their method.
    bridges: Vec<(Multiaddr, String)>,
    /// Where a PT server forwards its clients to us, and its method.
    or_port: Option<(Multiaddr, String)>,
    pt_events: mpsc::Receiver<PtEvent>,
    supervisors: Vec<Supervisor>,
    bridge_server: Option<PtServer>,
}

impl WaysOut {
    pub(crate) fn new(
        links: LinkAttacher,
        pt_events: mpsc::Receiver<PtEvent>,
        supervisors: Vec<Supervisor>,
    ) -> Self {
        Self {
            links,
            labels: HashMap::new(),
            connections: HashMap::new(),
            routes: HashMap::new(),
            bridges: Vec::new(),
            or_port: None,
            pt_events,
            supervisors,
            bridge_server: None,
        }
    }

    pub(crate) fn attach(&mut self, stream: Stream, label: String) -> LinkId {
        // The label is known before the link can come up: the attacher
        // only queues the stream for the swarm, which runs on this task.
        let id = self.links.attach(stream);
        self.labels.insert(id, label);
        id
    }

    /// Remembers which dialed addresses are bridges.
    pub(crate) fn set_bridges(&mut self, bridges: Vec<(Multiaddr, String)>) {
        self.bridges = bridges;
    }

    /// Remembers where a PT server's clients come in.
    pub(crate) fn set_or_port(&mut self, address: Multiaddr, method: String) {
        self.or_port = Some((address, method));
    }

    /// The connected peers and how each is reached.
    pub(crate) fn peers(&self) -> Vec<PeerInfo> {
        let mut by_peer: HashMap<PeerId, Vec<Route>> = HashMap::new();
        for (peer, route) in self.routes.values() {
            by_peer.entry(*peer).or_default().push(route.clone());
        }
        let mut peers: Vec<PeerInfo> = by_peer
            .into_iter()
            .map(|(peer, routes)| PeerInfo { peer, routes })
            .collect();
        peers.sort_by_key(|p| p.peer.to_bytes());
        peers
    }

    fn transport_of(&self, endpoint: &ConnectedPoint) -> Option<TransportKind> {
        let strip = |a: &Multiaddr| {
            let mut a = a.clone();
            if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
                a.pop();
            }
            a
        };
        match endpoint {
            ConnectedPoint::Dialer { address, .. } => {
                let plain = strip(address);
                if let Some((_, method)) = self.bridges.iter().find(|(b, _)| *b == plain) {
                    return Some(TransportKind::Pluggable(method.clone()));
                }
                TransportKind::of(address)
            }
            ConnectedPoint::Listener {
                local_addr,
                send_back_addr,
            } => {
                if let Some((or_port, method)) = &self.or_port
                    && strip(local_addr) == *or_port
                {
                    return Some(TransportKind::Pluggable(method.clone()));
                }
                TransportKind::of(send_back_addr).or_else(|| TransportKind::of(local_addr))
            }
        }
    }

    pub(crate) fn set_bridge_server(&mut self, server: PtServer) {
        self.bridge_server = Some(server);
    }

    pub(crate) fn bridge_server(&self) -> Option<&PtServer> {
        self.bridge_server.as_ref()
    }

    /// The next PT event (pending forever without a PT).
    pub(crate) async fn next_pt_event(&mut self) -> Option<PtEvent> {
        self.pt_events.recv().await
    }

    /// A link's connection is up.
    pub(crate) fn established(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        endpoint: &ConnectedPoint,
    ) -> Option<NodeEvent> {
        let address = match endpoint {
            ConnectedPoint::Dialer { address, .. } => address.clone(),
            ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
        };
        let link = LinkId::from_multiaddr(&address);
        let route = Route {
            transport: self.transport_of(endpoint),
            outbound: endpoint.is_dialer(),
            link_label: link.and_then(|l| self.labels.get(&l).cloned()),
            address,
        };
        self.routes.insert(connection, (peer, route));
        let link = link?;
        self.connections.insert(connection, (link, peer));
        Some(NodeEvent::LinkUp {
            link,
            label: self.labels.get(&link).cloned().unwrap_or_default(),
            peer,
        })
    }

    /// A connection closed: a link's, if it was one.
    pub(crate) fn closed(&mut self, connection: ConnectionId) -> Option<NodeEvent> {
        self.routes.remove(&connection);
        let (link, peer) = self.connections.remove(&connection)?;
        Some(NodeEvent::LinkDown {
            link,
            label: self.labels.remove(&link).unwrap_or_default(),
            peer,
        })
    }

    /// An inbound connection failed before it was up: a link's, if the
    /// address says so.
    pub(crate) fn failed(
        &mut self,
        send_back_addr: &libp2p::Multiaddr,
        error: String,
    ) -> Option<NodeEvent> {
        let link = LinkId::from_multiaddr(send_back_addr)?;
        Some(NodeEvent::LinkFailed {
            link,
            label: self.labels.remove(&link).unwrap_or_default(),
            error,
        })
    }

    /// Stops every PT child and waits for it to be gone.
    pub(crate) async fn shutdown(&mut self) {
        if let Some(server) = self.bridge_server.take() {
            server.supervisor.shutdown().await;
        }
        for supervisor in self.supervisors.drain(..) {
            supervisor.shutdown().await;
        }
    }
}
