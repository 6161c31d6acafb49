//! The chart of a run, one SVG with three panels: throughput per second,
//! p50 and p99 latency per second, and the latency distribution with the
//! percentile axis stretched toward the tail (0, 90, 99, 99.9, 99.99 one
//! step apart).

use crate::error::{BenchError, Result};
use crate::report::RunResult;
use plotters::prelude::*;
use std::path::Path;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 1200;
const FONT: &str = "sans-serif";

/// The percentile at `x` on the tail-stretched axis: `100 (1 - 10^-x)`.
fn percentile_at(x: f64) -> f64 {
    100.0 * (1.0 - 10f64.powf(-x))
}

/// Where percentile `p` sits on that axis (99.99 and above at 4).
fn axis_of(p: f64) -> f64 {
    let tail = (1.0 - p / 100.0).max(1e-4);
    -tail.log10()
}

/// A tick label in ms: as few digits as the value needs.
fn axis_ms(v: f64) -> String {
    let s = if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A latency range for a log axis (ms), from the values drawn.
fn ms_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::MAX, 0.0f64);
    for v in values.filter(|v| *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi == 0.0 {
        return 0.001..1.0;
    }
    (lo / 1.5).max(1e-4)..(hi * 1.5)
}

/// Draws `r` into `file`.
pub fn draw(r: &RunResult, file: &Path) -> Result<()> {
    draw_inner(r, file).map_err(|reason| BenchError::Plot {
        file: file.to_path_buf(),
        reason,
    })
}

fn draw_inner(r: &RunResult, file: &Path) -> std::result::Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let root = SVGBackend::new(file, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let title = format!(
        "{}: {} ({:.0} ops/s, p50 {}, p99 {})",
        r.label,
        r.options.workload.name(),
        r.totals.ops_per_sec,
        crate::report::fmt_us(r.latency_us.p50),
        crate::report::fmt_us(r.latency_us.p99)
    );
    let root = root.titled(&title, (FONT, 22)).map_err(|x| e(&x))?;
    let panels = root.split_evenly((3, 1));
    let secs = r.series.len().max(1) as f64;

    // Throughput per second.
    let top = r.series.iter().map(|s| s.ops as f64).fold(0.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&panels[0])
        .caption(
            "throughput (ops/s, by the second requests were due or sent)",
            (FONT, 16),
        )
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..secs, 0f64..top.max(1.0))
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc("ops/s")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(LineSeries::new(
            r.series
                .iter()
                .map(|s| (s.second as f64 + 0.5, s.ops as f64)),
            BLUE.stroke_width(2),
        ))
        .map_err(|x| e(&x))?;

    // p50 and p99 per second (ms, log).
    let range = ms_range(
        r.series
            .iter()
            .flat_map(|s| [s.p50_us / 1e3, s.p99_us / 1e3]),
    );
    let mut chart = ChartBuilder::on(&panels[1])
        .caption("latency per second (ms, log scale)", (FONT, 16))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..secs, range.log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .y_labels(8)
        .y_label_formatter(&|v| axis_ms(*v))
        .x_desc("second")
        .y_desc("ms")
        .draw()
        .map_err(|x| e(&x))?;
    for (name, color, pick) in [
        (
            "p50",
            BLUE,
            (|s: &crate::report::SecondPoint| s.p50_us) as fn(&_) -> f64,
        ),
        ("p99", RED, |s: &crate::report::SecondPoint| s.p99_us),
    ] {
        chart
            .draw_series(LineSeries::new(
                r.series
                    .iter()
                    .filter(|s| pick(s) > 0.0)
                    .map(|s| (s.second as f64 + 0.5, pick(s) / 1e3)),
                color.stroke_width(2),
            ))
            .map_err(|x| e(&x))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|x| e(&x))?;

    // The distribution.
    let range = ms_range(r.cdf.iter().map(|p| p.latency_us / 1e3));
    let mut chart = ChartBuilder::on(&panels[2])
        .caption(
            "latency distribution (ms, log scale) by percentile",
            (FONT, 16),
        )
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..4.0f64, range.log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_labels(5)
        .x_label_formatter(&|x| {
            let p = format!("{:.2}", percentile_at(*x));
            p.trim_end_matches('0').trim_end_matches('.').to_string()
        })
        .light_line_style(WHITE)
        .y_labels(8)
        .y_label_formatter(&|v| axis_ms(*v))
        .x_desc("percentile")
        .y_desc("ms")
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(LineSeries::new(
            r.cdf
                .iter()
                .filter(|p| p.latency_us > 0.0 && p.percentile < 100.0)
                .map(|p| (axis_of(p.percentile).min(4.0), p.latency_us / 1e3)),
            BLUE.stroke_width(2),
        ))
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(axis_ms(10.0), "10");
        assert_eq!(axis_ms(2.5), "2.5");
        assert_eq!(axis_ms(0.25), "0.25");
        assert_eq!(axis_ms(0.05), "0.05");
    }

    #[test]
    fn the_percentile_axis_puts_nines_one_step_apart() {
        for (p, x) in [
            (0.0, 0.0),
            (90.0, 1.0),
            (99.0, 2.0),
            (99.9, 3.0),
            (99.99, 4.0),
        ] {
            assert!((axis_of(p) - x).abs() < 1e-9, "{p}");
            assert!((percentile_at(x) - p).abs() < 1e-9, "{x}");
        }
    }
}
