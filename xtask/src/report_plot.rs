//! The report's plots, as SVG and PNG (plotters, drawn in pure Rust with the
//! embedded DejaVu Sans font: no system font library needed):
//!
//! * `echo-latency`: RTT percentile curves of the median runs, one panel per medium
//!   (SHM, TCP, Unix socket), tcpshm (thick) against its floors and ZeroMQ (thin);
//!   x = -log10(1 - quantile), labelled 0%, 90%, 99%, 99.9%, ...; y = ns, log scale.
//! * `stream-throughput`: GB/s and messages/s versus message size (log-log).
//! * `scale-latency`: echo RTT curves with 0 .. 10,000 idle connections.
//! * `scale-throughput`: aggregate messages/s versus active clients, per group count.
//! * `echo-pairs`, `scale-pairs`: the ratio of ours to its reference in each kept
//!   back-to-back pair, at p50, p99 and p99.9, with the goal's bounds;
//!   `stream-pairs`: each kept pair's rate ratio versus message size.

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;
use std::path::Path;

/// A line of a chart.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    /// tcpshm's (drawn thick) or a reference's.
    ours: bool,
}

/// A panel of a figure.
enum Panel {
    /// Percentile curves: x = -log10(1 - q), y = ns (log).
    Latency { title: String, series: Vec<Series> },
    /// Log-log x/y lines.
    LogLog { title: String, x_desc: String, y_desc: String, series: Vec<Series>, legend: SeriesLabelPosition },
    /// Ratios of back-to-back pairs: points per series (x linear or log), y = ratio
    /// (log), with horizontal lines at the goal's bounds.
    Pairs { title: String, x_desc: String, x_log: bool, series: Vec<Series>, bounds: Vec<(String, f64)> },
}

fn rows_of<'a>(doc: &'a Value, suite: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for s in doc["suites"].as_array().map(Vec::as_slice).unwrap_or_default() {
        if s["name"] != suite {
            continue;
        }
        for p in s["parts"].as_array().map(Vec::as_slice).unwrap_or_default() {
            out.extend(super::report::rows(p));
        }
    }
    out
}

/// The percentile curve of a latency row, in plot coordinates.
fn curve(r: &Value) -> Option<Series> {
    let lat = &r["latency"];
    let count = lat["count"].as_f64()?.max(1.0);
    let top = count.log10();
    let mut points = Vec::new();
    for pt in lat["curve"].as_array()? {
        let (q, v) = (pt[0].as_f64()?, pt[1].as_f64()?);
        let x = if q >= 1.0 { top } else { (-(1.0 - q).log10()).min(top) };
        points.push((x, v.max(1.0)));
    }
    Some(Series { label: r["label"].as_str()?.to_string(), points, ours: !r["reference"].as_bool().unwrap_or(false) })
}

/// The figures this document has data for: (file stem, panels).
fn figures(doc: &Value) -> Vec<(String, Vec<Panel>)> {
    let mut figs = Vec::new();

    let echo = rows_of(doc, "echo");
    if echo.iter().any(|r| r["latency"].is_object()) {
        let pick = |keys: &[&str]| -> Vec<Series> {
            keys.iter().filter_map(|k| echo.iter().find(|r| r["key"] == *k).and_then(|r| curve(r))).collect()
        };
        let panels = [
            ("Echo RTT over shared memory", &["echo.shm", "echo.floor.shm", "echo.ring", "echo.zmq.ipc"][..]),
            ("Echo RTT over TCP loopback", &["echo.tcp", "echo.floor.tcp", "echo.zmq.tcp"][..]),
            ("Echo RTT over a Unix socket", &["echo.unix", "echo.floor.unix", "echo.zmq.ipc"][..]),
        ];
        let panels: Vec<Panel> = panels
            .iter()
            .map(|(t, k)| Panel::Latency { title: t.to_string(), series: pick(k) })
            .filter(|p| matches!(p, Panel::Latency { series, .. } if !series.is_empty()))
            .collect();
        if !panels.is_empty() {
            figs.push(("echo-latency".to_string(), panels));
        }
    }

    let stream = rows_of(doc, "stream");
    if stream.iter().any(|r| r["params"]["bytes"].is_number()) {
        // (who, ours, GB/s points, messages/s points)
        type Lines = (String, bool, Vec<(f64, f64)>, Vec<(f64, f64)>);
        let mut by_who: Vec<Lines> = Vec::new();
        for r in &stream {
            let (Some(bytes), Some(mps), Some(gbs)) =
                (r["params"]["bytes"].as_f64(), r["median"].as_f64(), r["also_median"].as_f64())
            else {
                continue;
            };
            let label = r["label"].as_str().unwrap_or("?");
            let who = label.split_once(": ").map(|(_, w)| w).unwrap_or(label).to_string();
            let ours = !r["reference"].as_bool().unwrap_or(false);
            match by_who.iter_mut().find(|(w, ..)| *w == who) {
                Some((_, _, g, m)) => {
                    g.push((bytes, gbs));
                    m.push((bytes, mps * 1e6));
                }
                None => by_who.push((who, ours, vec![(bytes, gbs)], vec![(bytes, mps * 1e6)])),
            }
        }
        let series = |gb: bool| {
            by_who
                .iter()
                .map(|(w, ours, g, m)| Series {
                    label: w.clone(),
                    points: if gb { g.clone() } else { m.clone() },
                    ours: *ours,
                })
                .collect()
        };
        figs.push((
            "stream-throughput".to_string(),
            vec![
                Panel::LogLog {
                    title: "One-way throughput: bytes".into(),
                    x_desc: "message size (bytes)".into(),
                    y_desc: "GB/s".into(),
                    series: series(true),
                    legend: SeriesLabelPosition::LowerRight,
                },
                Panel::LogLog {
                    title: "One-way throughput: messages".into(),
                    x_desc: "message size (bytes)".into(),
                    y_desc: "messages/s".into(),
                    series: series(false),
                    legend: SeriesLabelPosition::UpperRight,
                },
            ],
        ));
    }

    let scale = rows_of(doc, "scale");
    let curves: Vec<Series> = scale.iter().filter_map(|r| curve(r)).collect();
    if !curves.is_empty() {
        figs.push((
            "scale-latency".to_string(),
            vec![Panel::Latency { title: "Echo RTT (TCP) beside other connections".into(), series: curves }],
        ));
    }
    let mut by_groups: Vec<(i64, Vec<(f64, f64)>)> = Vec::new();
    for r in &scale {
        let (Some(clients), Some(groups), Some(mps)) =
            (r["params"]["clients"].as_f64(), r["params"]["groups"].as_f64().map(|g| g as i64), r["median"].as_f64())
        else {
            continue;
        };
        match by_groups.iter_mut().find(|(g, _)| *g == groups) {
            Some((_, v)) => v.push((clients, mps * 1e6)),
            None => by_groups.push((groups, vec![(clients, mps * 1e6)])),
        }
    }
    if !by_groups.is_empty() {
        let series = by_groups
            .into_iter()
            .map(|(g, points)| Series { label: format!("{g} group(s)"), points, ours: true })
            .collect();
        figs.push((
            "scale-throughput".to_string(),
            vec![Panel::LogLog {
                title: "Aggregate echo throughput (TCP)".into(),
                x_desc: "active clients".into(),
                y_desc: "messages/s".into(),
                series,
                legend: SeriesLabelPosition::LowerRight,
            }],
        ));
    }
    figs.extend(pair_figures(doc));
    figs
}

/// The `data.pairs` of a suite's parts: `(row key, pairs document)`.
fn pair_docs<'a>(doc: &'a Value, suite: &str) -> Vec<(&'a str, &'a Value)> {
    let mut out = Vec::new();
    for s in doc["suites"].as_array().map(Vec::as_slice).unwrap_or_default() {
        if s["name"] != suite {
            continue;
        }
        for p in s["parts"].as_array().map(Vec::as_slice).unwrap_or_default() {
            if let Some(m) = p["data"]["pairs"].as_object() {
                out.extend(m.iter().map(|(k, v)| (k.as_str(), v)));
            }
        }
    }
    out
}

/// The goal's bounds of row `key` (from its checks).
fn bounds_of(doc: &Value, suite: &str, key: &str) -> Vec<(String, f64)> {
    rows_of(doc, suite)
        .into_iter()
        .filter(|r| r["key"] == key)
        .flat_map(|r| r["checks"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| {
            Some((
                format!("goal {} {} {}", c["what"].as_str()?, c["op"].as_str()?, c["limit"].as_f64()?),
                c["limit"].as_f64()?,
            ))
        })
        .collect()
}

fn pair_figures(doc: &Value) -> Vec<(String, Vec<Panel>)> {
    let mut figs = Vec::new();
    for suite in ["echo", "scale"] {
        let mut panels = Vec::new();
        for (key, pd) in pair_docs(doc, suite) {
            let pairs = pd["pairs"].as_array().map(Vec::as_slice).unwrap_or_default();
            // Only judged rows and latency pairs (their ratios are per percentile).
            let bounds = bounds_of(doc, suite, key);
            if bounds.is_empty() || !pairs.iter().any(|p| p["ratios"].is_object()) {
                continue;
            }
            let series = [("p50", "p50"), ("p99", "p99"), ("p99_9", "p99.9")]
                .iter()
                .map(|(k, name)| Series {
                    label: format!("{name} ratio"),
                    points: pairs
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p["kept"].as_bool().unwrap_or(false))
                        .filter_map(|(i, p)| Some(((i + 1) as f64, p["ratios"][*k].as_f64()?)))
                        .collect(),
                    ours: true,
                })
                .collect();
            let discarded = pd["discarded"].as_u64().unwrap_or(0);
            panels.push(Panel::Pairs {
                title: format!("{key}: ours / reference per kept pair ({discarded} discarded)"),
                x_desc: "pair".into(),
                x_log: false,
                series,
                bounds,
            });
        }
        if !panels.is_empty() {
            figs.push((format!("{suite}-pairs"), panels));
        }
    }
    // Stream: each pair's rate ratio against the message size, per medium.
    // (medium, (size, ratio) points, goal lines)
    type Medium = (String, Vec<(f64, f64)>, Vec<(String, f64)>);
    let mut by_medium: Vec<Medium> = Vec::new();
    for (key, pd) in pair_docs(doc, "stream") {
        let mut parts = key.split('.');
        let (Some(_), Some(medium), Some(Ok(size))) = (parts.next(), parts.next(), parts.next().map(str::parse::<f64>))
        else {
            continue;
        };
        let pts: Vec<(f64, f64)> = pd["pairs"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|p| p["kept"].as_bool().unwrap_or(false))
            .filter_map(|p| Some((size, p["ratio"].as_f64()?)))
            .collect();
        let bounds = bounds_of(doc, "stream", key);
        match by_medium.iter_mut().find(|(m, ..)| m == medium) {
            Some((_, v, b)) => {
                v.extend(pts);
                b.extend(bounds);
            }
            None => by_medium.push((medium.to_string(), pts, bounds)),
        }
    }
    if !by_medium.is_empty() {
        let bounds =
            by_medium.iter().flat_map(|(m, _, b)| b.iter().map(move |(t, x)| (format!("{m}: {t}"), *x))).collect();
        let series = by_medium
            .into_iter()
            .map(|(m, points, _)| Series { label: format!("tcpshm {m} / its bare reference"), points, ours: true })
            .collect();
        figs.push((
            "stream-pairs".to_string(),
            vec![Panel::Pairs {
                title: "Stream rate, ours / the bare medium, per kept pair".into(),
                x_desc: "message size (bytes)".into(),
                x_log: true,
                series,
                bounds,
            }],
        ));
    }
    figs
}

/// Draws every figure the document has data for into `dir` as SVG and PNG; returns
/// the file names.
pub fn write_all(doc: &Value, dir: &Path) -> Result<Vec<String>> {
    register_font();
    let mut names = Vec::new();
    for (stem, panels) in figures(doc) {
        let size = (1000, 420 * panels.len() as u32);
        let svg = format!("{stem}.svg");
        let png = format!("{stem}.png");
        let p = dir.join(&svg);
        draw(SVGBackend::new(&p, size).into_drawing_area(), &panels).map_err(|e| anyhow!("{svg}: {e}"))?;
        let p = dir.join(&png);
        draw(BitMapBackend::new(&p, size).into_drawing_area(), &panels).map_err(|e| anyhow!("{png}: {e}"))?;
        names.push(svg);
        names.push(png);
    }
    Ok(names)
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bytes are valid TrueType (the `dejavu` crate ships the font).
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// "99.9%" for x = 3.
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let digits = if x <= 2.0 { 0 } else { (x - 2.0).ceil() as usize };
    format!("{p:.digits$}%")
}

fn bounds(series: &[Series], f: impl Fn(&(f64, f64)) -> f64) -> (f64, f64) {
    let vals = series.iter().flat_map(|s| s.points.iter().map(&f)).filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = vals.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        (1.0, 10.0)
    } else if lo == hi {
        (lo / 2.0, hi * 2.0)
    } else {
        (lo, hi)
    }
}

type DrawResult = std::result::Result<(), String>;

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, panels: &[Panel]) -> DrawResult {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((panels.len(), 1));
    for (area, panel) in areas.iter().zip(panels) {
        match panel {
            Panel::Latency { title, series } => latency_panel(area, title, series)?,
            Panel::LogLog { title, x_desc, y_desc, series, legend } => {
                loglog_panel(area, title, x_desc, y_desc, series, legend.clone())?
            }
            Panel::Pairs { title, x_desc, x_log, series, bounds } => {
                pairs_panel(area, title, x_desc, *x_log, series, bounds)?
            }
        }
    }
    root.present().map_err(|e| e.to_string())
}

/// Distinct, readable colours (the "tab10" palette).
const COLORS: [(u8, u8, u8); 8] = [
    (214, 39, 40),
    (31, 119, 180),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (127, 127, 127),
    (23, 190, 207),
];

fn style(i: usize, ours: bool) -> ShapeStyle {
    let (r, g, b) = COLORS[i % COLORS.len()];
    RGBColor(r, g, b).stroke_width(if ours { 3 } else { 1 })
}

fn latency_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, title: &str, series: &[Series]) -> DrawResult {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let (_, xmax) = bounds(series, |p| p.0 + 1.0);
    let xmax = (xmax - 1.0).ceil().max(1.0);
    let (ylo, yhi) = bounds(series, |p| p.1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, (ylo * 0.8..yhi * 1.25).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("round trip (ns)")
        .x_labels(xmax as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| human(*y))
        .draw()
        .map_err(e)?;
    for (i, s) in series.iter().enumerate() {
        let st = style(i, s.ours);
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), st))
            .map_err(e)?
            .label(s.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], st));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(e)
}

fn loglog_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    legend: SeriesLabelPosition,
) -> DrawResult {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let (xlo, xhi) = bounds(series, |p| p.0);
    let (ylo, yhi) = bounds(series, |p| p.1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((xlo * 0.8..xhi * 1.25).log_scale(), (ylo * 0.5..yhi * 2.0).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|x| human(*x))
        .y_label_formatter(&|y| human(*y))
        .draw()
        .map_err(e)?;
    for (i, s) in series.iter().enumerate() {
        let st = style(i, s.ours);
        let mut pts = s.points.clone();
        pts.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), st))
            .map_err(e)?
            .label(s.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], st));
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, st.filled()))).map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(e)
}

fn pairs_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    x_log: bool,
    series: &[Series],
    goal_lines: &[(String, f64)],
) -> DrawResult {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let (xlo, xhi) = bounds(series, |p| p.0);
    let (mut ylo, mut yhi) = bounds(series, |p| p.1);
    for (_, b) in goal_lines {
        ylo = ylo.min(*b);
        yhi = yhi.max(*b);
    }
    let yr = (ylo * 0.8..yhi * 1.25).log_scale();
    let mut builder = ChartBuilder::on(area);
    builder.caption(title, ("sans-serif", 20)).margin(12).margin_right(40).x_label_area_size(40).y_label_area_size(70);
    let st_bound = |i: usize| RGBColor(90, 90, 90).mix(0.4 + 0.2 * (i % 3) as f64).stroke_width(1);
    // Pair numbers are whole: no label between them.
    let xfmt = |x: &f64| {
        if x_log {
            human(*x)
        } else if x.fract() == 0.0 {
            format!("{x:.0}")
        } else {
            String::new()
        }
    };
    macro_rules! draw_on {
        ($chart:expr, $x0:expr, $x1:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc("ratio")
                .x_label_formatter(&xfmt)
                .y_label_formatter(&|y| format!("{y:.2}"))
                .draw()
                .map_err(e)?;
            for (i, (label, b)) in goal_lines.iter().enumerate() {
                let st = st_bound(i);
                chart
                    .draw_series(LineSeries::new(vec![($x0, *b), ($x1, *b)], st))
                    .map_err(e)?
                    .label(label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], st));
            }
            for (i, s) in series.iter().enumerate() {
                let st = style(i, true);
                chart
                    .draw_series(s.points.iter().map(|p| Circle::new(*p, 4, st.filled())))
                    .map_err(e)?
                    .label(s.label.as_str())
                    .legend(move |(x, y)| Circle::new((x + 12, y), 4, st.filled()));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(e)
        }};
    }
    if x_log {
        let (x0, x1) = (xlo * 0.7, xhi * 1.4);
        draw_on!(builder.build_cartesian_2d((x0..x1).log_scale(), yr).map_err(e)?, x0, x1)
    } else {
        let (x0, x1) = (0.5, xhi + 0.5);
        draw_on!(builder.build_cartesian_2d(x0..x1, yr).map_err(e)?, x0, x1)
    }
}

/// 1.5k, 2M, 0.25 ...
fn human(x: f64) -> String {
    let (v, s) = if x >= 1e9 {
        (x / 1e9, "G")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let t = if v >= 10.0 || v == v.trunc() { format!("{v:.0}") } else { format!("{v:.1}") };
    format!("{t}{s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis_labels() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(4.0), "99.99%");
        assert_eq!(human(1500.0), "1.5k");
        assert_eq!(human(2e6), "2M");
    }

    #[test]
    fn plots_render_from_a_fixed_report() {
        let doc = super::super::report::tests::fixture();
        let figs = figures(&doc);
        let names: Vec<&str> = figs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["echo-latency", "stream-throughput", "echo-pairs"]);
        // The pairs panel: the kept pairs only (1 and 3), and a missing ratio skipped.
        let Panel::Pairs { series, bounds, .. } = &figs[2].1[0] else { panic!("pairs panel") };
        assert_eq!(series[0].points, [(1.0, 1.2), (3.0, 1.1)]);
        assert_eq!(series[2].points, [(1.0, 1.6)]);
        assert_eq!(bounds.len(), 2);
        // Echo: the SHM and TCP panels (no Unix rows in the fixture), two curves each.
        let Panel::Latency { series, .. } = &figs[0].1[0] else { panic!("latency panel") };
        assert_eq!(series.len(), 2);
        assert!(series[0].ours && !series[1].ours);
        // The curve's x is -log10(1 - q); the max sits at log10(count).
        assert_eq!(series[0].points[2], (1.0, 280.0 * 1.1));
        assert_eq!(series[0].points.last().unwrap().0, 5.0);
        assert_eq!(figs[0].1.len(), 2);

        let dir = std::env::temp_dir().join(format!("xtask-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = write_all(&doc, &dir).unwrap();
        assert_eq!(
            files,
            [
                "echo-latency.svg",
                "echo-latency.png",
                "stream-throughput.svg",
                "stream-throughput.png",
                "echo-pairs.svg",
                "echo-pairs.png"
            ]
        );
        for f in &files {
            let bytes = std::fs::read(dir.join(f)).unwrap();
            if f.ends_with(".png") {
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{f} is a PNG");
            } else {
                let s = String::from_utf8(bytes).unwrap();
                assert!(s.contains("<svg"), "{f}");
                let wanted: &[&str] = if f.starts_with("echo-pairs") {
                    &["p99 ratio", "goal p99 / SHM floor"]
                } else if f.starts_with("echo") {
                    &["tcpshm SHM (server + client)", "99.9%", "Echo RTT over TCP loopback"]
                } else {
                    &["GB/s", "messages/s", "memcpy"]
                };
                for w in wanted {
                    assert!(s.contains(w), "{f} lacks {w:?}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
