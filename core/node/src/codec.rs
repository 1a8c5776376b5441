//! The direct-link protocol: length-prefixed frames over request-response.
//!
//! Every request is one frame (a sync frame for reconciliation and pulls,
//! or a pairing handshake message); the response is an empty
//! acknowledgement. Replies travel as requests of their own, so neither
//! side holds a stream open while the engine works.

use std::io;

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

/// Reads and writes [`LinkFrame`]s with a 4-byte big-endian length prefix.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LinkCodec;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<LinkFrame> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame length"));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
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
        read_frame(io).await
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
