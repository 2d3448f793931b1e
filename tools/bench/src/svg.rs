//! `report.svg`, drawn by hand: throughput per scenario, p50/p99 per scenario, and the scale
//! curve (p99 of `cached` and `db` against the number of projects).

use std::fmt::Write as _;

use super::report::{ScalePoint, rate, scale};
use super::{Report, Run, Subject};

const WIDTH: f64 = 960.0;
const LABEL: f64 = 150.0;
const BAR_AREA: f64 = 480.0;
const ROW: f64 = 24.0;
const PLINTH: &str = "#4e79a7";
const REFERENCE: &str = "#a0a0a0";
const P99: &str = "#f28e2b";
const P50: &str = "#b85c00";
const DB: &str = "#e15759";

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub fn text(svg: &mut String, x: f64, y: f64, anchor: &str, class: &str, s: &str) {
    let _ = writeln!(svg, r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" class="{class}">{}</text>"#, escape(s));
}

fn rect(svg: &mut String, x: f64, y: f64, w: f64, h: f64, fill: &str) {
    let _ = writeln!(svg, r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{fill}"/>"#, w.max(0.5));
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6).replace(".0M", "M")
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The chart.
pub fn chart(r: &Report) -> String {
    let runs: Vec<&Run> = r.runs.iter().filter(|run| run.main && run.figures().is_some()).collect();
    let points = scale(r);
    let mut body = String::new();
    let mut y = 30.0;
    text(
        &mut body,
        WIDTH / 2.0,
        y,
        "middle",
        "title",
        &format!(
            "plinth bench: {} tenants × {} projects, {} connections, {} s runs ({})",
            rate(f64::from(r.options.tenants)),
            r.options.projects_per_tenant,
            r.options.connections,
            r.options.duration,
            r.started_at
        ),
    );
    y += 20.0;
    text(&mut body, WIDTH / 2.0, y, "middle", "small", &r.machine);
    y += 30.0;

    // Throughput.
    text(&mut body, 10.0, y, "start", "head", "Throughput (grey: references measured in the same run)");
    y += 12.0;
    let max_rate = runs.iter().filter_map(|run| run.figures()).map(|f| f.m.rate).fold(1.0, f64::max);
    for run in &runs {
        let Some(f) = run.figures() else { continue };
        let fill = if matches!(run.subject, Subject::Reference(_)) { REFERENCE } else { PLINTH };
        let w = f.m.rate / max_rate * BAR_AREA;
        text(&mut body, LABEL - 8.0, y + ROW * 0.65, "end", "label", run.subject.name());
        rect(&mut body, LABEL, y + 3.0, w, ROW - 6.0, fill);
        let ratio =
            f.vs_reference.map(|(reference, _, x)| format!("  ({x:.2} × {})", reference.name())).unwrap_or_default();
        text(
            &mut body,
            LABEL + w + 6.0,
            y + ROW * 0.65,
            "start",
            "value",
            &format!("{} {}{ratio}", rate(f.m.rate), f.unit),
        );
        y += ROW;
    }
    y += 30.0;

    // Latency.
    text(&mut body, 10.0, y, "start", "head", "Latency: p50 (dark) and p99 (light), ms");
    y += 12.0;
    let with_latency: Vec<&&Run> = runs.iter().filter(|run| run.figures().is_some_and(|f| f.m.p99_us > 0.0)).collect();
    let max_p99 = with_latency.iter().filter_map(|run| run.figures()).map(|f| f.m.p99_us).fold(1.0, f64::max);
    for run in &with_latency {
        let Some(f) = run.figures() else { continue };
        text(&mut body, LABEL - 8.0, y + ROW * 0.65, "end", "label", run.subject.name());
        let w99 = f.m.p99_us / max_p99 * BAR_AREA;
        let w50 = f.m.p50_us / max_p99 * BAR_AREA;
        rect(&mut body, LABEL, y + 3.0, w99, ROW - 6.0, P99);
        rect(&mut body, LABEL, y + 7.0, w50, ROW - 14.0, P50);
        text(
            &mut body,
            LABEL + w99 + 6.0,
            y + ROW * 0.65,
            "start",
            "value",
            &format!("p50 {:.2} · p99 {:.2} · p99.9 {:.2} ms", f.m.p50_us / 1e3, f.m.p99_us / 1e3, f.m.p999_us / 1e3),
        );
        y += ROW;
    }
    y += 30.0;

    // Scale curve.
    if points.len() > 1 {
        y = scale_panel(&mut body, &points, y);
    }
    document(WIDTH, y + 20.0, &body)
}

/// An SVG document of `width` × `height` around `body`, with the classes the charts use.
pub fn document(width: f64, height: f64, body: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0}" viewBox="0 0 {width} {height:.0}" font-family="sans-serif">
<style>
.title {{ font-size: 16px; font-weight: bold; }}
.head {{ font-size: 14px; font-weight: bold; }}
.label {{ font-size: 12px; }}
.value {{ font-size: 11px; fill: #333; }}
.small {{ font-size: 11px; fill: #666; }}
.axis {{ stroke: #999; stroke-width: 1; }}
.grid {{ stroke: #e5e5e5; stroke-width: 1; }}
</style>
<rect width="100%" height="100%" fill="white"/>
{body}</svg>
"#
    )
}

fn scale_panel(body: &mut String, points: &[ScalePoint], top: f64) -> f64 {
    text(
        body,
        10.0,
        top,
        "start",
        "head",
        "Scale: p99 (ms) against the number of projects (log scale), each with its own axis",
    );
    let half = (WIDTH - 40.0) / 2.0;
    let cached: Vec<(u64, f64)> = points.iter().filter_map(|p| p.cached_p99_us().map(|v| (p.projects, v))).collect();
    let db: Vec<(u64, f64)> = points.iter().filter_map(|p| p.db_p99_us().map(|v| (p.projects, v))).collect();
    curve(body, "cached", PLINTH, &cached, 60.0, top + 20.0, half - 60.0);
    curve(body, "db", DB, &db, 60.0 + half, top + 20.0, half - 60.0);
    top + 20.0 + 230.0 + 30.0
}

/// One p99 curve in a box of `width` × 230 at (`left`, `top`).
fn curve(body: &mut String, name: &str, color: &str, points: &[(u64, f64)], left: f64, top: f64, width: f64) {
    let (x0, x1, y0, y1) = (left, left + width, top + 20.0, top + 200.0);
    text(body, (x0 + x1) / 2.0, top + 8.0, "middle", "label", &format!("{name} p99"));
    if points.is_empty() {
        text(body, (x0 + x1) / 2.0, (y0 + y1) / 2.0, "middle", "small", "not measured");
        return;
    }
    let logs: Vec<f64> = points.iter().map(|(n, _)| (*n).max(1) as f64).map(f64::log10).collect();
    let lmin = logs.iter().copied().fold(f64::INFINITY, f64::min);
    let lmax = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = (lmax - lmin).max(1e-9);
    let max_ms = points.iter().map(|(_, v)| v / 1e3).fold(0.001, f64::max) * 1.2;
    let sx = |l: f64| if points.len() == 1 { (x0 + x1) / 2.0 } else { x0 + 30.0 + (l - lmin) / span * (width - 60.0) };
    let sy = |v_ms: f64| y1 - v_ms / max_ms * (y1 - y0);
    let _ = writeln!(body, r#"<line x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}" class="axis"/>"#);
    let _ = writeln!(body, r#"<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" class="axis"/>"#);
    for i in 0..=4 {
        let v = max_ms * f64::from(i) / 4.0;
        let yy = sy(v);
        let _ = writeln!(body, r#"<line x1="{x0}" y1="{yy:.1}" x2="{x1}" y2="{yy:.1}" class="grid"/>"#);
        text(body, x0 - 6.0, yy + 4.0, "end", "small", &format!("{v:.1}"));
    }
    let pts: Vec<(f64, f64)> = points.iter().zip(&logs).map(|((_, v), l)| (sx(*l), sy(v / 1e3))).collect();
    let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(body, r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#, path.join(" "));
    for ((x, y), (n, v)) in pts.iter().zip(points) {
        let _ = writeln!(body, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{color}"/>"#);
        text(body, *x, *y - 8.0, "middle", "value", &format!("{:.2} ms", v / 1e3));
        text(body, *x, y1 + 16.0, "middle", "small", &format!("{} projects", human(*n as f64)));
    }
    if let (Some((_, first)), Some((_, last))) = (points.first(), points.last())
        && points.len() > 1
    {
        text(
            body,
            (x0 + x1) / 2.0,
            y1 + 32.0,
            "middle",
            "small",
            &format!("largest / smallest: {:.2} ×", last / first),
        );
    }
}
