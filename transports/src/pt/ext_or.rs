//! The Extended ORPort (Tor's ext-orport-spec): how a PT server tells us
//! which client each connection it forwards comes from. Without it every
//! bridge user would arrive from 127.0.0.1, and per-source limits and
//! quotas would lump them all together (or, loopback being exempt, let
//! any of them past every limit).
//!
//! This is a libp2p transport that only listens, on a marker address
//! ([`listen_address`]): it accepts the PT's loopback connections,
//! authenticates them with the shared cookie (SAFE_COOKIE), reads the
//! client's address (`USERADDR`), and only then reports the connection to
//! the swarm, from that address, so the connection gate and custody
//! quotas see the real client.

use std::{
    collections::VecDeque,
    io,
    net::{IpAddr, SocketAddr},
    path::Path,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use futures::{
    FutureExt, StreamExt,
    future::{BoxFuture, Ready},
    stream::FuturesUnordered,
};
use hmac::{Hmac, KeyInit as _, Mac as _};
use libp2p::{
    Multiaddr,
    core::transport::{DialOpts, ListenerId, TransportError, TransportEvent},
    multiaddr::Protocol,
};
use rand::RngExt as _;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use zeroize::Zeroizing;

use crate::Stream;

const COOKIE_HEADER: &[u8; 32] = b"! Extended ORPort Auth Cookie !\x0a";
const SAFE_COOKIE: u8 = 1;
const SERVER_TO_CLIENT: &[u8] = b"ExtORPort authentication server-to-client hash";
const CLIENT_TO_SERVER: &[u8] = b"ExtORPort authentication client-to-server hash";
const CMD_DONE: u16 = 0x0000;
const CMD_USERADDR: u16 = 0x0001;
const REPLY_OKAY: u16 = 0x1000;
const REPLY_DENY: u16 = 0x1001;
/// Commands one connection may send before `DONE`, and their longest body.
const MAX_COMMANDS: usize = 16;
const MAX_BODY: usize = 1024;
/// Handshakes in progress at once (they come from our own PT process).
const MAX_HANDSHAKES: usize = 256;
/// Our own PT answers in microseconds: a connection that takes longer is
/// not it, and must not hold a slot long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections accepted per poll, so a flood cannot starve the swarm.
const ACCEPTS_PER_POLL: usize = 16;

/// The marker address the node listens on to receive a PT server's
/// clients (never announced: the real socket is on loopback).
pub fn listen_address() -> Multiaddr {
    Multiaddr::empty().with(Protocol::Unix("ferry-extended-orport".into()))
}

/// Where the PT must connect, once the listener is bound.
#[derive(Debug, Clone, Default)]
pub struct ExtOrPort {
    bound: Arc<Mutex<Option<SocketAddr>>>,
}

impl ExtOrPort {
    /// The loopback address the listener is bound to.
    pub fn address(&self) -> Option<SocketAddr> {
        self.bound.lock().ok().and_then(|a| *a)
    }
}

type Handshake = BoxFuture<'static, io::Result<(TcpStream, SocketAddr)>>;

/// The Extended ORPort as a listening transport.
pub struct ExtOrTransport {
    cookie: Arc<Zeroizing<[u8; 32]>>,
    exempt: Arc<Vec<IpAddr>>,
    port: ExtOrPort,
    listener: Option<(ListenerId, TcpListener)>,
    announce: VecDeque<TransportEvent<Ready<io::Result<Stream>>, io::Error>>,
    handshakes: FuturesUnordered<Handshake>,
}

impl std::fmt::Debug for ExtOrTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtOrTransport")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl ExtOrTransport {
    /// A transport whose cookie is written to `cookie_file` (mode 0600),
    /// and the handle that tells where it listens. Clients claiming an
    /// address in `exempt` (the node's sources exempt from per-source
    /// limits) are refused.
    ///
    /// # Errors
    /// If the cookie file cannot be written.
    pub fn new(cookie_file: &Path, exempt: &[IpAddr]) -> io::Result<(Self, ExtOrPort)> {
        let cookie = Zeroizing::new(rand::rng().random::<[u8; 32]>());
        let mut contents = Zeroizing::new(COOKIE_HEADER.to_vec());
        contents.extend_from_slice(cookie.as_ref());
        if let Some(dir) = cookie_file.parent() {
            super::managed::private_dir(dir)?;
        }
        let _ = std::fs::remove_file(cookie_file);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(cookie_file)?, &contents)?;
        let port = ExtOrPort::default();
        Ok((
            Self {
                cookie: Arc::new(cookie),
                exempt: Arc::new(exempt.iter().map(|ip| ip.to_canonical()).collect()),
                port: port.clone(),
                listener: None,
                announce: VecDeque::new(),
                handshakes: FuturesUnordered::new(),
            },
            port,
        ))
    }
}

fn hmac(key: &[u8; 32], label: &[u8], client: &[u8; 32], server: &[u8; 32]) -> [u8; 32] {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(label);
    mac.update(client);
    mac.update(server);
    mac.finalize().into_bytes().into()
}

/// The server side of the handshake; returns the client's address.
async fn handshake(
    stream: &mut TcpStream,
    cookie: &[u8; 32],
    exempt: &[IpAddr],
) -> io::Result<SocketAddr> {
    let refuse = |why: &str| io::Error::new(io::ErrorKind::PermissionDenied, why.to_owned());
    stream.write_all(&[SAFE_COOKIE, 0]).await?;
    if stream.read_u8().await? != SAFE_COOKIE {
        return Err(refuse("unsupported authentication type"));
    }
    let mut client_nonce = [0u8; 32];
    stream.read_exact(&mut client_nonce).await?;
    let server_nonce: [u8; 32] = rand::rng().random();
    let server_hash = hmac(cookie, SERVER_TO_CLIENT, &client_nonce, &server_nonce);
    let mut reply = server_hash.to_vec();
    reply.extend_from_slice(&server_nonce);
    stream.write_all(&reply).await?;
    let mut client_hash = [0u8; 32];
    stream.read_exact(&mut client_hash).await?;
    let expected = hmac(cookie, CLIENT_TO_SERVER, &client_nonce, &server_nonce);
    if !bool::from(expected.ct_eq(&client_hash)) {
        stream.write_all(&[0]).await?;
        return Err(refuse("wrong cookie"));
    }
    stream.write_all(&[1]).await?;
    let mut user = None;
    for _ in 0..MAX_COMMANDS {
        let command = stream.read_u16().await?;
        let len = usize::from(stream.read_u16().await?);
        if len > MAX_BODY {
            return Err(refuse("command too long"));
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await?;
        match command {
            CMD_USERADDR => {
                // A client address the node exempts from per-source limits
                // (its own processes, 127.0.0.1 by default) or an
                // unspecified one is refused, whoever sent it: a PT behind
                // a reverse proxy, or one that trusts what a proxy claims,
                // must not make every client exempt.
                user = std::str::from_utf8(&body)
                    .ok()
                    .and_then(|s| s.parse::<SocketAddr>().ok())
                    .filter(|a| {
                        let ip = a.ip().to_canonical();
                        !ip.is_unspecified() && !exempt.contains(&ip)
                    });
            }
            CMD_DONE => {
                return match user {
                    Some(address) => {
                        stream.write_all(&REPLY_OKAY.to_be_bytes()).await?;
                        stream.write_all(&0u16.to_be_bytes()).await?;
                        Ok(address)
                    }
                    None => {
                        // Without the client's address the node could not
                        // apply per-source limits: refuse rather than
                        // lump the client in with every other.
                        stream.write_all(&REPLY_DENY.to_be_bytes()).await?;
                        stream.write_all(&0u16.to_be_bytes()).await?;
                        Err(refuse("no USERADDR"))
                    }
                };
            }
            // TRANSPORT and others: noted by the PT's configuration already.
            _ => {}
        }
    }
    Err(refuse("too many commands"))
}

fn to_multiaddr(address: SocketAddr) -> Multiaddr {
    Multiaddr::from(address.ip()).with(Protocol::Tcp(address.port()))
}

impl libp2p::Transport for ExtOrTransport {
    type Output = Stream;
    type Error = io::Error;
    type ListenerUpgrade = Ready<io::Result<Stream>>;
    type Dial = futures::future::Pending<io::Result<Stream>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        if addr != listen_address() || self.listener.is_some() {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(TransportError::Other)?;
        let bound = std_listener.local_addr().map_err(TransportError::Other)?;
        let listener = TcpListener::from_std(std_listener).map_err(TransportError::Other)?;
        if let Ok(mut slot) = self.port.bound.lock() {
            *slot = Some(bound);
        }
        self.listener = Some((id, listener));
        self.announce.push_back(TransportEvent::NewAddress {
            listener_id: id,
            listen_addr: addr,
        });
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        if self.listener.as_ref().is_some_and(|(l, _)| *l == id) {
            self.listener = None;
            self.handshakes = FuturesUnordered::new();
            self.announce.push_back(TransportEvent::ListenerClosed {
                listener_id: id,
                reason: Ok(()),
            });
            return true;
        }
        false
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        let this = self.get_mut();
        if let Some(event) = this.announce.pop_front() {
            return Poll::Ready(event);
        }
        let Some((listener_id, listener)) = this.listener.as_ref() else {
            return Poll::Pending;
        };
        let listener_id = *listener_id;
        // Finished handshakes first: they free slots for new ones.
        while let Poll::Ready(Some(done)) = this.handshakes.poll_next_unpin(cx) {
            match done {
                Ok((stream, user)) => {
                    let _ = stream.set_nodelay(true);
                    let stream: Stream = Box::new(libp2p::tcp::tokio::TcpStream(stream));
                    return Poll::Ready(TransportEvent::Incoming {
                        listener_id,
                        upgrade: futures::future::ready(Ok(stream)),
                        local_addr: listen_address(),
                        send_back_addr: to_multiaddr(user),
                    });
                }
                Err(e) => tracing::debug!(error = %e, "extended ORPort handshake failed"),
            }
        }
        // New connections only while there is room: when full, they wait
        // in the kernel's backlog rather than being dropped, so a local
        // flood delays the PT's connections instead of refusing them.
        let mut accepted_now = 0;
        while this.handshakes.len() < MAX_HANDSHAKES {
            if accepted_now == ACCEPTS_PER_POLL {
                cx.waker().wake_by_ref();
                break;
            }
            let Poll::Ready(accepted) = listener.poll_accept(cx) else {
                break;
            };
            accepted_now += 1;
            let mut stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, typically: try again on the
                    // next poll rather than spin here.
                    tracing::debug!(error = %e, "extended ORPort accept failed");
                    break;
                }
            };
            let (cookie, exempt) = (this.cookie.clone(), this.exempt.clone());
            this.handshakes.push(
                async move {
                    let address = tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        handshake(&mut stream, &cookie, &exempt),
                    )
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake"))??;
                    Ok((stream, address))
                }
                .boxed(),
            );
        }
        if accepted_now > 0 {
            // The new handshakes have not been polled yet.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// The PT's side, as goptlib does it.
    async fn pt_side(
        stream: &mut TcpStream,
        cookie: &[u8; 32],
        user: Option<&str>,
    ) -> io::Result<u16> {
        let mut types = [0u8; 2];
        stream.read_exact(&mut types).await?;
        assert_eq!(types, [1, 0]);
        stream.write_all(&[1]).await?;
        let client_nonce = [7u8; 32];
        stream.write_all(&client_nonce).await?;
        let mut reply = [0u8; 64];
        stream.read_exact(&mut reply).await?;
        let server_nonce: [u8; 32] = reply[32..].try_into().unwrap();
        // A real PT checks the server's hash here; an attacker without
        // the cookie goes on regardless, and the server must refuse it.
        let server_proved =
            reply[..32] == hmac(cookie, SERVER_TO_CLIENT, &client_nonce, &server_nonce);
        // The tests' server always holds [3; 32].
        assert_eq!(
            server_proved,
            *cookie == [3u8; 32],
            "the server proves the cookie"
        );
        stream
            .write_all(&hmac(
                cookie,
                CLIENT_TO_SERVER,
                &client_nonce,
                &server_nonce,
            ))
            .await?;
        if stream.read_u8().await? != 1 {
            return Ok(0);
        }
        if let Some(user) = user {
            stream.write_u16(CMD_USERADDR).await?;
            stream.write_u16(user.len() as u16).await?;
            stream.write_all(user.as_bytes()).await?;
        }
        stream.write_u16(CMD_DONE).await?;
        stream.write_u16(0).await?;
        stream.read_u16().await
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, server) = tokio::join!(client, listener.accept());
        (client.unwrap(), server.unwrap().0)
    }

    #[tokio::test]
    async fn the_client_address_comes_through_with_the_right_cookie_only() {
        let cookie = [3u8; 32];
        let exempt: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let (mut pt, mut us) = pair().await;
        let (reply, address) = tokio::join!(
            pt_side(&mut pt, &cookie, Some("203.0.113.7:51000")),
            handshake(&mut us, &cookie, &exempt)
        );
        assert_eq!(reply.unwrap(), REPLY_OKAY);
        assert_eq!(address.unwrap(), "203.0.113.7:51000".parse().unwrap());

        let (mut pt, mut us) = pair().await;
        let (reply, address) = tokio::join!(
            pt_side(&mut pt, &[4u8; 32], Some("203.0.113.7:51000")),
            handshake(&mut us, &cookie, &exempt)
        );
        assert_eq!(reply.unwrap(), 0, "a wrong cookie fails authentication");
        assert!(address.is_err());

        let (mut pt, mut us) = pair().await;
        let (reply, address) = tokio::join!(
            pt_side(&mut pt, &cookie, None),
            handshake(&mut us, &cookie, &exempt)
        );
        assert_eq!(reply.unwrap(), REPLY_DENY, "no client address, no entry");
        assert!(address.is_err());
    }
}
