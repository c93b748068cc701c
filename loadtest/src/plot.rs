//! The plot of a run: delivered and published msg/s over time (top) and the
//! p50 / p99 / max latency of each second (bottom, log scale), with markers
//! (reshard events, step starts) as vertical lines.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::progress::{Marker, Point};

/// Draws the timeline as an SVG file.
///
/// # Errors
/// When the file cannot be written.
pub fn draw(path: &Path, title: &str, points: &[Point], markers: &[Marker]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("plot {}: {e}", path.display());
    let root = SVGBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root.titled(title, ("sans-serif", 18)).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(320);
    let t_max = points.iter().map(|p| p.t).fold(1.0, f64::max).max(markers.iter().map(|m| m.t).fold(0.0, f64::max));

    let rate_max = points.iter().map(|p| p.delivered_per_s.max(p.published_per_s)).fold(1.0, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, 0.0..rate_max)
        .map_err(|e| err(&e))?;
    c.configure_mesh()
        .x_desc("s")
        .y_desc("msg/s")
        .y_label_formatter(&|v| crate::table::thousands(*v))
        .draw()
        .map_err(|e| err(&e))?;
    c.draw_series(LineSeries::new(points.iter().map(|p| (p.t, p.delivered_per_s)), &BLUE))
        .map_err(|e| err(&e))?
        .label("delivered msg/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    c.draw_series(LineSeries::new(points.iter().map(|p| (p.t, p.published_per_s)), &GREEN))
        .map_err(|e| err(&e))?
        .label("published msg/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    for (i, m) in markers.iter().enumerate() {
        c.draw_series(LineSeries::new(vec![(m.t, 0.0), (m.t, rate_max)], RED.mix(0.6))).map_err(|e| err(&e))?;
        // Staggered, so labels of close markers do not overwrite each other.
        let y = rate_max * (0.97 - 0.06 * (i % 4) as f64);
        let style = ("sans-serif", 12).into_font().color(&RED);
        c.draw_series(std::iter::once(Text::new(m.label.clone(), (m.t, y), style))).map_err(|e| err(&e))?;
    }
    c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;

    let lat = |p: &Point, f: fn(&Point) -> f64| f(p).max(0.01);
    let l_max = points.iter().map(|p| p.max_ms).fold(1.0, f64::max) * 2.0;
    let mut c = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max, (0.01..l_max).log_scale())
        .map_err(|e| err(&e))?;
    c.configure_mesh().x_desc("s").y_desc("latency ms").draw().map_err(|e| err(&e))?;
    let with_data: Vec<&Point> = points.iter().filter(|p| p.delivered_per_s > 0.0).collect();
    for (f, color, name) in [
        ((|p: &Point| p.p50_ms) as fn(&Point) -> f64, GREEN, "p50"),
        (|p: &Point| p.p99_ms, BLUE, "p99"),
        (|p: &Point| p.max_ms, RED, "max"),
    ] {
        c.draw_series(LineSeries::new(with_data.iter().map(|p| (p.t, lat(p, f))), color))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    for m in markers {
        c.draw_series(LineSeries::new(vec![(m.t, 0.01), (m.t, l_max)], RED.mix(0.6))).map_err(|e| err(&e))?;
    }
    c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
