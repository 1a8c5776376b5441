//! Counters in Prometheus text format on a local HTTP port: a minimal
//! HTTP/1.1 responder (one request per connection, bounded in size, time
//! and concurrency), so the relay needs no web framework.

use std::{fmt::Write as _, sync::Arc, time::Duration};

use ferry_node::{Node, NodeStats};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
    sync::Semaphore,
};

/// Scrapers served at once; the rest wait in the listen backlog.
const CONCURRENT: usize = 8;

/// Renders the node's counters.
pub(crate) fn render(stats: &NodeStats) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP ferry_{name} {help}");
        let _ = writeln!(out, "# TYPE ferry_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "ferry_{name}{labels} {value}");
        }
    };
    let e = &stats.engine;
    let held_for_others = stats.held_envelopes.saturating_sub(stats.held_own) as u64;
    metric(
        "stored_envelopes",
        "gauge",
        "Envelopes held for others.",
        &[("", held_for_others)],
    );
    metric(
        "stored_bytes",
        "gauge",
        "Bytes of envelopes held.",
        &[("", stats.held_bytes)],
    );
    metric(
        "peers",
        "gauge",
        "Peers with a live connection.",
        &[("", stats.connected_peers as u64)],
    );
    metric(
        "envelopes_accepted_total",
        "counter",
        "Envelopes taken into custody.",
        &[("", e.stored)],
    );
    metric(
        "envelopes_expired_total",
        "counter",
        "Envelopes dropped at expiry.",
        &[("", e.expired)],
    );
    metric(
        "envelopes_purged_total",
        "counter",
        "Envelopes dropped because their delivery was proven.",
        &[("", e.purged_by_receipt)],
    );
    metric(
        "rejections_total",
        "counter",
        "Envelopes, frames and requests refused, by reason.",
        &[
            ("{reason=\"quota\"}", e.rejected_quota),
            ("{reason=\"invalid\"}", e.invalid),
            ("{reason=\"duplicate\"}", e.duplicates),
            ("{reason=\"too_long_lived\"}", e.too_long_lived),
            ("{reason=\"sync_refused\"}", e.sync_refused),
            ("{reason=\"throttled\"}", e.requests_throttled),
            ("{reason=\"gossip_invalid\"}", stats.gossip_rejected),
        ],
    );
    let g = &stats.connections_refused;
    metric(
        "connections_refused_total",
        "counter",
        "Connections the gate refused, by reason.",
        &[
            ("{reason=\"pending_full\"}", g.pending_full),
            ("{reason=\"pending_per_source\"}", g.pending_per_source),
            ("{reason=\"rate\"}", g.rate),
            ("{reason=\"per_source\"}", g.per_source),
            ("{reason=\"inbound_full\"}", g.inbound_full),
            ("{reason=\"memory\"}", g.memory),
        ],
    );
    metric(
        "sync_rounds_total",
        "counter",
        "Reconciliation rounds started or answered.",
        &[("", e.sync_rounds)],
    );
    metric(
        "sync_frames_total",
        "counter",
        "Reconciliation and push frames, by direction.",
        &[
            ("{direction=\"in\"}", stats.frames_received),
            ("{direction=\"out\"}", stats.frames_sent),
        ],
    );
    metric(
        "sync_envelopes_total",
        "counter",
        "Envelopes moved by reconciliation, by direction.",
        &[
            ("{direction=\"in\"}", e.sync_envelopes_received),
            ("{direction=\"out\"}", e.sync_envelopes_sent),
        ],
    );
    metric(
        "bytes_total",
        "counter",
        "Bytes on all protocol streams, by direction.",
        &[
            ("{direction=\"in\"}", stats.bytes_in),
            ("{direction=\"out\"}", stats.bytes_out),
        ],
    );
    out
}

/// Serves `/metrics` on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, node: Arc<Node>) {
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut request = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            // One request line and headers, 8 KiB and 5 s at most.
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while request.len() < 8192 && !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => request.extend_from_slice(buf.get(..n).unwrap_or_default()),
                    }
                }
                true
            })
            .await;
            if !matches!(read, Ok(true)) {
                return;
            }
            let response = if request.starts_with(b"GET /metrics ") {
                match node.stats().await {
                    Ok(stats) => {
                        let body = render(&stats);
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    }
                    Err(_) => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
                }
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}
