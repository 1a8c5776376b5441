//! TCP whose dials survive a busy listening port.
//!
//! libp2p's TCP transport dials from its listening port when it can
//! (port reuse: what lets a peer behind a NAT be reached at the port it
//! dialed from, and what hole punching needs). That bind, or the
//! connect after it, can be refused by the kernel: `EADDRNOTAVAIL` when
//! the same four-tuple is still in use (a redial right after a drop),
//! `EADDRINUSE` when another socket holds the port in a way port reuse
//! cannot share. libp2p retries only the first case, and only for
//! connect, so the second surfaced as a failed dial a user could do
//! nothing about. [`Tcp`] retries both from a fresh port.

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use futures::{FutureExt, future::BoxFuture};
use libp2p::{
    Multiaddr,
    core::transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent},
    tcp,
};

/// The TCP transport Ferry uses (Nagle off), with a dial from the
/// listening port falling back to a fresh port when the kernel refuses
/// the shared one.
pub type Tcp = ReuseFallback<tcp::tokio::Transport>;

/// A Ferry TCP transport with no listeners.
#[must_use]
pub fn transport() -> Tcp {
    let config = || tcp::Config::default().nodelay(true);
    ReuseFallback::new(
        tcp::tokio::Transport::new(config()),
        tcp::tokio::Transport::new(config()),
    )
}

/// Wraps a transport that dials from its listening port when asked to:
/// such a dial refused for its local address is tried once more from a
/// fresh port, by a second instance that never listens.
pub struct ReuseFallback<T> {
    inner: T,
    /// Never listens, so it always dials from a fresh port. Shared with
    /// dial futures, which outlive the `&mut self` of `dial`.
    fresh: Arc<Mutex<T>>,
}

impl<T> std::fmt::Debug for ReuseFallback<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReuseFallback").finish_non_exhaustive()
    }
}

impl<T> ReuseFallback<T> {
    /// `inner` listens and dials; `fresh` (an instance with the same
    /// configuration that is never given a listener) retries.
    pub fn new(inner: T, fresh: T) -> Self {
        Self {
            inner,
            fresh: Arc::new(Mutex::new(fresh)),
        }
    }
}

/// Whether a failed dial from the shared port is worth one more try
/// from a fresh one.
fn port_refused(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable
    )
}

impl<T> libp2p::core::Transport for ReuseFallback<T>
where
    T: libp2p::core::Transport<Error = io::Error> + Send + Unpin + 'static,
    T::Dial: Send + 'static,
    T::Output: Send + 'static,
{
    type Output = T::Output;
    type Error = io::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let first = self.inner.dial(addr.clone(), opts)?;
        if opts.port_use != PortUse::Reuse {
            return Ok(first.boxed());
        }
        let fresh = self.fresh.clone();
        Ok(async move {
            match first.await {
                Err(error) if port_refused(&error) => {
                    tracing::debug!(%addr, %error, "dial from the listening port refused; dialing from a fresh port");
                    let retry = {
                        let mut transport = fresh
                            .lock()
                            .map_err(|_| io::Error::other("TCP dialer lock poisoned"))?;
                        transport.dial(
                            addr,
                            DialOpts {
                                port_use: PortUse::New,
                                ..opts
                            },
                        )
                    };
                    match retry {
                        Ok(dial) => dial.await,
                        Err(TransportError::Other(e)) => Err(e),
                        Err(TransportError::MultiaddrNotSupported(_)) => Err(error),
                    }
                }
                other => other,
            }
        }
        .boxed())
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use libp2p::core::{Endpoint, Transport as _};

    use super::*;

    /// Real TCP whose dials from the listening port the kernel refuses
    /// with `refusal`, as it did on a loaded machine; counts dials by
    /// port policy.
    struct Refusing {
        tcp: tcp::tokio::Transport,
        refusal: io::ErrorKind,
        reuse_dials: Arc<AtomicUsize>,
        new_dials: Arc<AtomicUsize>,
    }

    impl Refusing {
        fn new(refusal: io::ErrorKind) -> (Self, Arc<AtomicUsize>, Arc<AtomicUsize>) {
            let (reuse, new) = (Arc::default(), Arc::default());
            let t = Self {
                tcp: tcp::tokio::Transport::new(tcp::Config::default()),
                refusal,
                reuse_dials: Arc::clone(&reuse),
                new_dials: Arc::clone(&new),
            };
            (t, reuse, new)
        }
    }

    impl libp2p::core::Transport for Refusing {
        type Output = tcp::tokio::TcpStream;
        type Error = io::Error;
        type ListenerUpgrade = <tcp::tokio::Transport as libp2p::core::Transport>::ListenerUpgrade;
        type Dial = BoxFuture<'static, io::Result<Self::Output>>;

        fn listen_on(
            &mut self,
            id: ListenerId,
            addr: Multiaddr,
        ) -> Result<(), TransportError<io::Error>> {
            self.tcp.listen_on(id, addr)
        }
        fn remove_listener(&mut self, id: ListenerId) -> bool {
            self.tcp.remove_listener(id)
        }
        fn dial(
            &mut self,
            addr: Multiaddr,
            opts: DialOpts,
        ) -> Result<Self::Dial, TransportError<io::Error>> {
            if opts.port_use == PortUse::Reuse {
                self.reuse_dials.fetch_add(1, Ordering::SeqCst);
                let refusal = self.refusal;
                return Ok(async move { Err(io::Error::from(refusal)) }.boxed());
            }
            self.new_dials.fetch_add(1, Ordering::SeqCst);
            self.tcp.dial(addr, opts)
        }
        fn poll(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
            Pin::new(&mut self.tcp).poll(cx)
        }
    }

    fn opts(port_use: PortUse) -> DialOpts {
        DialOpts {
            role: Endpoint::Dialer,
            port_use,
        }
    }

    async fn server() -> (tokio::net::TcpListener, Multiaddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        (
            listener,
            format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap(),
        )
    }

    #[tokio::test]
    async fn a_dial_refused_its_shared_port_connects_from_a_fresh_one() {
        for refusal in [io::ErrorKind::AddrInUse, io::ErrorKind::AddrNotAvailable] {
            let (listener, addr) = server().await;
            let (inner, inner_reuse, _) = Refusing::new(refusal);
            let (fresh, fresh_reuse, fresh_new) = Refusing::new(refusal);
            let mut transport = ReuseFallback::new(inner, fresh);
            let dial = transport.dial(addr, opts(PortUse::Reuse)).unwrap();
            // The kernel completes the handshake before `accept`.
            let stream = dial.await.expect("the retry connects");
            let (_, from) = listener.accept().await.unwrap();
            assert_eq!(stream.0.local_addr().unwrap(), from, "{refusal:?}");
            assert_eq!(inner_reuse.load(Ordering::SeqCst), 1);
            assert_eq!(fresh_reuse.load(Ordering::SeqCst), 0);
            assert_eq!(fresh_new.load(Ordering::SeqCst), 1, "one retry only");
        }
    }

    #[tokio::test]
    async fn other_failures_and_fresh_port_dials_are_not_retried() {
        let (_listener, addr) = server().await;
        // A refused connection is the peer's answer, not the port's.
        let (inner, _, _) = Refusing::new(io::ErrorKind::ConnectionRefused);
        let (fresh, _, fresh_new) = Refusing::new(io::ErrorKind::ConnectionRefused);
        let mut transport = ReuseFallback::new(inner, fresh);
        let error = transport
            .dial(addr.clone(), opts(PortUse::Reuse))
            .unwrap()
            .await
            .err()
            .unwrap();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(fresh_new.load(Ordering::SeqCst), 0);

        // A dial that asked for a fresh port is passed through once.
        let (inner, _, inner_new) = Refusing::new(io::ErrorKind::AddrInUse);
        let (fresh, _, fresh_new) = Refusing::new(io::ErrorKind::AddrInUse);
        let mut transport = ReuseFallback::new(inner, fresh);
        transport
            .dial(addr, opts(PortUse::New))
            .unwrap()
            .await
            .unwrap();
        assert_eq!(inner_new.load(Ordering::SeqCst), 1);
        assert_eq!(fresh_new.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn the_real_transport_redials_a_peer_it_is_still_connected_to() {
        // The kernel refuses a second connection on the same four-tuple:
        // listen, dial from the listening port, dial again.
        let mut transport = transport();
        transport
            .listen_on(ListenerId::next(), "/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let listening = futures::future::poll_fn(|cx| match Pin::new(&mut transport).poll(cx) {
            Poll::Ready(TransportEvent::NewAddress { listen_addr, .. }) => Poll::Ready(listen_addr),
            Poll::Ready(_) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        })
        .await;
        let (listener, addr) = server().await;
        let (mut ports, mut held) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let dial = transport.dial(addr.clone(), opts(PortUse::Reuse)).unwrap();
            let stream = dial.await.unwrap();
            let (theirs, from) = listener.accept().await.unwrap();
            ports.push(stream.0.local_addr().unwrap().port());
            assert_eq!(stream.0.local_addr().unwrap(), from);
            // Still connected when the second dial is made.
            held.push((stream, theirs));
        }
        assert!(
            listening
                .to_string()
                .ends_with(&format!("/tcp/{}", ports[0])),
            "first dial shares the listening port"
        );
        assert_ne!(ports[0], ports[1]);
    }
}
