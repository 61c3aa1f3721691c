//! PNG line plots for reports and sweeps (plotters' bitmap backend with a bundled DejaVu Sans font, so
//! the output does not depend on the fonts installed).

use anyhow::{anyhow, ensure};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The bundled file is a valid TrueType font; a failure here would be a packaging bug.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One named series of `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// The points, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Draw markers at the points (measurements) rather than a plain line (fits, curves).
    pub markers: bool,
}

/// Axes of a plot.
#[derive(Debug, Clone)]
pub struct Axes {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// Logarithmic y axis.
    pub log_y: bool,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn range(values: impl Iterator<Item = f64>, log: bool) -> anyhow::Result<(f64, f64)> {
    let vals: Vec<f64> = values
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .collect();
    ensure!(
        !vals.is_empty(),
        "nothing to plot: no finite{} values",
        if log { " positive" } else { "" }
    );
    let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    Ok(if log {
        (lo / 1.2, hi * 1.2)
    } else {
        // A single value (one logged step) still gets a readable axis around it.
        let pad = if hi - lo > 0.0 {
            (hi - lo) * 0.05
        } else {
            (lo.abs() * 0.05).max(1.0)
        };
        (lo - pad, hi + pad)
    })
}

/// Draws the series into a 900x600 PNG at `path`.
pub fn line_plot(path: &Path, axes: &Axes, series: &[Series]) -> anyhow::Result<()> {
    register_font();
    let xs = range(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.0)),
        axes.log_x,
    )?;
    let ys = range(
        series.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
        axes.log_y,
    )?;
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(axes.x_label.as_str())
                .y_desc(axes.y_label.as_str())
                .draw()
                .map_err(|e| err(&e))?;
            for (i, s) in series.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                let pts: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .cloned()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .filter(|p| (!axes.log_x || p.0 > 0.0) && (!axes.log_y || p.1 > 0.0))
                    .collect();
                let style = if s.markers {
                    color.stroke_width(1)
                } else {
                    color.stroke_width(2)
                };
                chart
                    .draw_series(LineSeries::new(pts.clone(), style))
                    .map_err(|e| err(&e))?
                    .label(s.label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                if s.markers {
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                        .map_err(|e| err(&e))?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }};
    }
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(axes.title.as_str(), ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70);
    match (axes.log_x, axes.log_y) {
        (true, true) => draw!(builder
            .build_cartesian_2d((xs.0..xs.1).log_scale(), (ys.0..ys.1).log_scale())
            .map_err(|e| err(&e))?),
        (true, false) => draw!(builder
            .build_cartesian_2d((xs.0..xs.1).log_scale(), ys.0..ys.1)
            .map_err(|e| err(&e))?),
        (false, true) => draw!(builder
            .build_cartesian_2d(xs.0..xs.1, (ys.0..ys.1).log_scale())
            .map_err(|e| err(&e))?),
        (false, false) => draw!(builder
            .build_cartesian_2d(xs.0..xs.1, ys.0..ys.1)
            .map_err(|e| err(&e))?),
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_with_drawn_pixels() {
        let dir = std::env::temp_dir().join(format!("xtask-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.png");
        let axes = Axes {
            title: "FD vs compute".into(),
            x_label: "FLOPs".into(),
            y_label: "FD".into(),
            log_x: true,
            log_y: true,
        };
        let s = Series {
            label: "small".into(),
            points: vec![(1e12, 500.0), (1e13, 300.0)],
            markers: true,
        };
        line_plot(&path, &axes, &[s]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(
            bytes.len() > 5000,
            "suspiciously small PNG: {} bytes",
            bytes.len()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn empty_or_nonpositive_log_data_is_an_error() {
        let axes = Axes {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_x: true,
            log_y: false,
        };
        let s = Series {
            label: "bad".into(),
            points: vec![(0.0, 1.0), (-1.0, 2.0)],
            markers: false,
        };
        let err = line_plot(Path::new("/nonexistent/p.png"), &axes, &[s]).unwrap_err();
        assert!(err.to_string().contains("nothing to plot"), "{err}");
    }
}
