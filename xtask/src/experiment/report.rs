//! `report.md` of a run root, with its PNGs: sample grids at 1 and 2 steps next to training images, loss
//! curves, scores, and the time and images spent.

use crate::plot::{self, Axes, Series};
use anyhow::Context;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

/// Reads `(step, loss)` from a run's `stats.jsonl` (lines that fail to parse are skipped: a run killed
/// mid-write leaves at most one such line).
pub fn loss_curve(run_dir: &Path) -> Vec<(f64, f64)> {
    let Ok(text) = std::fs::read_to_string(run_dir.join("stats.jsonl")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v["step"].as_f64()?, v["loss"].as_f64()?)))
        .collect()
}

/// Writes a grid of the first `n` images of a dataset as PNG (u8, grayscale or RGB).
pub fn dataset_grid(data: &Path, n: usize, out: &Path) -> anyhow::Result<()> {
    let ds = ect_data::open(&ect_data::DatasetSpec::new(data.to_path_buf()))
        .with_context(|| format!("opening {}", data.display()))?;
    let n = n.min(ds.len()).max(1);
    let (c, h, w) = (ds.channels(), ds.height(), ds.width());
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let (gw, gh) = ((cols * w) as u32, (rows * h) as u32);
    let mut canvas = image::RgbImage::new(gw, gh);
    for i in 0..n {
        let img = ds.image(i)?;
        let (ox, oy) = ((i % cols) * w, (i / cols) * h);
        for y in 0..h {
            for x in 0..w {
                let px = |ch: usize| img[(ch.min(c - 1) * h + y) * w + x];
                canvas.put_pixel(
                    (ox + x) as u32,
                    (oy + y) as u32,
                    image::Rgb([px(0), px(1), px(2)]),
                );
            }
        }
    }
    canvas
        .save(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

fn read_json(path: &Path) -> Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

fn fmt_f(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".to_owned())
}

/// The periodic FD of a run (`fd.jsonl`), one series per sampler, in sampler order of first appearance.
pub fn fd_curves(run_dir: &Path) -> Vec<Series> {
    let text = std::fs::read_to_string(run_dir.join("fd.jsonl")).unwrap_or_default();
    let mut series: Vec<Series> = Vec::new();
    for v in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        let (Some(step), Some(fd), Some(sampler)) =
            (v["step"].as_f64(), v["fd"].as_f64(), v["sampler"].as_str())
        else {
            continue;
        };
        match series.iter_mut().find(|s| s.label == sampler) {
            Some(s) => s.points.push((step, fd)),
            None => series.push(Series {
                label: sampler.to_owned(),
                points: vec![(step, fd)],
                markers: true,
                color: None,
            }),
        }
    }
    series
}

/// Writes `report.md` and its PNGs into `root`.
pub fn write(
    root: &Path,
    data: &Path,
    tune: &Path,
    pretrain: Option<&Path>,
    scores: &Value,
) -> anyhow::Result<()> {
    let mut md = String::new();
    let exp = std::fs::read_to_string(root.join("experiment.toml")).unwrap_or_default();
    let name = root
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    writeln!(md, "# Run report: {name}\n")?;
    let prov = read_json(&root.join("provenance.json"));
    writeln!(
        md,
        "git {} (dirty: {}), libtorch {}, device {}, seed {}\n",
        prov["git_revision"].as_str().unwrap_or("unknown"),
        prov["git_dirty"],
        prov["libtorch_version"].as_str().unwrap_or("?"),
        prov["device"].as_str().unwrap_or("?"),
        prov["seed"]
    )?;

    writeln!(md, "## Scores\n")?;
    writeln!(
        md,
        "| samples | n | FD (built-in feature net) | class entropy |\n|---|---|---|---|"
    )?;
    if let Some(map) = scores.as_object() {
        for (k, v) in map {
            writeln!(
                md,
                "| {k} | {} | {} | {} |",
                v["n"],
                fmt_f(&v["fd"], 2),
                fmt_f(&v["class_entropy"], 3)
            )?;
        }
    }
    writeln!(md, "\nFD: Fréchet distance to the Fashion-MNIST test set in the feature space of the built-in classifier.\n")?;

    writeln!(md, "## Samples\n")?;
    let grid = root.join("training_images.png");
    if dataset_grid(data, 64, &grid).is_ok() {
        writeln!(
            md,
            "Training images:\n\n![training images](training_images.png)\n"
        )?;
    }
    if let Some(map) = scores.as_object() {
        for k in map.keys() {
            if root.join("eval").join(format!("{k}.png")).exists() {
                writeln!(md, "{k}:\n\n![{k}](eval/{k}.png)\n")?;
            }
        }
    }

    writeln!(md, "## Training\n")?;
    let tune_label = match read_json(&tune.join("config.json"))["objective"]["kind"].as_str() {
        Some("ict") => "iCT training from scratch".to_owned(),
        Some("edm") => "EDM training".to_owned(),
        _ => "ECT tuning".to_owned(),
    };
    let mut series = Vec::new();
    for (label, dir) in [
        (tune_label.as_str(), Some(tune)),
        ("diffusion pretraining", pretrain),
    ] {
        let Some(dir) = dir else { continue };
        let curve = loss_curve(dir);
        if curve.is_empty() {
            continue;
        }
        let png = format!(
            "loss_{}.png",
            if label != "diffusion pretraining" {
                "tune"
            } else {
                "pretrain"
            }
        );
        let axes = Axes {
            title: format!("{label}: loss"),
            x_label: "step".into(),
            y_label: "loss".into(),
            log_x: false,
            log_y: curve.iter().all(|p| p.1 > 0.0),
        };
        plot::line_plot(
            &root.join(&png),
            &axes,
            &[Series {
                label: label.into(),
                points: curve,
                markers: false,
                color: None,
            }],
        )?;
        series.push((label, png));
    }
    for (label, png) in &series {
        writeln!(md, "{label}:\n\n![{label} loss]({png})\n")?;
    }
    let fd = fd_curves(tune);
    if !fd.is_empty() {
        plot::line_plot(
            &root.join("fd_tune.png"),
            &Axes {
                title: format!("{tune_label}: FD during training (EMA weights)"),
                x_label: "step".into(),
                y_label: "FD".into(),
                log_x: false,
                log_y: true,
            },
            &fd,
        )?;
        writeln!(
            md,
            "FD during training (`tune/fd.jsonl`):\n\n![FD during training](fd_tune.png)\n"
        )?;
    }
    writeln!(
        md,
        "| run | steps | images seen | images/s | non-finite steps |\n|---|---|---|---|---|"
    )?;
    for (label, dir) in [
        (tune_label.as_str(), Some(tune)),
        ("diffusion pretraining", pretrain),
    ] {
        let Some(dir) = dir else { continue };
        let s = read_json(&dir.join("summary.json"));
        writeln!(
            md,
            "| {label} | {} | {} | {} | {} |",
            s["steps"],
            s["images_seen"],
            fmt_f(&s["images_per_second"], 1),
            s["nonfinite_steps"]
        )?;
    }
    let timings = read_json(&root.join("timings.json"));
    if let Some(map) = timings.as_object() {
        writeln!(md, "\n| phase | wall time (min) |\n|---|---|")?;
        for (k, v) in map {
            writeln!(
                md,
                "| {k} | {} |",
                v.as_f64()
                    .map(|s| format!("{:.2}", s / 60.0))
                    .unwrap_or_default()
            )?;
        }
    }
    writeln!(md, "\n## Configuration\n\n```toml\n{exp}```")?;
    ect_config::atomic::write_atomic(&root.join("report.md"), md.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_curve_skips_torn_lines() {
        let dir = std::env::temp_dir().join(format!("xtask-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("stats.jsonl"),
            "{\"step\":10,\"loss\":1.5}\n{\"step\":20,\"loss\":1.25}\n{\"step\":3",
        )
        .unwrap();
        assert_eq!(loss_curve(&dir), vec![(10.0, 1.5), (20.0, 1.25)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dataset_grid_of_fashion_mnist() {
        let Some(dir) = ect_data::fmnist::locate(None) else {
            eprintln!("skipped: Fashion-MNIST is not installed");
            return;
        };
        let out = std::env::temp_dir().join(format!("xtask-grid-{}.png", std::process::id()));
        dataset_grid(&dir, 16, &out).unwrap();
        let img = image::open(&out).unwrap();
        assert_eq!((img.width(), img.height()), (4 * 28, 4 * 28));
        std::fs::remove_file(&out).unwrap();
    }
}
