//! `capacity.svg`: one latency-by-percentile curve per step (both axes logarithmic, as
//! HdrHistogram's plots draw them: 90%, 99%, 99.9%, 99.99% evenly spaced), with the 50 ms and
//! 200 ms bars.

use std::fmt::Write as _;

use super::super::report::rate;
use super::super::svg::{document, text};
use super::{Capacity, P99_MS, P999_MS};

const WIDTH: f64 = 960.0;
const PLOT: (f64, f64, f64, f64) = (80.0, 80.0, 700.0, 500.0);
/// The x position of "max", past 99.99%.
const MAX_X: f64 = 4.6;
const COLORS: [&str; 10] =
    ["#4e79a7", "#59a14f", "#edc948", "#f28e2b", "#e15759", "#b07aa1", "#76b7b2", "#ff9da7", "#9c755f", "#222222"];

/// `log10(1 / (1 - p))`: 0 at 0%, 1 at 90%, 2 at 99%; `MAX_X` for the maximum.
fn nines(percentile: f64) -> f64 {
    if percentile >= 100.0 { MAX_X } else { (1.0 / (1.0 - percentile / 100.0)).log10().min(MAX_X) }
}

/// The chart.
pub fn chart(c: &Capacity) -> String {
    let (left, top, right, bottom) = PLOT;
    let mut body = String::new();
    let held = c.held_rate.map_or_else(|| "none held".to_owned(), |h| format!("held {} req/s", rate(h)));
    text(
        &mut body,
        WIDTH / 2.0,
        30.0,
        "middle",
        "title",
        &format!("plinth capacity: latency by percentile at each arrival rate (open loop, from when due); {held}"),
    );
    text(
        &mut body,
        WIDTH / 2.0,
        50.0,
        "middle",
        "small",
        &format!(
            "{} tenants, {} users, {} projects; {} s measured per step; load average {} / {}",
            rate(f64::from(c.tenants)),
            rate(c.users as f64),
            rate(c.projects as f64),
            c.window_s,
            c.load_average_before,
            c.load_average_after
        ),
    );
    // y: ms on a log scale, from 0.1 ms to the next power of ten above the largest latency.
    let max_ms = c.steps.iter().flat_map(|s| s.curve.iter().map(|(_, v)| *v)).fold(P999_MS, f64::max);
    let (y_lo, y_hi) = (-1.0_f64, max_ms.log10().ceil().max(3.0));
    let sy = |ms: f64| bottom - (ms.max(0.1).log10() - y_lo) / (y_hi - y_lo) * (bottom - top);
    let sx = |n: f64| left + n / MAX_X * (right - left);
    let _ = writeln!(body, r#"<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>"#);
    let _ = writeln!(body, r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" class="axis"/>"#);
    let mut decade = y_lo;
    while decade <= y_hi {
        let v = 10f64.powf(decade);
        let y = sy(v);
        let _ = writeln!(body, r#"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" class="grid"/>"#);
        let label = if v < 1.0 { format!("{v:.1}") } else { format!("{v:.0}") };
        text(&mut body, left - 6.0, y + 4.0, "end", "small", &format!("{label} ms"));
        decade += 1.0;
    }
    for (p, label) in [(0.0, "0%"), (90.0, "90%"), (99.0, "99%"), (99.9, "99.9%"), (99.99, "99.99%"), (100.0, "max")] {
        let x = sx(nines(p));
        let _ = writeln!(body, r#"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" class="grid"/>"#);
        text(&mut body, x, bottom + 16.0, "middle", "small", label);
    }
    text(&mut body, (left + right) / 2.0, bottom + 34.0, "middle", "label", "percentile");
    for (bar, label) in [(P99_MS, "p99 bar"), (P999_MS, "p99.9 bar")] {
        let y = sy(bar);
        let _ = writeln!(
            body,
            r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#c00" stroke-dasharray="6,4"/>"##
        );
        text(&mut body, right - 4.0, y - 4.0, "end", "small", &format!("{label}: {bar:.0} ms"));
    }
    for (i, step) in c.steps.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> =
            step.curve.iter().map(|(p, v)| format!("{:.1},{:.1}", sx(nines(*p)), sy(*v))).collect();
        let dash = if step.held { "" } else { r#" stroke-dasharray="3,3""# };
        let _ = writeln!(
            body,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            points.join(" ")
        );
        let y = top + 14.0 + 18.0 * i as f64;
        let _ = writeln!(
            body,
            r#"<line x1="{}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="{color}" stroke-width="3"{dash}/>"#,
            right + 20.0,
            y - 4.0,
            right + 44.0,
            y - 4.0
        );
        let verdict = if step.held { "held" } else { "missed" };
        text(
            &mut body,
            right + 50.0,
            y,
            "start",
            "value",
            &format!("{} req/s: p99 {:.1} ms, {verdict}", rate(step.target_rate), step.p99_ms),
        );
    }
    document(WIDTH, bottom + 60.0, &body)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::sample;
    use super::*;

    #[test]
    fn the_chart_is_well_formed_svg_with_a_curve_per_step() {
        let svg = chart(&sample());
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("held 500 req/s") && svg.contains("&lt;&amp;&gt;"));
        // Every element opened is closed: tags balance, and no bare `&` or `<` in text.
        let opens = svg.matches("<text").count();
        assert_eq!(opens, svg.matches("</text>").count());
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        for line in svg.lines().filter(|l| l.starts_with("<text")) {
            let (_, rest) = line.split_once('>').unwrap_or_default();
            let (inner, _) = rest.rsplit_once("</text>").unwrap_or_default();
            let unescaped = inner.replace("&amp;", "").replace("&lt;", "").replace("&gt;", "");
            assert!(!inner.contains('<') && !unescaped.contains('&'), "{line}");
        }
        // The 99th percentile sits twice as far right as the 90th, the maximum past 99.99%.
        assert!((nines(99.0) - 2.0 * nines(90.0)).abs() < 1e-9);
        assert!(nines(100.0) > nines(99.99));
    }
}
