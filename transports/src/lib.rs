//! Ways out for a Ferry node when plain TCP and QUIC are blocked or gone.
//!
//! Each transport here yields raw byte streams; the node authenticates
//! and multiplexes them (Noise, yamux) exactly as it does TCP, so a peer
//! is the same peer whatever carried it.
//!
//! - [`websocket`]: WebSocket and WebSocket over TLS. A relay on port 443
//!   with a certificate looks like an HTTPS server to a middlebox.
//! - [`pt`]: Tor pluggable transports (spec v1, managed proxy): the node
//!   runs `obfs4proxy` (or lyrebird, …) as a child process and dials
//!   through its SOCKS5 port, or puts it in front of its own listener
//!   and hands out a bridge line.
//! - [`tcp`]: TCP whose dials from the listening port fall back to a
//!   fresh port when the kernel refuses the shared one.
//! - [`pipe`]: byte pipes the app owns (a Bluetooth L2CAP channel, a
//!   Wi-Fi Direct socket, a serial line), attached to a running node.
//!
//! Sneakernet bundles are not a transport: they are files of envelopes,
//! built by the engine and written by the node.

pub mod pipe;
pub mod pt;
pub mod tcp;
pub mod websocket;

use futures::{AsyncRead, AsyncWrite};

/// A duplex byte stream any of these transports yields.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Duplex for T {}

/// A boxed duplex byte stream: what a dial or an accepted connection
/// yields before the node authenticates it.
pub type Stream = Box<dyn Duplex>;
