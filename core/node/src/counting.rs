//! Byte counters on every connection, whatever the transport.
//!
//! The wrapper sits on the stream muxer, so it counts the bytes of protocol
//! streams (gossip, sync, identify, …) after decryption and
//! demultiplexing: the same place for TCP, QUIC and app-supplied links. It
//! does not see Noise and yamux framing (a few percent on top).

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use futures::{AsyncRead, AsyncWrite, Future as _};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};

/// Bytes in and out over all connections of one node.
#[derive(Debug, Default)]
pub struct ByteCounters {
    /// Bytes received.
    pub inbound: AtomicU64,
    /// Bytes sent.
    pub outbound: AtomicU64,
}

/// A connection's close may take this long; then the connection is
/// dropped. libp2p waits for a close with no time limit, and yamux must
/// flush its last frames first, so a peer that stops reading could keep a
/// closing connection (and the slot it holds) forever.
const CLOSE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// A stream muxer whose substreams count their bytes, and whose close ends
/// by [`CLOSE_DEADLINE`].
pub(crate) struct CountingMuxer<M> {
    inner: M,
    counters: Arc<ByteCounters>,
    close_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<M> CountingMuxer<M> {
    pub(crate) fn new(inner: M, counters: Arc<ByteCounters>) -> Self {
        Self {
            inner,
            counters,
            close_deadline: None,
        }
    }
}

impl<M> StreamMuxer for CountingMuxer<M>
where
    M: StreamMuxer + Unpin,
{
    type Substream = CountingStream<M::Substream>;
    type Error = M::Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner)
            .poll_inbound(cx)
            .map_ok(|s| CountingStream::new(s, this.counters.clone()))
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner)
            .poll_outbound(cx)
            .map_ok(|s| CountingStream::new(s, this.counters.clone()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        if let Poll::Ready(result) = Pin::new(&mut this.inner).poll_close(cx) {
            return Poll::Ready(result);
        }
        let deadline = this
            .close_deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(CLOSE_DEADLINE)));
        // Past the deadline the connection is dropped as it is.
        deadline.as_mut().poll(cx).map(|()| Ok(()))
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll(cx)
    }
}

/// A substream that adds what passes through it to the node's counters.
pub(crate) struct CountingStream<S> {
    inner: Pin<Box<S>>,
    counters: Arc<ByteCounters>,
}

impl<S> CountingStream<S> {
    fn new(inner: S, counters: Arc<ByteCounters>) -> Self {
        Self {
            inner: Box::pin(inner),
            counters,
        }
    }
}

impl<S: AsyncRead> AsyncRead for CountingStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let poll = self.inner.as_mut().poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            self.counters
                .inbound
                .fetch_add(*n as u64, Ordering::Relaxed);
        }
        poll
    }
}

impl<S: AsyncWrite> AsyncWrite for CountingStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = self.inner.as_mut().poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            self.counters
                .outbound
                .fetch_add(*n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.as_mut().poll_close(cx)
    }
}
