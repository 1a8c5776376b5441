//! Metrics as DTN studies report them (the ONE simulator's
//! MessageStatsReport), plus time series, in JSON, CSV and SVG.

use std::fmt::Write as _;

use ferry_core::crypto::tags::ContentId;
use serde::Serialize;

struct Message {
    label: String,
    created_at: f64,
    content_id: Option<ContentId>,
    delivered: Option<(f64, u32)>,
}

/// Collected during a run.
pub(crate) struct Metrics {
    ttl: f64,
    messages: Vec<Message>,
    pub(crate) relayed: u64,
    pub(crate) aborted: u64,
    pub(crate) dropped: u64,
    pub(crate) lost: u64,
    pub(crate) receipts: u64,
    pub(crate) bytes_sent: u64,
    buffer: Vec<BufferSample>,
    delivered_over_time: Vec<(f64, u64)>,
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

impl Metrics {
    pub(crate) fn new(ttl: f64) -> Self {
        Self {
            ttl,
            messages: Vec::new(),
            relayed: 0,
            aborted: 0,
            dropped: 0,
            lost: 0,
            receipts: 0,
            bytes_sent: 0,
            buffer: Vec::new(),
            delivered_over_time: Vec::new(),
        }
    }

    pub(crate) fn created(&mut self, label: String, at: f64) -> usize {
        self.messages.push(Message {
            label,
            created_at: at,
            content_id: None,
            delivered: None,
        });
        self.messages.len() - 1
    }

    pub(crate) fn set_content_id(&mut self, index: usize, id: ContentId) {
        if let Some(m) = self.messages.get_mut(index) {
            m.content_id = Some(id);
        }
    }

    pub(crate) fn content_id(&self, index: usize) -> Option<ContentId> {
        self.messages.get(index).and_then(|m| m.content_id)
    }

    /// Records the first delivery within the TTL.
    pub(crate) fn delivered(&mut self, index: usize, at: f64, hops: u32) {
        let ttl = self.ttl;
        if let Some(m) = self.messages.get_mut(index)
            && m.delivered.is_none()
            && at - m.created_at <= ttl + 1e-9
        {
            m.delivered = Some((at, hops));
        }
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
        let delivered = self
            .messages
            .iter()
            .filter(|m| m.delivered.is_some())
            .count() as u64;
        self.delivered_over_time.push((time, delivered));
    }

    pub(crate) fn report(
        &self,
        scenario: &str,
        mode: &str,
        seed: u64,
        nodes: usize,
        strategy: &str,
    ) -> Report {
        let mut latencies: Vec<f64> = self
            .messages
            .iter()
            .filter_map(|m| m.delivered.map(|(t, _)| round4(t - m.created_at)))
            .collect();
        latencies.sort_by(f64::total_cmp);
        let mut hops: Vec<f64> = self
            .messages
            .iter()
            .filter_map(|m| m.delivered.map(|(_, h)| f64::from(h)))
            .collect();
        hops.sort_by(f64::total_cmp);
        let created = self.messages.len() as u64;
        let delivered = latencies.len() as u64;
        let avg = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        Report {
            scenario: scenario.to_owned(),
            mode: mode.to_owned(),
            strategy: strategy.to_owned(),
            seed,
            nodes,
            created,
            delivered,
            delivery_ratio: round4(if created == 0 {
                0.0
            } else {
                delivered as f64 / created as f64
            }),
            latency_avg: round4(avg(&latencies)),
            latency_median: round4(median(&latencies)),
            latency_p95: round4(percentile(&latencies, 0.95)),
            overhead_ratio: round4(if delivered == 0 {
                0.0
            } else {
                (self.relayed as f64 - delivered as f64) / delivered as f64
            }),
            hopcount_avg: round4(avg(&hops)),
            hopcount_median: round4(median(&hops)),
            relayed: self.relayed,
            aborted: self.aborted,
            dropped: self.dropped,
            lost: self.lost,
            receipts: self.receipts,
            bytes_sent: self.bytes_sent,
            delivered_messages: self
                .messages
                .iter()
                .filter_map(|m| {
                    m.delivered
                        .map(|(t, h)| (m.label.clone(), round4(t - m.created_at), h))
                })
                .collect(),
            latencies,
            buffer: self.buffer.clone(),
            delivered_over_time: self.delivered_over_time.clone(),
        }
    }
}

/// The result of one run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// `full-crypto` or `fast (no sealing)`.
    pub mode: String,
    /// Routing strategy.
    pub strategy: String,
    /// The seed.
    pub seed: u64,
    /// Number of nodes.
    pub nodes: usize,
    /// Messages created.
    pub created: u64,
    /// Messages delivered within their TTL.
    pub delivered: u64,
    /// delivered ÷ created.
    pub delivery_ratio: f64,
    /// Mean latency of delivered messages (s).
    pub latency_avg: f64,
    /// Median latency (s).
    pub latency_median: f64,
    /// 95th percentile latency (s).
    pub latency_p95: f64,
    /// (relayed − delivered) ÷ delivered, as the ONE simulator defines it.
    pub overhead_ratio: f64,
    /// Mean hop count of delivered messages.
    pub hopcount_avg: f64,
    /// Median hop count.
    pub hopcount_median: f64,
    /// Envelope transfers completed between nodes.
    pub relayed: u64,
    /// Transfers cut because the contact ended first.
    pub aborted: u64,
    /// Envelopes refused custody (buffer quota).
    pub dropped: u64,
    /// Transmissions lost to the link's loss rate.
    pub lost: u64,
    /// End-to-end receipts that reached senders.
    pub receipts: u64,
    /// Bytes put on links (envelopes and sync frames).
    pub bytes_sent: u64,
    /// (label, latency s, hops) of every delivered message.
    pub delivered_messages: Vec<(String, f64, u32)>,
    /// Sorted latencies (for the CDF).
    pub latencies: Vec<f64>,
    /// Buffer occupancy over time.
    pub buffer: Vec<BufferSample>,
    /// (time s, messages delivered so far).
    pub delivered_over_time: Vec<(f64, u64)>,
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The CSV header matching [`Report::csv_row`].
    pub fn csv_header() -> &'static str {
        "scenario,mode,strategy,seed,nodes,created,delivered,delivery_ratio,latency_avg,latency_median,latency_p95,overhead_ratio,hopcount_avg,hopcount_median,relayed,aborted,dropped,lost,receipts,bytes_sent"
    }

    /// The summary as one CSV row.
    pub fn csv_row(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.scenario.replace(',', ";"),
            self.mode,
            self.strategy,
            self.seed,
            self.nodes,
            self.created,
            self.delivered,
            self.delivery_ratio,
            self.latency_avg,
            self.latency_median,
            self.latency_p95,
            self.overhead_ratio,
            self.hopcount_avg,
            self.hopcount_median,
            self.relayed,
            self.aborted,
            self.dropped,
            self.lost,
            self.receipts,
            self.bytes_sent
        )
    }
}

/// One line of a plot.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    /// Legend label.
    pub label: &'a str,
    /// (x, y) points in ascending x.
    pub points: Vec<(f64, f64)>,
}

const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// A self-contained SVG line chart with axes, ticks and a legend.
pub fn svg_chart(title: &str, x_label: &str, y_label: &str, series: &[Series<'_>]) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 440.0, 70.0, 20.0, 40.0, 60.0);
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x_max, mut y_max) = (0.0f64, 0.0f64);
    for (x, y) in all {
        x_max = x_max.max(*x);
        y_max = y_max.max(*y);
    }
    if x_max <= 0.0 {
        x_max = 1.0;
    }
    if y_max <= 0.0 {
        y_max = 1.0;
    }
    let px = |x: f64| left + x / x_max * (w - left - right);
    let py = |y: f64| h - bottom - y / y_max * (h - top - bottom);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        w / 2.0,
        escape(title)
    );
    let _ = write!(
        svg,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
        h - bottom,
        w - right,
        h - bottom,
        h - bottom
    );
    for i in 0..=5 {
        let fx = x_max * f64::from(i) / 5.0;
        let fy = y_max * f64::from(i) / 5.0;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{:.1}" text-anchor="end">{}</text><line x1="{left}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#ddd"/>"##,
            px(fx),
            h - bottom + 18.0,
            tick(fx),
            left - 6.0,
            py(fy) + 4.0,
            tick(fy),
            py(fy),
            w - right,
            py(fy)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
        (left + w - right) / 2.0,
        h - 18.0,
        escape(x_label),
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0,
        escape(y_label)
    );
    // Legend in the lower right, above the x axis.
    let legend_top = h - bottom - 12.0 - 18.0 * series.len() as f64;
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS.get(i % COLOURS.len()).copied().unwrap_or("black");
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/><rect x="{}" y="{}" width="12" height="12" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
            points.join(" "),
            w - right - 190.0,
            legend_top + 18.0 * i as f64,
            w - right - 172.0,
            legend_top + 10.0 + 18.0 * i as f64,
            escape(s.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A self-contained SVG grouped bar chart: one group per category (run),
/// one bar per series, values labelled on the bars.
pub fn svg_bars(title: &str, categories: &[String], series: &[(&str, Vec<f64>)]) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 440.0, 70.0, 20.0, 40.0, 70.0);
    let y_max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let py = |y: f64| h - bottom - y / y_max * (h - top - bottom);
    let groups = categories.len().max(1) as f64;
    let group_w = (w - left - right) / groups;
    let bar_w = group_w * 0.7 / series.len().max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="15">{}</text><line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        w / 2.0,
        escape(title),
        h - bottom,
        w - right,
        h - bottom
    );
    for (g, category) in categories.iter().enumerate() {
        let x0 = left + group_w * g as f64 + group_w * 0.15;
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            left + group_w * (g as f64 + 0.5),
            h - bottom + 18.0,
            escape(category)
        );
        for (i, (_, values)) in series.iter().enumerate() {
            let v = values.get(g).copied().unwrap_or(0.0);
            let colour = COLOURS.get(i % COLOURS.len()).copied().unwrap_or("black");
            let x = x0 + bar_w * i as f64;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"#,
                py(v),
                bar_w * 0.9,
                (h - bottom) - py(v),
                x + bar_w * 0.45,
                py(v) - 4.0,
                tick(v)
            );
        }
    }
    for (i, (label, _)) in series.iter().enumerate() {
        let colour = COLOURS.get(i % COLOURS.len()).copied().unwrap_or("black");
        let x = left + 200.0 * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
            h - 30.0,
            x + 18.0,
            h - 20.0,
            escape(label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn tick(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Renders an SVG chart (from [`svg_chart`]) to PNG, with the system's fonts
/// for the labels.
///
/// # Errors
/// A message if the SVG cannot be parsed or the PNG cannot be encoded.
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>, String> {
    use resvg::{tiny_skia, usvg};
    let mut options = usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_system_fonts();
    // `sans-serif` maps to Arial by default, which Linux rarely has: use
    // DejaVu Sans when present, else whatever family is installed.
    let family = fonts
        .faces()
        .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
        .find(|name| name == "DejaVu Sans")
        .or_else(|| {
            fonts
                .faces()
                .find_map(|f| f.families.first().map(|(n, _)| n.clone()))
        });
    if let Some(family) = family {
        fonts.set_sans_serif_family(family);
    }
    let tree = usvg::Tree::from_str(svg, &options).map_err(|e| e.to_string())?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).ok_or("empty image")?;
    resvg::render(
        &tree,
        tiny_skia::Transform::identity(),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().map_err(|e| e.to_string())
}
