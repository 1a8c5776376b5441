//! The direct-link protocol: length-prefixed frames over request-response.
//!
//! Every request is one frame (a sync frame for reconciliation and pulls,
//! or a pairing handshake message); the response is an empty
//! acknowledgement. Replies travel as requests of their own, so neither
//! side holds a stream open while the engine works.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use futures::{AsyncReadExt, AsyncWriteExt, io::AsyncRead, io::AsyncWrite};
use libp2p::StreamProtocol;

use ferry_core::proto::limits;

/// The protocol name on the wire.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/ferry/link/1");

/// Largest frame: a full sync frame plus the kind byte.
const MAX_FRAME: usize = limits::MAX_SYNC_FRAME_LEN + 1;

/// What a frame carries (its first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// An engine sync frame.
    Sync = 0,
    /// A pairing handshake message.
    Pairing = 1,
}

/// One frame on a direct link.
#[derive(Debug, Clone)]
pub(crate) struct LinkFrame {
    pub(crate) kind: FrameKind,
    pub(crate) bytes: Vec<u8>,
}

/// A frame's buffer grows by at most this much per read, so a peer that
/// claims a 1 MiB frame and sends four bytes ties up about this much.
const READ_CHUNK: usize = 16 * 1024;

/// Each chunk of a frame must arrive within this time (at least 3.2 KB/s):
/// a peer that drips a frame byte by byte cannot hold its share of the
/// budget for the whole request timeout. Holding budget costs sending it.
const CHUNK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The node-wide budget of bytes held by frames being read: every stream
/// of every peer draws from it, so many slow streams cannot add up to
/// more than the cap.
#[derive(Debug, Default)]
pub(crate) struct FrameBudget {
    max: usize,
    used: AtomicUsize,
    refused: AtomicU64,
}

impl FrameBudget {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            used: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Frames refused because the budget was spent.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: usize) -> bool {
        let mut current = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = current.checked_add(bytes).filter(|n| *n <= self.max) else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return false;
            };
            match self.used.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Bytes drawn from a [`FrameBudget`], returned when dropped.
struct Drawn<'a> {
    budget: &'a FrameBudget,
    bytes: usize,
}

impl Drop for Drawn<'_> {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// Reads and writes [`LinkFrame`]s with a 4-byte big-endian length prefix.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinkCodec {
    budget: Arc<FrameBudget>,
}

impl LinkCodec {
    pub(crate) fn new(budget: Arc<FrameBudget>) -> Self {
        Self { budget }
    }
}

async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    budget: &FrameBudget,
) -> io::Result<LinkFrame> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame length"));
    }
    // The buffer grows with the bytes that arrive, each step paid from the
    // node-wide budget: the claimed length costs nothing until it is sent.
    let mut buf = Vec::new();
    let mut drawn = Drawn { budget, bytes: 0 };
    while buf.len() < len {
        let step = READ_CHUNK.min(len - buf.len());
        if !budget.take(step) {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "the node's frame buffer budget is spent",
            ));
        }
        drawn.bytes += step;
        let start = buf.len();
        buf.resize(start + step, 0);
        let chunk = io.read_exact(buf.get_mut(start..).unwrap_or(&mut []));
        tokio::time::timeout(CHUNK_TIMEOUT, chunk)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "frame arrives too slowly"))??;
    }
    let kind = match buf.first() {
        Some(0) => FrameKind::Sync,
        Some(1) => FrameKind::Pairing,
        _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "frame kind")),
    };
    buf.remove(0);
    Ok(LinkFrame { kind, bytes: buf })
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, frame: LinkFrame) -> io::Result<()> {
    let len = frame.bytes.len() + 1;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    let len = u32::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(&[frame.kind as u8]).await?;
    io.write_all(&frame.bytes).await?;
    io.close().await
}

impl libp2p::request_response::Codec for LinkCodec {
    type Protocol = StreamProtocol;
    type Request = LinkFrame;
    type Response = ();

    async fn read_request<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<LinkFrame>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, &self.budget).await
    }

    async fn read_response<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        // The acknowledgement is one byte, so a closed stream (peer gone) is
        // told apart from an accepted frame.
        let mut ack = [0u8; 1];
        io.read_exact(&mut ack).await
    }

    async fn write_request<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        req: LinkFrame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, req).await
    }

    async fn write_response<T>(&mut self, _: &Self::Protocol, io: &mut T, _: ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&[1]).await?;
        io.close().await
    }
}
