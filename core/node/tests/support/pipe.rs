//! An in-process duplex pipe shaped like a radio link: a byte rate, a
//! one-way delay, and some writes held back longer (in order, as an
//! L2CAP channel delivers).

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::Duration,
};

use futures::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

/// The link's shape.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Bytes per second each way.
    pub bytes_per_sec: u64,
    /// One-way delay.
    pub delay: Duration,
    /// One write in `stall_every` is held back `stall` longer.
    pub stall_every: u64,
    pub stall: Duration,
    /// Bytes in flight before a writer waits.
    pub window: usize,
}

impl Shape {
    /// 100 kbit/s, 50 ms one way, 1% of writes 500 ms late.
    pub fn ble() -> Self {
        Self {
            bytes_per_sec: 100_000 / 8,
            delay: Duration::from_millis(50),
            stall_every: 100,
            stall: Duration::from_millis(500),
            window: 16 * 1024,
        }
    }

    /// No shaping (the table-driven exchange).
    pub fn unshaped() -> Self {
        Self {
            bytes_per_sec: u64::MAX,
            delay: Duration::ZERO,
            stall_every: 0,
            stall: Duration::ZERO,
            window: 1 << 20,
        }
    }
}

#[derive(Default)]
struct Lane {
    chunks: VecDeque<(Instant, Vec<u8>)>,
    in_flight: usize,
    /// When the wire is free for the next byte.
    wire_free: Option<Instant>,
    last_arrival: Option<Instant>,
    writes: u64,
    closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// One end of the pipe.
pub struct End {
    shape: Shape,
    tx: Arc<Mutex<Lane>>,
    rx: Arc<Mutex<Lane>>,
    sleep: Option<Pin<Box<Sleep>>>,
    partial: Option<(Vec<u8>, usize)>,
}

/// A connected pair of ends.
pub fn pair(shape: Shape) -> (End, End) {
    let ab = Arc::new(Mutex::new(Lane::default()));
    let ba = Arc::new(Mutex::new(Lane::default()));
    (
        End {
            shape,
            tx: ab.clone(),
            rx: ba.clone(),
            sleep: None,
            partial: None,
        },
        End {
            shape,
            tx: ba,
            rx: ab,
            sleep: None,
            partial: None,
        },
    )
}

impl AsyncWrite for End {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut lane = this.tx.lock().unwrap();
        if lane.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if lane.in_flight >= this.shape.window {
            lane.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(this.shape.window - lane.in_flight).min(4096);
        let now = Instant::now();
        let start = lane.wire_free.map_or(now, |t| t.max(now));
        let on_wire = if this.shape.bytes_per_sec == u64::MAX {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(n as f64 / this.shape.bytes_per_sec as f64)
        };
        lane.wire_free = Some(start + on_wire);
        lane.writes += 1;
        let mut arrival = start + on_wire + this.shape.delay;
        if this.shape.stall_every > 0 && lane.writes.is_multiple_of(this.shape.stall_every) {
            arrival += this.shape.stall;
        }
        // In order: nothing overtakes a held-back write.
        if let Some(last) = lane.last_arrival {
            arrival = arrival.max(last);
        }
        lane.last_arrival = Some(arrival);
        lane.chunks.push_back((arrival, buf[..n].to_vec()));
        lane.in_flight += n;
        if let Some(w) = lane.reader.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut lane = self.tx.lock().unwrap();
        lane.closed = true;
        if let Some(w) = lane.reader.take() {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for End {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if let Some((data, pos)) = this.partial.as_mut() {
                let n = (data.len() - *pos).min(buf.len());
                buf[..n].copy_from_slice(&data[*pos..*pos + n]);
                *pos += n;
                if *pos == data.len() {
                    this.partial = None;
                }
                return Poll::Ready(Ok(n));
            }
            if let Some(sleep) = this.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleep = None;
            }
            let mut lane = this.rx.lock().unwrap();
            match lane.chunks.front() {
                Some((at, _)) if *at > Instant::now() => {
                    let at = *at;
                    drop(lane);
                    this.sleep = Some(Box::pin(tokio::time::sleep_until(at)));
                    continue;
                }
                Some(_) => {
                    let (_, data) = lane.chunks.pop_front().unwrap();
                    lane.in_flight -= data.len();
                    if let Some(w) = lane.writer.take() {
                        w.wake();
                    }
                    this.partial = Some((data, 0));
                }
                None if lane.closed => return Poll::Ready(Ok(0)),
                None => {
                    lane.reader = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for End {
    fn drop(&mut self) {
        for lane in [&self.tx, &self.rx] {
            if let Ok(mut lane) = lane.lock() {
                lane.closed = true;
                if let Some(w) = lane.reader.take() {
                    w.wake();
                }
                if let Some(w) = lane.writer.take() {
                    w.wake();
                }
            }
        }
    }
}

use std::future::Future as _;
