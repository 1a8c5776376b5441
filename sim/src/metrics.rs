//! Metrics as DTN studies report them (the ONE simulator's
//! MessageStatsReport, with its definitions), plus byte counts split by
//! what the bytes carried, per-message records and time series, in JSON,
//! CSV and SVG. Every definition is in `docs/simulator.md`.

use std::{collections::BTreeMap, fmt::Write as _};

use ferry_core::crypto::tags::ContentId;
use serde::Serialize;

/// What an envelope or frame on a link carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A copy of a message.
    Data,
    /// A receipt (or any envelope that is not a message of the run).
    Receipt,
    /// Reconciliation, want lists, delivery proofs and frame headers.
    Control,
}

/// Why a message was not sent at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Refusal {
    /// The body does not fit one envelope.
    TooLarge,
    /// A source or destination outside the run's nodes.
    UnknownNode,
    /// The engine failed otherwise.
    EngineError,
}

impl Refusal {
    fn name(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::UnknownNode => "unknown_node",
            Self::EngineError => "engine_error",
        }
    }
}

struct Message {
    label: String,
    from: u32,
    to: u32,
    size: u32,
    created_at: f64,
    content_id: Option<ContentId>,
    refused: Option<Refusal>,
    delivered: Option<(f64, u32)>,
    receipt_at: Option<f64>,
}

/// Collected during a run.
pub(crate) struct Metrics {
    ttl: f64,
    duration: f64,
    messages: Vec<Message>,
    relayed: u64,
    receipt_copies: u64,
    refused_copies: u64,
    aborted: u64,
    dropped: BTreeMap<&'static str, u64>,
    pub(crate) lost: u64,
    pub(crate) contacts: u64,
    pub(crate) contacts_cut: u64,
    pub(crate) duplicate_ups_ignored: u64,
    bytes_data: u64,
    bytes_receipts: u64,
    bytes_control: u64,
    bytes_refused: u64,
    bytes_aborted: u64,
    buffer: Vec<BufferSample>,
    delivered_over_time: Vec<(f64, u64)>,
    delivered_so_far: u64,
    /// Whether per-node buffer samples are kept (see `World::new`).
    pub(crate) record_node_buffers: bool,
    node_buffers: Vec<Vec<u64>>,
    /// Contact durations and inter-contact times, in whole seconds (ONE's
    /// 1 s granularity): seconds → count.
    contact_times: BTreeMap<u64, u64>,
    inter_contact_times: BTreeMap<u64, u64>,
}

/// Buffer occupancy at one time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BufferSample {
    /// Seconds.
    pub time: f64,
    /// Mean bytes held per node.
    pub mean_bytes: f64,
    /// Most bytes held by one node.
    pub max_bytes: u64,
}

/// What became of one message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MessageRecord {
    /// Label (the trace's message ID, or `G<n>` for generated traffic).
    pub label: String,
    /// Source node.
    pub from: u32,
    /// Destination node.
    pub to: u32,
    /// Creation time (s).
    pub created: f64,
    /// Body size (bytes).
    pub size: u32,
    /// `delivered` (within its TTL), `expired` (its TTL ran out within the
    /// run), `refused` (never sent; see `refused_reason`) or `in_flight`
    /// (its TTL had not run out when the run ended).
    pub status: &'static str,
    /// Why it was refused.
    pub refused_reason: Option<&'static str>,
    /// Seconds from creation to delivery.
    pub latency: Option<f64>,
    /// Hops of the delivered copy.
    pub hops: Option<u32>,
    /// Seconds from creation until the sender had the receipt.
    pub receipt_latency: Option<f64>,
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted.get(n / 2).copied().unwrap_or(0.0),
        n => {
            (sorted.get(n / 2 - 1).copied().unwrap_or(0.0)
                + sorted.get(n / 2).copied().unwrap_or(0.0))
                / 2.0
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied().unwrap_or(0.0)
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// `f` of a non-empty list, rounded; `None` for an empty one.
fn some(v: &[f64], f: impl Fn(&[f64]) -> f64) -> Option<f64> {
    (!v.is_empty()).then(|| round4(f(v)))
}

/// Tolerance for comparing times (the clock counts microseconds).
const EPSILON: f64 = 1e-9;

impl Metrics {
    pub(crate) fn new(ttl: f64, duration: f64) -> Self {
        Self {
            ttl,
            duration,
            messages: Vec::new(),
            relayed: 0,
            receipt_copies: 0,
            refused_copies: 0,
            aborted: 0,
            dropped: BTreeMap::new(),
            lost: 0,
            contacts: 0,
            contacts_cut: 0,
            duplicate_ups_ignored: 0,
            bytes_data: 0,
            bytes_receipts: 0,
            bytes_control: 0,
            bytes_refused: 0,
            bytes_aborted: 0,
            buffer: Vec::new(),
            delivered_over_time: Vec::new(),
            delivered_so_far: 0,
            record_node_buffers: false,
            node_buffers: Vec::new(),
            contact_times: BTreeMap::new(),
            inter_contact_times: BTreeMap::new(),
        }
    }

    pub(crate) fn created(
        &mut self,
        label: String,
        from: u32,
        to: u32,
        size: u32,
        at: f64,
    ) -> usize {
        self.messages.push(Message {
            label,
            from,
            to,
            size,
            created_at: at,
            content_id: None,
            refused: None,
            delivered: None,
            receipt_at: None,
        });
        self.messages.len() - 1
    }

    pub(crate) fn refused(&mut self, index: usize, reason: Refusal) {
        if let Some(m) = self.messages.get_mut(index) {
            m.refused = Some(reason);
        }
    }

    pub(crate) fn set_content_id(&mut self, index: usize, id: ContentId) {
        if let Some(m) = self.messages.get_mut(index) {
            m.content_id = Some(id);
        }
    }

    /// The destination of message `index`.
    pub(crate) fn destination(&self, index: usize) -> Option<u32> {
        self.messages.get(index).map(|m| m.to)
    }

    pub(crate) fn content_id(&self, index: usize) -> Option<ContentId> {
        self.messages.get(index).and_then(|m| m.content_id)
    }

    /// Whether message `index` is within its TTL at `at` (ONE's rule: a
    /// message lives while its age is at most the TTL).
    pub(crate) fn alive(&self, index: usize, at: f64) -> bool {
        self.messages
            .get(index)
            .is_some_and(|m| at - m.created_at <= self.ttl + EPSILON)
    }

    /// Records the first delivery within the TTL.
    pub(crate) fn delivered(&mut self, index: usize, at: f64, hops: u32) {
        if !self.alive(index, at) {
            return;
        }
        if let Some(m) = self.messages.get_mut(index)
            && m.delivered.is_none()
        {
            m.delivered = Some((at, hops));
            self.delivered_so_far += 1;
        }
    }

    /// The sender of message `index` learned its delivery.
    pub(crate) fn receipt(&mut self, index: usize, at: f64) {
        if let Some(m) = self.messages.get_mut(index)
            && m.receipt_at.is_none()
            && m.delivered.is_some()
        {
            m.receipt_at = Some(at);
        }
    }

    pub(crate) fn dropped(&mut self, reason: &'static str) {
        *self.dropped.entry(reason).or_default() += 1;
    }

    pub(crate) fn bytes(&mut self, kind: Kind, len: u64) {
        match kind {
            Kind::Data => self.bytes_data += len,
            Kind::Receipt => self.bytes_receipts += len,
            Kind::Control => self.bytes_control += len,
        }
    }

    pub(crate) fn aborted(&mut self, len: u64) {
        self.aborted += 1;
        self.bytes_aborted += len;
    }

    /// A node took a copy that crossed a link.
    pub(crate) fn took(&mut self, kind: Kind) {
        match kind {
            Kind::Data => self.relayed += 1,
            _ => self.receipt_copies += 1,
        }
    }

    /// A copy crossed a link and the node did not take it (it had it, it is
    /// a wait-phase copy shown to a relay, or its TTL ran out).
    pub(crate) fn refused_copy(&mut self, kind: Kind, len: u64) {
        if kind == Kind::Data {
            self.refused_copies += 1;
        }
        self.bytes_refused += len;
    }

    pub(crate) fn sample(&mut self, time: f64, held: &[u64]) {
        let mean = if held.is_empty() {
            0.0
        } else {
            held.iter().sum::<u64>() as f64 / held.len() as f64
        };
        self.buffer.push(BufferSample {
            time,
            mean_bytes: round4(mean),
            max_bytes: held.iter().copied().max().unwrap_or(0),
        });
        self.delivered_over_time.push((time, self.delivered_so_far));
        if self.record_node_buffers {
            self.node_buffers.push(held.to_vec());
        }
    }

    /// Forgets a sample taken at `time` (the end's sample is taken last).
    pub(crate) fn drop_sample_at(&mut self, time: f64) {
        if self.buffer.last().is_some_and(|b| b.time == time) {
            self.buffer.pop();
            self.delivered_over_time.pop();
            if self.record_node_buffers {
                self.node_buffers.pop();
            }
        }
    }

    /// A contact of `secs` ended.
    pub(crate) fn contact_time(&mut self, secs: f64) {
        *self.contact_times.entry(secs.max(0.0) as u64).or_default() += 1;
    }

    /// A pair met again after `secs`.
    pub(crate) fn inter_contact(&mut self, secs: f64) {
        *self
            .inter_contact_times
            .entry(secs.max(0.0) as u64)
            .or_default() += 1;
    }

    fn record(&self, m: &Message) -> MessageRecord {
        let status = if m.refused.is_some() {
            "refused"
        } else if m.delivered.is_some() {
            "delivered"
        } else if m.created_at + self.ttl <= self.duration + EPSILON {
            "expired"
        } else {
            "in_flight"
        };
        MessageRecord {
            label: m.label.clone(),
            from: m.from,
            to: m.to,
            created: round4(m.created_at),
            size: m.size,
            status,
            refused_reason: m.refused.map(Refusal::name),
            latency: m.delivered.map(|(t, _)| round4(t - m.created_at)),
            hops: m.delivered.map(|(_, h)| h),
            receipt_latency: m.receipt_at.map(|t| round4(t - m.created_at)),
        }
    }

    pub(crate) fn report(
        &self,
        scenario: &str,
        mode: &str,
        seed: u64,
        nodes: usize,
        strategy: &str,
    ) -> Report {
        let messages: Vec<MessageRecord> = self.messages.iter().map(|m| self.record(m)).collect();
        let mut latencies: Vec<f64> = messages.iter().filter_map(|m| m.latency).collect();
        latencies.sort_by(f64::total_cmp);
        let mut hops: Vec<f64> = messages
            .iter()
            .filter_map(|m| m.hops.map(f64::from))
            .collect();
        hops.sort_by(f64::total_cmp);
        let mut receipt_latencies: Vec<f64> =
            messages.iter().filter_map(|m| m.receipt_latency).collect();
        receipt_latencies.sort_by(f64::total_cmp);
        let count = |status: &str| messages.iter().filter(|m| m.status == status).count() as u64;
        let mut refused_reasons = BTreeMap::new();
        for reason in messages.iter().filter_map(|m| m.refused_reason) {
            *refused_reasons.entry(reason.to_owned()).or_default() += 1;
        }
        let created = messages.len() as u64;
        let delivered = latencies.len() as u64;
        Report {
            scenario: scenario.to_owned(),
            mode: mode.to_owned(),
            strategy: strategy.to_owned(),
            seed,
            nodes,
            version: crate::VERSION.to_owned(),
            commit: crate::COMMIT.to_owned(),
            parameters: serde_json::Value::Null,
            swept: BTreeMap::new(),
            created,
            delivered,
            delivery_ratio: round4(if created == 0 {
                0.0
            } else {
                delivered as f64 / created as f64
            }),
            expired: count("expired"),
            in_flight: count("in_flight"),
            refused: count("refused"),
            refused_reasons,
            // Undefined without deliveries: `null`, not 0 (a latency of 0 is
            // real with unlimited bandwidth), as ONE prints NaN.
            latency_avg: some(&latencies, mean),
            latency_median: some(&latencies, median),
            latency_p95: some(&latencies, |v| percentile(v, 0.95)),
            overhead_ratio: (delivered > 0)
                .then(|| round4((self.relayed as f64 - delivered as f64) / delivered as f64)),
            hopcount_avg: some(&hops, mean),
            hopcount_median: some(&hops, median),
            relayed: self.relayed,
            refused_copies: self.refused_copies,
            aborted: self.aborted,
            dropped: self.dropped.values().sum(),
            dropped_reasons: self
                .dropped
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            lost: self.lost,
            receipts: receipt_latencies.len() as u64,
            receipt_copies: self.receipt_copies,
            receipt_latency_median: some(&receipt_latencies, median),
            bytes_data: self.bytes_data,
            bytes_receipts: self.bytes_receipts,
            bytes_control: self.bytes_control,
            bytes_sent: self.bytes_data + self.bytes_receipts + self.bytes_control,
            bytes_refused: self.bytes_refused,
            bytes_aborted: self.bytes_aborted,
            contacts: self.contacts,
            contacts_cut: self.contacts_cut,
            duplicate_ups_ignored: self.duplicate_ups_ignored,
            messages,
            latencies,
            buffer: self.buffer.clone(),
            delivered_over_time: self.delivered_over_time.clone(),
            node_buffers: self.node_buffers.clone(),
            node_buffers_recorded: self.record_node_buffers,
            contact_times: self.contact_times.iter().map(|(k, v)| (*k, *v)).collect(),
            inter_contact_times: self
                .inter_contact_times
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect(),
        }
    }
}

/// The result of one run. Definitions follow the ONE simulator's
/// MessageStatsReport where it has them; `docs/simulator.md` gives each.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// `full-crypto` or the fast-mode label.
    pub mode: String,
    /// Routing strategy.
    pub strategy: String,
    /// The seed.
    pub seed: u64,
    /// Number of nodes.
    pub nodes: usize,
    /// The simulator's version.
    pub version: String,
    /// The commit it was built from (`unknown` outside a git checkout).
    pub commit: String,
    /// Every parameter of the run's scenario, as resolved (sweeps applied).
    pub parameters: serde_json::Value,
    /// The swept keys and their values in this run.
    pub swept: BTreeMap<String, serde_json::Value>,
    /// Messages created (every creation event of the run, refused ones
    /// included).
    pub created: u64,
    /// Messages delivered within their TTL.
    pub delivered: u64,
    /// delivered ÷ created.
    pub delivery_ratio: f64,
    /// Messages whose TTL ran out, within the run, before delivery.
    pub expired: u64,
    /// Messages neither delivered nor expired when the run ended.
    pub in_flight: u64,
    /// Messages never sent (see `refused_reasons`).
    pub refused: u64,
    /// Refused messages by reason.
    pub refused_reasons: BTreeMap<String, u64>,
    /// Mean latency of delivered messages (s).
    pub latency_avg: Option<f64>,
    /// Median latency (s).
    pub latency_median: Option<f64>,
    /// 95th percentile latency (s).
    pub latency_p95: Option<f64>,
    /// (relayed − delivered) ÷ delivered, as the ONE simulator defines it.
    pub overhead_ratio: Option<f64>,
    /// Mean hop count of delivered messages.
    pub hopcount_avg: Option<f64>,
    /// Median hop count.
    pub hopcount_median: Option<f64>,
    /// Message copies taken by a node after crossing a link, deliveries
    /// included (ONE's "relayed"). Receipts are not counted here.
    pub relayed: u64,
    /// Message copies that crossed a link and were not taken (duplicates,
    /// wait-phase copies shown to relays, copies past their TTL).
    pub refused_copies: u64,
    /// Transmissions cut because the contact ended first.
    pub aborted: u64,
    /// Copies refused custody, in all.
    pub dropped: u64,
    /// Copies refused custody, by reason.
    pub dropped_reasons: BTreeMap<String, u64>,
    /// Transmissions lost to the link's loss rate.
    pub lost: u64,
    /// Delivered messages whose sender got the receipt within the run.
    pub receipts: u64,
    /// Receipt envelopes taken by nodes after crossing a link.
    pub receipt_copies: u64,
    /// Median time from creation until the sender had the receipt (s).
    pub receipt_latency_median: Option<f64>,
    /// Bytes of message copies put on links.
    pub bytes_data: u64,
    /// Bytes of receipt envelopes put on links.
    pub bytes_receipts: u64,
    /// Bytes of reconciliation, want lists, proofs and frame headers.
    pub bytes_control: u64,
    /// All bytes put on links (the three above).
    pub bytes_sent: u64,
    /// Envelope bytes that arrived and were not taken (part of the above).
    pub bytes_refused: u64,
    /// Bytes of transmissions cut by the end of a contact (part of the
    /// above).
    pub bytes_aborted: u64,
    /// Contacts that came up.
    pub contacts: u64,
    /// Contact starts cut by a partition or churn.
    pub contacts_cut: u64,
    /// Trace lines skipped as a second `up` of a contact already up
    /// (`duplicate_up = "ignore"`).
    pub duplicate_ups_ignored: u64,
    /// Every message and what became of it.
    pub messages: Vec<MessageRecord>,
    /// Sorted latencies (for the CDF).
    pub latencies: Vec<f64>,
    /// Buffer occupancy over time.
    pub buffer: Vec<BufferSample>,
    /// (time s, messages delivered so far).
    pub delivered_over_time: Vec<(f64, u64)>,
    /// Bytes held by each node at each time of `buffer` (written to
    /// `buffers-N.csv`, not to the JSON).
    #[serde(skip)]
    pub node_buffers: Vec<Vec<u64>>,
    /// Whether `node_buffers` was recorded (not when nodes × samples
    /// exceeds 20 million).
    pub node_buffers_recorded: bool,
    /// Durations of contacts that ended, in whole seconds: (seconds,
    /// count), as ONE's ContactTimesReport.
    pub contact_times: Vec<(u64, u64)>,
    /// Times between two contacts of the same pair, in whole seconds, as
    /// ONE's InterContactTimesReport.
    pub inter_contact_times: Vec<(u64, u64)>,
}

impl Report {
    /// `buffers-N.csv`: time, node, bytes held, one row per node and
    /// sample (empty when not recorded).
    pub fn node_buffer_rows(&self) -> String {
        let mut out = String::from("time,node,bytes\n");
        for (sample, held) in self.buffer.iter().zip(&self.node_buffers) {
            for (node, bytes) in held.iter().enumerate() {
                let _ = writeln!(out, "{},{node},{bytes}", sample.time);
            }
        }
        out
    }

    /// A histogram in ONE's report format: one `<seconds> <count>` line per
    /// second from 0 to the largest value seen.
    pub fn one_histogram(histogram: &[(u64, u64)]) -> String {
        let mut out = String::new();
        let max = histogram.last().map_or(0, |(k, _)| *k);
        let mut it = histogram.iter().peekable();
        for second in 0..=max {
            let count = match it.peek() {
                Some((k, c)) if *k == second => {
                    let c = *c;
                    it.next();
                    c
                }
                _ => 0,
            };
            let _ = writeln!(out, "{second}.0 {count}");
        }
        out
    }
}

/// Columns of `results.csv`, one row per run.
const CSV_COLUMNS: &[&str] = &[
    "scenario",
    "mode",
    "strategy",
    "seed",
    "nodes",
    "version",
    "commit",
    "created",
    "delivered",
    "delivery_ratio",
    "expired",
    "in_flight",
    "refused",
    "latency_avg",
    "latency_median",
    "latency_p95",
    "overhead_ratio",
    "hopcount_avg",
    "hopcount_median",
    "relayed",
    "refused_copies",
    "aborted",
    "dropped",
    "lost",
    "receipts",
    "receipt_copies",
    "receipt_latency_median",
    "bytes_data",
    "bytes_receipts",
    "bytes_control",
    "bytes_sent",
    "bytes_refused",
    "bytes_aborted",
    "contacts",
    "contacts_cut",
    "duplicate_ups_ignored",
];

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The CSV header matching [`Report::csv_row`]: the summary's columns,
    /// then one per swept key.
    pub fn csv_header(swept: &[String]) -> String {
        let mut columns: Vec<String> = CSV_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
        columns.extend(swept.iter().map(|k| csv_field(k)));
        columns.join(",")
    }

    /// The summary as one CSV row, with the values of the `swept` keys.
    pub fn csv_row(&self, swept: &[String]) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        CSV_COLUMNS
            .iter()
            .map(|c| json_field(value.get(c)))
            .chain(swept.iter().map(|k| json_field(self.swept.get(k))))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The per-message CSV header matching [`Report::message_rows`].
    pub fn message_header(swept: &[String]) -> String {
        let mut header = String::from(
            "scenario,version,commit,strategy,seed,label,from,to,created,size,status,refused_reason,latency,hops,receipt_latency",
        );
        for k in swept {
            header.push(',');
            header.push_str(&csv_field(k));
        }
        header
    }

    /// One CSV row per message, with the values of the `swept` keys.
    pub fn message_rows(&self, swept: &[String]) -> String {
        let opt = |v: Option<String>| v.unwrap_or_default();
        let extra: String = swept
            .iter()
            .map(|k| format!(",{}", json_field(self.swept.get(k))))
            .collect();
        let mut out = String::new();
        for m in &self.messages {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}{extra}",
                csv_field(&self.scenario),
                self.version,
                self.commit,
                csv_field(&self.strategy),
                self.seed,
                csv_field(&m.label),
                m.from,
                m.to,
                m.created,
                m.size,
                m.status,
                m.refused_reason.unwrap_or(""),
                opt(m.latency.map(|l| l.to_string())),
                opt(m.hops.map(|h| h.to_string())),
                opt(m.receipt_latency.map(|l| l.to_string())),
            );
        }
        out
    }
}

fn json_field(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => csv_field(s),
        // Undefined (no deliveries): an empty field.
        Some(serde_json::Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// A CSV field, quoted when it needs to be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}
