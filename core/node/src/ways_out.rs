//! The node's side of its non-TCP ways out: attached links (labels and
//! their events) and the pluggable-transport processes it supervises.

use std::collections::HashMap;

use ferry_transports::{
    Stream,
    pipe::{LinkAttacher, LinkId},
    pt::{PtEvent, PtServer, Supervisor},
};
use libp2p::{PeerId, core::ConnectedPoint, swarm::ConnectionId};
use tokio::sync::mpsc;

use crate::events::NodeEvent;

/// Links, their labels and the PT supervisors.
pub(crate) struct WaysOut {
    links: LinkAttacher,
    labels: HashMap<LinkId, String>,
    connections: HashMap<ConnectionId, (LinkId, PeerId)>,
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
        let ConnectedPoint::Listener { send_back_addr, .. } = endpoint else {
            return None;
        };
        let link = LinkId::from_multiaddr(send_back_addr)?;
        self.connections.insert(connection, (link, peer));
        Some(NodeEvent::LinkUp {
            link,
            label: self.labels.get(&link).cloned().unwrap_or_default(),
            peer,
        })
    }

    /// A connection closed: a link's, if it was one.
    pub(crate) fn closed(&mut self, connection: ConnectionId) -> Option<NodeEvent> {
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
