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
    /// Palette index; `None` takes the series' position. A fit shares the index of the measurements it
    /// fits, so both are drawn in one colour.
    pub color: Option<usize>,
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

/// matplotlib's `tab10` colours.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Tick positions on a logarithmic axis over `(lo, hi)`: the powers of ten inside it, with 2 and 5 times
/// them when that gives fewer than four ticks, and every integer multiple when even that does.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let ticks_with = |mults: &[f64]| -> Vec<f64> {
        let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (k0..=k1)
            .flat_map(|k| mults.iter().map(move |m| m * 10f64.powi(k)))
            .filter(|v| *v >= lo && *v <= hi)
            .collect()
    };
    let mut ticks = ticks_with(&[1.0]);
    if ticks.len() < 4 {
        ticks = ticks_with(&[1.0, 2.0, 5.0]);
    }
    if ticks.len() < 4 {
        ticks = ticks_with(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    }
    ticks
}

/// A short tick label: `2e13` for large or tiny values, otherwise at most three decimals with trailing
/// zeros dropped (`150`, `0.25`).
fn tick_label(v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        let text = format!("{v:.1e}");
        return text.replace(".0e", "e");
    }
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Where the legend covers the fewest points: the corner of the plot (in axis coordinates, log where
/// the axis is) holding the fewest of them within 35% of its width and height.
fn emptiest_corner(
    points: &[(f64, f64)],
    xs: (f64, f64),
    ys: (f64, f64),
    log: (bool, bool),
) -> SeriesLabelPosition {
    let unit = |v: f64, (lo, hi): (f64, f64), log: bool| {
        if log {
            (v.ln() - lo.ln()) / (hi.ln() - lo.ln())
        } else {
            (v - lo) / (hi - lo)
        }
    };
    let unit_points: Vec<(f64, f64)> = points
        .iter()
        .map(|&(x, y)| (unit(x, xs, log.0), unit(y, ys, log.1)))
        .collect();
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerLeft, false, false),
        (SeriesLabelPosition::LowerRight, true, false),
    ];
    let count = |right: bool, upper: bool| {
        unit_points
            .iter()
            .filter(|(x, y)| {
                let in_x = if right { *x > 0.65 } else { *x < 0.35 };
                let in_y = if upper { *y > 0.65 } else { *y < 0.35 };
                in_x && in_y
            })
            .count()
    };
    corners
        .into_iter()
        .min_by_key(|&(_, right, upper)| count(right, upper))
        .map(|(pos, _, _)| pos)
        .unwrap_or(SeriesLabelPosition::UpperRight)
}

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
    let drawable = |p: &(f64, f64)| {
        p.0.is_finite()
            && p.1.is_finite()
            && (!axes.log_x || p.0 > 0.0)
            && (!axes.log_y || p.1 > 0.0)
    };
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().cloned())
        .collect();
    let xs = range(all.iter().map(|p| p.0), axes.log_x)?;
    let ys = range(all.iter().map(|p| p.1), axes.log_y)?;
    let visible: Vec<(f64, f64)> = all.iter().cloned().filter(drawable).collect();
    let legend_at = emptiest_corner(&visible, xs, ys, (axes.log_x, axes.log_y));
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let label = |v: &f64| tick_label(*v);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(axes.x_label.as_str())
                .y_desc(axes.y_label.as_str())
                .x_labels(10)
                .y_labels(10)
                .x_label_formatter(&label)
                .y_label_formatter(&label)
                .draw()
                .map_err(|e| err(&e))?;
            for (i, s) in series.iter().enumerate() {
                let color = PALETTE[s.color.unwrap_or(i) % PALETTE.len()];
                let pts: Vec<(f64, f64)> = s.points.iter().cloned().filter(drawable).collect();
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
                .position(legend_at)
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
    let (x_ticks, y_ticks) = (log_ticks(xs.0, xs.1), log_ticks(ys.0, ys.1));
    match (axes.log_x, axes.log_y) {
        (true, true) => draw!(builder
            .build_cartesian_2d(
                (xs.0..xs.1).log_scale().with_key_points(x_ticks),
                (ys.0..ys.1).log_scale().with_key_points(y_ticks)
            )
            .map_err(|e| err(&e))?),
        (true, false) => draw!(builder
            .build_cartesian_2d(
                (xs.0..xs.1).log_scale().with_key_points(x_ticks),
                ys.0..ys.1
            )
            .map_err(|e| err(&e))?),
        (false, true) => draw!(builder
            .build_cartesian_2d(
                xs.0..xs.1,
                (ys.0..ys.1).log_scale().with_key_points(y_ticks)
            )
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
            color: None,
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
            color: None,
        };
        let err = line_plot(Path::new("/nonexistent/p.png"), &axes, &[s]).unwrap_err();
        assert!(err.to_string().contains("nothing to plot"), "{err}");
    }

    #[test]
    fn log_ticks_fill_short_ranges_and_thin_long_ones() {
        // Over seven decades only the powers of ten.
        assert_eq!(
            log_ticks(0.5, 2e6),
            vec![1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6]
        );
        // Within a decade 1-2-5 gives two ticks here, so every integer multiple.
        let t = log_ticks(30.0, 180.0);
        let want = [30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0];
        assert_eq!(t.len(), want.len(), "{t:?}");
        for (a, b) in t.iter().zip(want) {
            assert!((a / b - 1.0).abs() < 1e-12, "{t:?}");
        }
        // 10 to 180: 1-2-5 gives four, enough.
        assert_eq!(log_ticks(10.0, 180.0), vec![10.0, 20.0, 50.0, 100.0]);
        // Two decades: 1-2-5.
        let t = log_ticks(2.5e12, 1.2e14);
        let want = [5e12, 1e13, 2e13, 5e13, 1e14];
        assert_eq!(t.len(), want.len(), "{t:?}");
        for (a, b) in t.iter().zip(want) {
            assert!((a / b - 1.0).abs() < 1e-12, "{t:?}");
        }
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(150.0), "150");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(2e13), "2e13");
        assert_eq!(tick_label(2.5e13), "2.5e13");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(-3.0), "-3");
        assert_eq!(tick_label(1e-4), "1e-4");
    }

    #[test]
    fn the_legend_goes_where_the_data_is_not() {
        // Points in three corners (log axes): the legend takes the fourth.
        let pts = [(1.0, 100.0), (2.0, 80.0), (1000.0, 100.0), (1000.0, 3.0)];
        let pos = emptiest_corner(&pts, (1.0, 1000.0), (3.0, 100.0), (true, true));
        assert!(matches!(pos, SeriesLabelPosition::LowerLeft), "{pos:?}");
        // The same on linear axes.
        let pos = emptiest_corner(&pts, (1.0, 1000.0), (3.0, 100.0), (false, false));
        assert!(matches!(pos, SeriesLabelPosition::LowerLeft), "{pos:?}");
        // With every corner empty, the usual upper right.
        let pos = emptiest_corner(
            &[(500.0, 50.0)],
            (1.0, 1000.0),
            (3.0, 100.0),
            (false, false),
        );
        assert!(matches!(pos, SeriesLabelPosition::UpperRight), "{pos:?}");
    }
}
