//! Self-contained SVG charts (and PNG renderings) for papers: line charts
//! with optional error bars, fixed or log axes and event markers; grouped
//! bars. Legends sit right of the plot area, never over the data; ten
//! distinct colours, then dash patterns, tell up to forty series apart.

use std::fmt::Write as _;

/// One line of a chart.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// (x, y) points in ascending x.
    pub points: Vec<(f64, f64)>,
    /// Error bar half-widths, one per point (empty: none).
    pub errors: Vec<f64>,
}

/// A line chart.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Title (the run mode is part of it).
    pub title: String,
    /// X axis label, with its unit.
    pub x_label: String,
    /// Y axis label, with its unit.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// A fixed y range (ratios: 0–1); `None`: from 0 to the data's maximum.
    pub y_range: Option<(f64, f64)>,
    /// A logarithmic x axis (latency CDFs).
    pub x_log: bool,
    /// Vertical markers (x, label), e.g. a partition and its heal.
    pub markers: Vec<(f64, String)>,
    /// Draw points as markers (sweeps) rather than bare lines.
    pub dots: bool,
}

/// Tableau's ten colours: distinct, and legible when printed.
const COLOURS: [&str; 10] = [
    "#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
    "#9c755f", "#bab0ac",
];
const DASHES: [&str; 4] = ["", "6 3", "2 2", "8 3 2 3"];

fn style(i: usize) -> (&'static str, &'static str) {
    let colour = COLOURS.get(i % COLOURS.len()).copied().unwrap_or("black");
    let dash = DASHES
        .get((i / COLOURS.len()) % DASHES.len())
        .copied()
        .unwrap_or("");
    (colour, dash)
}

fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if a >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A "nice" tick step (1, 2 or 5 × 10^k) for about five ticks over `span`.
fn nice_step(span: f64) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let unit = raw / magnitude;
    let nice = if unit < 1.5 {
        1.0
    } else if unit < 3.0 {
        2.0
    } else if unit < 7.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// Legend text, cut to what fits beside the chart.
fn fit(label: &str) -> String {
    // What fits in the legend's width at 11 px.
    const MAX: usize = 33;
    if label.chars().count() <= MAX {
        label.to_owned()
    } else {
        let cut: String = label.chars().take(MAX - 1).collect();
        format!("{cut}…")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const W: f64 = 860.0;
const H: f64 = 460.0;
const LEFT: f64 = 75.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
/// Room under bar charts for slanted category names.
const BAR_BOTTOM: f64 = 150.0;
/// Room for the legend, right of the plot area.
const LEGEND: f64 = 230.0;

fn header(svg: &mut String, title: &str) {
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        (W - LEGEND) / 2.0,
        escape(title)
    );
    // Every figure says what made it.
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="end" font-size="10" fill="#888">ferry-sim {} ({})</text>"##,
        W - 8.0,
        H - 6.0,
        crate::VERSION,
        escape(crate::COMMIT)
    );
}

fn legend(svg: &mut String, labels: &[&str]) {
    let x = W - LEGEND + 10.0;
    for (i, label) in labels.iter().enumerate() {
        let (colour, dash) = style(i);
        let y = TOP + 16.0 * i as f64;
        if y > H - 20.0 {
            let _ = write!(
                svg,
                r#"<text x="{x}" y="{y}">… {} more</text>"#,
                labels.len() - i
            );
            break;
        }
        let _ = write!(
            svg,
            r#"<line x1="{x}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="{colour}" stroke-width="3" stroke-dasharray="{dash}"/><text x="{}" y="{:.1}" font-size="11">{}</text>"#,
            y - 4.0,
            x + 22.0,
            y - 4.0,
            x + 28.0,
            y,
            escape(&fit(label))
        );
    }
}

/// The chart as SVG.
pub fn svg(chart: &Chart) -> String {
    let right = W - LEGEND;
    let points = chart.series.iter().flat_map(|s| {
        s.points
            .iter()
            .zip(s.errors.iter().copied().chain(std::iter::repeat(0.0)))
    });
    let (mut x_min, mut x_max, mut y_max) = (f64::INFINITY, 0.0f64, 0.0f64);
    for ((x, y), e) in points {
        if !chart.x_log || *x > 0.0 {
            x_min = x_min.min(*x);
        }
        x_max = x_max.max(*x);
        y_max = y_max.max(*y + e);
    }
    for (x, _) in &chart.markers {
        x_max = x_max.max(*x);
    }
    let (y_lo, y_hi) = chart.y_range.unwrap_or_else(|| {
        let top = if y_max > 0.0 { y_max } else { 1.0 };
        let step = nice_step(top);
        (0.0, (top / step).ceil() * step)
    });
    let (x_lo, x_hi) = if chart.x_log {
        let lo = if x_min.is_finite() && x_min > 0.0 {
            x_min
        } else {
            1.0
        };
        let lo = 10f64.powf(lo.log10().floor());
        let hi = 10f64.powf(x_max.max(lo * 10.0).log10().ceil());
        (lo, hi)
    } else if x_min.is_finite() && x_min < x_max && chart.dots {
        let pad = (x_max - x_min) * 0.05;
        (
            (x_min - pad).max(if x_min >= 0.0 { 0.0 } else { f64::MIN }),
            x_max + pad,
        )
    } else {
        // Time axes end where the run ends.
        (0.0, if x_max > 0.0 { x_max } else { 1.0 })
    };
    let fx = |x: f64| {
        if chart.x_log {
            (x.max(x_lo).log10() - x_lo.log10()) / (x_hi.log10() - x_lo.log10())
        } else {
            (x - x_lo) / (x_hi - x_lo)
        }
    };
    let px = |x: f64| LEFT + fx(x).clamp(0.0, 1.0) * (right - LEFT);
    let py =
        |y: f64| H - BOTTOM - ((y - y_lo) / (y_hi - y_lo)).clamp(0.0, 1.0) * (H - TOP - BOTTOM);
    let mut svg = String::new();
    header(&mut svg, &chart.title);
    let _ = write!(
        svg,
        r#"<line x1="{LEFT}" y1="{}" x2="{right}" y2="{}" stroke="black"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="black"/>"#,
        H - BOTTOM,
        H - BOTTOM,
        H - BOTTOM
    );
    // Y ticks and grid, at nice steps.
    let y_step = nice_step(y_hi - y_lo);
    let y_ticks = ((y_hi - y_lo) / y_step).round() as i64;
    for i in 0..=y_ticks.clamp(1, 20) {
        let y = y_lo + y_step * i as f64;
        let _ = write!(
            svg,
            r##"<text x="{}" y="{:.1}" text-anchor="end">{}</text><line x1="{LEFT}" y1="{:.1}" x2="{right}" y2="{:.1}" stroke="#ddd"/>"##,
            LEFT - 6.0,
            py(y) + 4.0,
            tick(y),
            py(y),
            py(y)
        );
    }
    // X ticks: decades on a log axis.
    if chart.x_log {
        let mut x = x_lo;
        while x <= x_hi * 1.0001 {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{}" text-anchor="middle">{}</text><line x1="{:.1}" y1="{TOP}" x2="{:.1}" y2="{}" stroke="#eee"/>"##,
                px(x),
                H - BOTTOM + 18.0,
                tick(x),
                px(x),
                px(x),
                H - BOTTOM
            );
            x *= 10.0;
        }
    } else {
        let x_step = nice_step(x_hi - x_lo);
        let first = (x_lo / x_step).ceil() as i64;
        let last = (x_hi / x_step).floor() as i64;
        for i in first..=last.min(first + 20) {
            let x = x_step * i as f64;
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                px(x),
                H - BOTTOM + 18.0,
                tick(x)
            );
        }
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
        (LEFT + right) / 2.0,
        H - 18.0,
        escape(&chart.x_label),
        (TOP + H - BOTTOM) / 2.0,
        (TOP + H - BOTTOM) / 2.0,
        escape(&chart.y_label)
    );
    for (x, label) in &chart.markers {
        let _ = write!(
            svg,
            r##"<line x1="{:.1}" y1="{TOP}" x2="{:.1}" y2="{}" stroke="#555" stroke-dasharray="4 4"/><text x="{:.1}" y="{}" font-size="11" fill="#555">{}</text>"##,
            px(*x),
            px(*x),
            H - BOTTOM,
            px(*x) + 3.0,
            TOP + 12.0,
            escape(label)
        );
    }
    for (i, s) in chart.series.iter().enumerate() {
        let (colour, dash) = style(i);
        let line: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}" points="{}"/>"#,
            line.join(" ")
        );
        for (j, (x, y)) in s.points.iter().enumerate() {
            if let Some(e) = s.errors.get(j).filter(|e| **e > 0.0) {
                let _ = write!(
                    svg,
                    r#"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="{colour}"/><line x1="{3:.1}" y1="{1:.1}" x2="{4:.1}" y2="{1:.1}" stroke="{colour}"/><line x1="{3:.1}" y1="{2:.1}" x2="{4:.1}" y2="{2:.1}" stroke="{colour}"/>"#,
                    px(*x),
                    py(y - e),
                    py(y + e),
                    px(*x) - 4.0,
                    px(*x) + 4.0
                );
            }
            if chart.dots {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"/>"#,
                    px(*x),
                    py(*y)
                );
            }
        }
    }
    let labels: Vec<&str> = chart.series.iter().map(|s| s.label.as_str()).collect();
    legend(&mut svg, &labels);
    svg.push_str("</svg>\n");
    svg
}

/// A grouped bar chart: one group per category (run), one bar per series,
/// values labelled on the bars, optional error bars (`errors[series][g]`).
pub fn svg_bars(
    title: &str,
    categories: &[String],
    series: &[(&str, Vec<f64>)],
    errors: &[Vec<f64>],
) -> String {
    let right = W - LEGEND;
    let y_max = series
        .iter()
        .enumerate()
        .flat_map(|(i, (_, v))| {
            v.iter()
                .enumerate()
                .map(move |(g, y)| y + errors.get(i).and_then(|e| e.get(g)).copied().unwrap_or(0.0))
        })
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.1;
    let py = |y: f64| H - BAR_BOTTOM - (y / y_max).clamp(0.0, 1.0) * (H - TOP - BAR_BOTTOM);
    let groups = categories.len().max(1) as f64;
    let group_w = (right - LEFT) / groups;
    let bar_w = group_w * 0.7 / series.len().max(1) as f64;
    let mut svg = String::new();
    header(&mut svg, title);
    let _ = write!(
        svg,
        r#"<line x1="{LEFT}" y1="{}" x2="{right}" y2="{}" stroke="black"/>"#,
        H - BAR_BOTTOM,
        H - BAR_BOTTOM
    );
    for (g, category) in categories.iter().enumerate() {
        let x0 = LEFT + group_w * g as f64 + group_w * 0.15;
        // Slanted, so that long configuration names do not overlap.
        let (cx, cy) = (LEFT + group_w * (g as f64 + 0.5), H - BAR_BOTTOM + 14.0);
        let _ = write!(
            svg,
            r#"<text x="{cx:.1}" y="{cy:.1}" text-anchor="end" font-size="10" transform="rotate(-30 {cx:.1} {cy:.1})">{}</text>"#,
            escape(&fit(category))
        );
        for (i, (_, values)) in series.iter().enumerate() {
            let v = values.get(g).copied().unwrap_or(0.0);
            let (colour, _) = style(i);
            let x = x0 + bar_w * i as f64;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                py(v),
                bar_w * 0.9,
                (H - BAR_BOTTOM) - py(v),
                x + bar_w * 0.45,
                py(v) - 4.0,
                tick(v)
            );
            if let Some(e) = errors.get(i).and_then(|e| e.get(g)).filter(|e| **e > 0.0) {
                let cx = x + bar_w * 0.45;
                let _ = write!(
                    svg,
                    r#"<line x1="{cx:.1}" y1="{:.1}" x2="{cx:.1}" y2="{:.1}" stroke="black"/>"#,
                    py(v - e),
                    py(v + e)
                );
            }
        }
    }
    let labels: Vec<&str> = series.iter().map(|(l, _)| *l).collect();
    legend(&mut svg, &labels);
    svg.push_str("</svg>\n");
    svg
}

/// Renders an SVG chart (from [`svg`] or [`svg_bars`]) to PNG, with the system's fonts
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
