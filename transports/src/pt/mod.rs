//! Tor pluggable transports, spec v1, as a managed proxy.
//!
//! Ferry does not re-implement obfs4: it runs the PT binary the Tor
//! ecosystem maintains (Debian's `obfs4proxy`, lyrebird; snowflake-client
//! speaks the same spec) and talks to it the way Tor does.
//!
//! - Client: [`start_client`] runs the PT in client mode and yields a
//!   libp2p transport that dials each configured [`BridgeLine`] through
//!   the PT's SOCKS5 port, the bridge arguments as credentials.
//! - Server: [`start_server`] runs the PT in server mode on a public
//!   address, forwarding to the node's own loopback listener, and returns
//!   the bridge line clients paste.
//!
//! A PT that dies is restarted with backoff, each step a [`PtEvent`];
//! dropping the [`Supervisor`] kills it, and the PT also exits when our
//! end of its stdin closes (so even `kill -9` of the app leaves no
//! orphan).

mod bridge;
pub mod ext_or;
mod managed;
pub mod socks5;

use std::{
    io, net::SocketAddr, path::PathBuf, pin::Pin, task::Context, task::Poll, time::Duration,
};

pub use bridge::{BridgeLine, BridgeLineError};
use futures::{FutureExt, future::BoxFuture};
use libp2p::{
    Multiaddr, PeerId,
    core::transport::{DialOpts, ListenerId, TransportError, TransportEvent},
    multiaddr::Protocol,
};
pub use managed::{Method, Supervisor, check_binary};
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use crate::Stream;

/// Why a pluggable transport could not be configured or started.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PtError {
    /// The PT binary is missing or not executable.
    #[error("pluggable transport binary {0:?} not found or not executable")]
    Binary(String),
    /// A bridge line was refused.
    #[error("bad bridge line: {0}")]
    Bridge(#[from] BridgeLineError),
    /// The configuration is inconsistent.
    #[error("pluggable transport configuration: {0}")]
    Config(String),
    /// The PT failed to start or broke the managed-proxy protocol.
    #[error("pluggable transport failed to start: {0}")]
    Launch(String),
    /// The PT refused the method.
    #[error("pluggable transport refused the method: {0}")]
    Method(String),
}

/// What happened to a running PT.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PtEvent {
    /// The PT is up (first start or restart).
    Started {
        /// The method (`obfs4`).
        method: String,
        /// Client: its SOCKS5 port. Server: where it listens.
        address: Option<SocketAddr>,
    },
    /// The PT process exited on its own.
    Exited {
        /// The method.
        method: String,
        /// Its exit status.
        status: String,
    },
    /// It will be started again after a pause.
    Restarting {
        /// The method.
        method: String,
        /// The pause (doubling up to a minute).
        after: Duration,
    },
    /// A restart failed; another follows after a longer pause.
    Failed {
        /// The method.
        method: String,
        /// Why.
        error: String,
    },
}

/// A PT client: which binary, where it keeps state, which bridges.
#[derive(Debug, Clone)]
pub struct PtClientConfig {
    /// The PT binary (a path, or a name looked up on `PATH`).
    pub binary: PathBuf,
    /// The PT's state directory (`TOR_PT_STATE_LOCATION`).
    pub state_dir: PathBuf,
    /// The bridges to dial, all of one method.
    pub bridges: Vec<BridgeLine>,
}

impl PtClientConfig {
    /// Checks the binary and the bridges.
    ///
    /// # Errors
    /// If the binary is missing, no bridge is given, or bridges mix methods.
    pub fn validate(&self) -> Result<(), PtError> {
        check_binary(&self.binary)?;
        let first = self
            .bridges
            .first()
            .ok_or_else(|| PtError::Config("no bridge line given".into()))?;
        if let Some(other) = self.bridges.iter().find(|b| b.transport != first.transport) {
            return Err(PtError::Config(format!(
                "bridges mix methods ({} and {}); configure one PT per method",
                first.transport, other.transport
            )));
        }
        Ok(())
    }

    fn method(&self) -> String {
        self.bridges
            .first()
            .map(|b| b.transport.clone())
            .unwrap_or_default()
    }
}

/// A PT server: which binary, where it listens, what it announces.
#[derive(Debug, Clone)]
pub struct PtServerConfig {
    /// The PT binary.
    pub binary: PathBuf,
    /// The PT's state directory: obfs4 keeps its keys (and so the
    /// bridge line's `cert`) there across restarts.
    pub state_dir: PathBuf,
    /// The method (`obfs4`).
    pub method: String,
    /// Where the PT listens (use a fixed port: a restart on port 0 would
    /// change the bridge line).
    pub bind: SocketAddr,
    /// The address clients reach the PT at, if not `bind` (behind NAT, or
    /// `bind` is a wildcard).
    pub public_address: Option<SocketAddr>,
    /// Method options (`iat-mode` = `0`, `1` or `2` for obfs4).
    pub options: Vec<(String, String)>,
}

impl PtServerConfig {
    /// Checks the binary, the method name and the options.
    ///
    /// # Errors
    /// If any is unusable.
    pub fn validate(&self) -> Result<(), PtError> {
        check_binary(&self.binary)?;
        if !bridge::valid_method_name(&self.method) {
            return Err(PtError::Config(format!(
                "bad method name {:?}",
                self.method
            )));
        }
        for (k, v) in &self.options {
            let bad = |s: &str| s.is_empty() || s.contains([';', ':', '=', ' ', '\n']);
            if bad(k) || v.contains([';', '\n']) {
                return Err(PtError::Config(format!("bad option {k}={v}")));
            }
            if self.method == "obfs4" && k == "iat-mode" && !matches!(v.as_str(), "0" | "1" | "2") {
                return Err(PtError::Config("obfs4 iat-mode must be 0, 1 or 2".into()));
            }
        }
        Ok(())
    }
}

/// Starts the PT client; returns the transport that dials the bridges
/// through it and the supervisor that keeps it running.
///
/// # Errors
/// If the configuration is invalid or the PT does not start.
pub async fn start_client(
    config: &PtClientConfig,
    events: mpsc::Sender<PtEvent>,
) -> Result<(PtClientTransport, Supervisor), PtError> {
    config.validate()?;
    let spec = managed::Spec {
        binary: config.binary.clone(),
        state_dir: config.state_dir.clone(),
        method: config.method(),
        side: managed::Side::Client,
    };
    let (supervisor, methods) = managed::supervise(spec, events).await?;
    Ok((
        PtClientTransport {
            bridges: config.bridges.clone(),
            methods,
        },
        supervisor,
    ))
}

/// A running PT server and the bridge line it serves.
#[derive(Debug)]
pub struct PtServer {
    /// Keeps the PT running.
    pub supervisor: Supervisor,
    methods: watch::Receiver<Vec<Method>>,
    config: PtServerConfig,
    peer: PeerId,
}

impl PtServer {
    /// The bridge line for clients, as the PT reports it now (its `cert`
    /// is stable across restarts; its port too when `bind` fixes it).
    pub fn bridge_line(&self) -> Option<BridgeLine> {
        let methods = self.methods.borrow();
        let method = methods.first()?;
        Some(BridgeLine {
            transport: method.name.clone(),
            address: self.config.public_address.unwrap_or(method.address),
            peer: Some(self.peer),
            args: method.args.clone(),
        })
    }
}

/// The cookie file the PT server and the node's Extended ORPort share.
pub fn cookie_file(config: &PtServerConfig) -> PathBuf {
    config.state_dir.join("extended_orport_auth_cookie")
}

/// Starts the PT server in front of `ext_or_port` (the node's Extended
/// ORPort, [`ext_or::ExtOrTransport`], which learns each client's
/// address) for the node `peer`.
///
/// # Errors
/// If the configuration is invalid or the PT does not start.
pub async fn start_server(
    config: &PtServerConfig,
    ext_or_port: SocketAddr,
    peer: PeerId,
    events: mpsc::Sender<PtEvent>,
) -> Result<PtServer, PtError> {
    config.validate()?;
    let spec = managed::Spec {
        binary: config.binary.clone(),
        state_dir: config.state_dir.clone(),
        method: config.method.clone(),
        side: managed::Side::Server {
            bind: config.bind,
            ext_or_port,
            cookie_file: cookie_file(config),
            options: config.options.clone(),
        },
    };
    let (supervisor, methods) = managed::supervise(spec, events).await?;
    Ok(PtServer {
        supervisor,
        methods,
        config: config.clone(),
        peer,
    })
}

/// Dials configured bridges through the PT client's SOCKS5 port. It
/// claims exactly the bridges' addresses (`/ip4/…/tcp/…`, with or
/// without `/p2p/…`): put it before plain TCP, so a bridge is never
/// dialed in the clear.
#[derive(Debug)]
pub struct PtClientTransport {
    bridges: Vec<BridgeLine>,
    methods: watch::Receiver<Vec<Method>>,
}

impl PtClientTransport {
    /// The bridge `addr` names: `/ip4|ip6/…/tcp/…`, optionally with its
    /// `/p2p/…`; an IPv4-mapped IPv6 form counts as the IPv4 address.
    fn bridge_for(&self, addr: &Multiaddr) -> Option<&BridgeLine> {
        let mut protocols = addr.iter();
        let ip = match protocols.next()? {
            Protocol::Ip4(ip) => std::net::IpAddr::V4(ip),
            Protocol::Ip6(ip) => std::net::IpAddr::V6(ip),
            _ => return None,
        };
        let Protocol::Tcp(port) = protocols.next()? else {
            return None;
        };
        match protocols.next() {
            None | Some(Protocol::P2p(_)) if protocols.next().is_none() => {}
            _ => return None,
        }
        let target = SocketAddr::new(ip.to_canonical(), port);
        self.bridges
            .iter()
            .find(|b| SocketAddr::new(b.address.ip().to_canonical(), b.address.port()) == target)
    }
}

impl libp2p::Transport for PtClientTransport {
    type Output = Stream;
    type Error = io::Error;
    type ListenerUpgrade = futures::future::Pending<io::Result<Stream>>;
    type Dial = BoxFuture<'static, io::Result<Stream>>;

    fn listen_on(
        &mut self,
        _id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _id: ListenerId) -> bool {
        false
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let Some(bridge) = self.bridge_for(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let target = bridge.address;
        let args = bridge.socks_args();
        let mut methods = self.methods.clone();
        Ok(async move {
            // While the PT restarts, wait for its new port (briefly).
            let proxy = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    if let Some(m) = methods.borrow_and_update().first() {
                        return Ok(m.address);
                    }
                    if methods.changed().await.is_err() {
                        return Err(io::Error::other("the pluggable transport is gone"));
                    }
                }
            })
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no pluggable transport"))??;
            let stream = socks5::connect(proxy, target, &args).await?;
            Ok(Box::new(libp2p::tcp::tokio::TcpStream(stream)) as Stream)
        }
        .boxed())
    }

    fn poll(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_bridge_transport_claims_its_bridges_in_every_spelling_and_nothing_else() {
        let peer = PeerId::random();
        let line: BridgeLine = format!(
            "obfs4 198.51.100.7:443 {peer} cert={} iat-mode=0",
            "A".repeat(70)
        )
        .parse()
        .unwrap();
        let (_tx, methods) = watch::channel(Vec::new());
        let transport = PtClientTransport {
            bridges: vec![line],
            methods,
        };
        for claimed in [
            "/ip4/198.51.100.7/tcp/443".to_string(),
            format!("/ip4/198.51.100.7/tcp/443/p2p/{peer}"),
            "/ip6/::ffff:198.51.100.7/tcp/443".to_string(),
        ] {
            let addr: Multiaddr = claimed.parse().unwrap();
            assert!(transport.bridge_for(&addr).is_some(), "{claimed}");
        }
        for other in [
            "/ip4/198.51.100.7/tcp/444",
            "/ip4/198.51.100.8/tcp/443",
            "/ip4/198.51.100.7/udp/443/quic-v1",
        ] {
            let addr: Multiaddr = other.parse().unwrap();
            assert!(transport.bridge_for(&addr).is_none(), "{other}");
        }
    }
}
