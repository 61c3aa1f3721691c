//! `cargo xtask bench --device cpu|cuda`: one table that says how a machine runs the project: `ect info`,
//! parity of every network fixture on the device, training-step images/s of the ECT, EDM and iCT
//! objectives (float32, bfloat16 autocast, and float16 with loss scaling on CUDA), and 1-step sampling
//! images/s.
//!
//! Everything runs through the `ect` binary (xtask links no torch): each step figure is an `ect train`
//! run on synthetic images whose second logging interval is read from `stats.jsonl` (the first one is
//! the warm-up), so it is exactly what a user's run does per step, data and EMA included. A step that was
//! skipped (non-finite loss) fails the benchmark. The CUDA configuration is the reference recipes'
//! (DDPM++ at batch 128, EDM2-S at batch 32); the CPU one is small enough for CI (a few minutes).
//!
//! Not measured: peak GPU memory (neither tch nor the project's shim binds libtorch's CUDA allocator
//! statistics; the table gives the host's peak resident memory) and all-reduce time (measured by
//! `ect-dist`'s own check, see its README).

use crate::ect::{args, p, Ect};
use crate::libtorch;
use anyhow::{bail, Context};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The largest parity error accepted (relative, `max|out - ref| / max|ref|`): the fixtures' own bound
/// for a float32 implementation. TF32 stays off (`ect parity` runs with libtorch's defaults).
pub const PARITY_TOL: f64 = 1e-4;

/// One network benchmarked: its `[network]` table and the synthetic data it needs.
struct NetCase {
    name: &'static str,
    table: &'static str,
    resolution: u32,
    channels: u32,
    label_dim: u32,
    batch: u64,
}

/// Steps per logging interval: the first interval warms up, the second is measured.
struct Plan {
    nets: Vec<NetCase>,
    precisions: Vec<&'static str>,
    interval: u64,
    sample_n: u64,
}

const DDPMPP: &str = "network = \"ECMPrecond\"\nimg_resolution = 32\nimg_channels = 3\n\
    model_type = \"SongUNet\"\nembedding_type = \"positional\"\nencoder_type = \"standard\"\n\
    decoder_type = \"standard\"\nchannel_mult_noise = 1\nresample_filter = [1, 1]\nmodel_channels = 128\n\
    channel_mult = [2, 2, 2]\nnum_blocks = 4\nattn_resolutions = [16]\ndropout = 0.2\n";

const EDM2_S: &str = "network = \"edm2.Precond\"\nimg_resolution = 64\nimg_channels = 3\n\
    label_dim = 1000\nmodel_channels = 192\nchannel_mult = [1, 2, 3, 4]\nnum_blocks = 3\n\
    attn_resolutions = [16, 8]\ndropout = 0.4\ndropout_res = 16\n";

const SMALL_SONG: &str = "network = \"ECMPrecond\"\nimg_resolution = 16\nimg_channels = 3\n\
    model_type = \"SongUNet\"\nmodel_channels = 32\nchannel_mult = [1, 2]\nnum_blocks = 1\n\
    attn_resolutions = [8]\ndropout = 0.1\n";

const SMALL_EDM2: &str = "network = \"edm2.Precond\"\nimg_resolution = 16\nimg_channels = 3\n\
    label_dim = 10\nmodel_channels = 32\nchannel_mult = [1, 2]\nnum_blocks = 1\n\
    attn_resolutions = [8]\ndropout = 0.1\ndropout_res = 16\n";

fn plan(cuda: bool) -> Plan {
    if cuda {
        Plan {
            nets: vec![
                NetCase {
                    name: "DDPM++ 32x32",
                    table: DDPMPP,
                    resolution: 32,
                    channels: 3,
                    label_dim: 0,
                    batch: 128,
                },
                NetCase {
                    name: "EDM2-S 64x64",
                    table: EDM2_S,
                    resolution: 64,
                    channels: 3,
                    label_dim: 1000,
                    batch: 32,
                },
            ],
            precisions: vec!["fp32", "bf16", "fp16"],
            interval: 10,
            sample_n: 1024,
        }
    } else {
        Plan {
            nets: vec![
                NetCase {
                    name: "small SongUNet 16x16",
                    table: SMALL_SONG,
                    resolution: 16,
                    channels: 3,
                    label_dim: 0,
                    batch: 16,
                },
                NetCase {
                    name: "small EDM2 16x16",
                    table: SMALL_EDM2,
                    resolution: 16,
                    channels: 3,
                    label_dim: 10,
                    batch: 8,
                },
            ],
            precisions: vec!["fp32", "bf16"],
            interval: 2,
            sample_n: 64,
        }
    }
}

/// Runs the device benchmark with `ect` and prints the table (Markdown).
pub fn run(device: &str, ect: &Ect) -> anyhow::Result<()> {
    let cuda = match device {
        "cpu" => false,
        d if d == "cuda" || d.starts_with("cuda:") => true,
        other => bail!("--device {other}: use cpu, cuda or cuda:N"),
    };
    let tmp = std::env::temp_dir().join(format!("ect-xtask-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = run_in(device, cuda, ect, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    let table = result?;
    println!("{table}");
    Ok(())
}

fn run_in(device: &str, cuda: bool, ect: &Ect, tmp: &Path) -> anyhow::Result<String> {
    let mut out = String::new();
    writeln!(out, "## `cargo xtask bench --device {device}`\n")?;
    let info = ect.run_json(&args(["info", "--json"]));
    match info {
        Ok(v) => writeln!(out, "`ect info`: `{v}`\n")?,
        Err(e) => writeln!(out, "`ect info` failed: {e:#}\n")?,
    }
    writeln!(
        out,
        "| parity fixture | device | out_eval rel err | out_train rel err | within {PARITY_TOL:.0e} |"
    )?;
    writeln!(out, "|---|---|---|---|---|")?;
    let fixtures = libtorch::workspace_root().join("crates/ect-unet/tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .with_context(|| format!("listing {}", fixtures.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|d| d.join("meta.json").exists())
        .collect();
    dirs.sort();
    for dir in &dirs {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let (eval, train, ok) = parity(ect, dir, device)?;
        writeln!(
            out,
            "| {name} | {device} | {eval} | {train} | {} |",
            if ok { "yes" } else { "**no**" }
        )?;
    }
    let plan = plan(cuda);
    writeln!(
        out,
        "\n| network | objective | precision | batch | train images/s | peak host RSS MiB | 1-step sampling images/s |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|")?;
    for (i, net) in plan.nets.iter().enumerate() {
        let data = tmp.join(format!("data-{i}"));
        write_images(&data, net, (2 * net.batch as usize).max(64))?;
        for precision in &plan.precisions {
            for objective in ["ect", "edm", "ict"] {
                let run = tmp.join(format!("run-{i}-{objective}-{precision}"));
                let cfg = tmp.join(format!("{objective}-{precision}-{i}.toml"));
                std::fs::write(
                    &cfg,
                    config(
                        net,
                        objective,
                        precision,
                        device,
                        &data,
                        &run,
                        plan.interval,
                    ),
                )?;
                let (ips, rss) = train(ect, &cfg, &run)?;
                // Sampling once per network and precision: the objectives share the network.
                let sampling = if objective == "ect" {
                    format!("{:.1}", sample(ect, &run, device, plan.sample_n, tmp)?)
                } else {
                    "-".to_owned()
                };
                writeln!(
                    out,
                    "| {} | {objective} | {precision} | {} | {ips:.2} | {rss:.0} | {sampling} |",
                    net.name, net.batch
                )?;
            }
        }
    }
    writeln!(
        out,
        "\nStep figures: second logging interval of {} steps after {} warm-up steps (data, EMA and \
         logging included). Peak GPU memory is not measured (the table gives host memory). All-reduce: \
         see crates/ect-dist/README.md (ect-dist-check).",
        plan.interval, plan.interval
    )?;
    Ok(out)
}

/// `ect parity` on `dir`: both relative errors as printed, and whether the check passed.
fn parity(ect: &Ect, dir: &Path, device: &str) -> anyhow::Result<(String, String, bool)> {
    let a = args([
        "parity",
        "--fixture",
        &p(dir),
        "--tol",
        &PARITY_TOL.to_string(),
        "--device",
        device,
    ]);
    let out = ect.output(&a)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let err = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or("-")
            .to_owned()
    };
    Ok((err("out_eval"), err("out_train"), out.status.success()))
}

/// The training configuration of one measurement: `2 * interval` steps, logged every `interval`.
fn config(
    net: &NetCase,
    objective: &str,
    precision: &str,
    device: &str,
    data: &Path,
    run: &Path,
    interval: u64,
) -> String {
    // EDM pretraining runs Adam (RAdam's un-adapted first steps diverge on its from-scratch gradients).
    let optimizer = if objective == "edm" {
        "[optimizer]\nkind = \"adam\"\n"
    } else {
        ""
    };
    format!(
        "seed = 0\ndevice = \"{device}\"\niterations = {iters}\nbatch_size = {batch}\n\
         precision = \"{precision}\"\n[data]\npath = {data:?}\nformat = \"edm\"\nconditional = {cond}\n\
         [network]\n{table}[objective]\nkind = \"{objective}\"\n{optimizer}\
         [output]\nrun_dir = {run:?}\ncheckpoint_every = 0\nsample_every = 0\nlog_every = {interval}\n",
        iters = 2 * interval,
        batch = net.batch,
        data = p(data),
        cond = net.label_dim > 0,
        table = net.table,
        run = p(run),
    )
}

/// Trains, then reads the measured interval's images/s and peak host memory from `stats.jsonl`.
fn train(ect: &Ect, cfg: &Path, run: &Path) -> anyhow::Result<(f64, f64)> {
    ect.run_json(&args(["train", "--config", &p(cfg), "--quiet"]))?;
    let stats = std::fs::read_to_string(run.join("stats.jsonl"))
        .with_context(|| format!("reading {}/stats.jsonl", run.display()))?;
    let records: Vec<Value> = stats
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("parsing stats.jsonl")?;
    let Some(last) = records.get(1) else {
        bail!("{}: expected two logging intervals", run.display());
    };
    if last["nonfinite_total"].as_u64() != Some(0) {
        bail!(
            "{}: a step had a non-finite loss; a skipped step is no measurement",
            run.display()
        );
    }
    Ok((
        last["images_per_sec"].as_f64().unwrap_or(f64::NAN),
        last["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
    ))
}

/// 1-step sampling images/s of a run's EMA weights (`ect sample` reports it).
fn sample(ect: &Ect, run: &Path, device: &str, n: u64, tmp: &Path) -> anyhow::Result<f64> {
    let out = tmp.join("samples.npy");
    let summary = ect.run_json(&args([
        "sample",
        "--from",
        &p(run),
        "--steps",
        "1",
        "--n",
        &n.to_string(),
        "--batch",
        &n.min(256).to_string(),
        "--device",
        device,
        "--out",
        &p(&out),
    ]))?;
    let _ = std::fs::remove_file(&out);
    summary["images_per_second"]
        .as_f64()
        .context("`ect sample` printed no images_per_second")
}

/// `n` synthetic PNG images of `net`'s shape in EDM's folder format, with `dataset.json` labels for a
/// conditional network.
fn write_images(dir: &Path, net: &NetCase, n: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut state = 11u32;
    let mut next = move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 24) as u8
    };
    let mut labels = Vec::new();
    for i in 0..n {
        let name = format!("img{i:05}.png");
        let (w, c) = (net.resolution, net.channels as usize);
        let pixels: Vec<u8> = (0..(w * w) as usize * c).map(|_| next()).collect();
        let path = dir.join(&name);
        match c {
            1 => image::GrayImage::from_raw(w, w, pixels).map(|im| im.save(&path)),
            _ => image::RgbImage::from_raw(w, w, pixels).map(|im| im.save(&path)),
        }
        .context("image buffer size")?
        .with_context(|| format!("writing {}", path.display()))?;
        if net.label_dim > 0 {
            labels.push(serde_json::json!([name, i as u32 % net.label_dim]));
        }
    }
    if net.label_dim > 0 {
        let json = serde_json::json!({ "labels": labels });
        std::fs::write(dir.join("dataset.json"), serde_json::to_vec(&json)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_parse_and_validate() {
        for cuda in [false, true] {
            for net in &plan(cuda).nets {
                for objective in ["ect", "edm", "ict"] {
                    let text = config(
                        net,
                        objective,
                        "fp32",
                        "cpu",
                        Path::new("/data"),
                        Path::new("/run"),
                        3,
                    );
                    let cfg = ect_config::TrainConfig::from_toml_str(&text, "<bench>", &[])
                        .unwrap_or_else(|e| panic!("{}: {e}", net.name));
                    assert_eq!((cfg.iterations, cfg.output.log_every), (6, 3));
                    assert_eq!(cfg.batch_size, net.batch);
                    assert_eq!(cfg.network.img_resolution(), i64::from(net.resolution));
                    assert_eq!(cfg.network.label_dim(), i64::from(net.label_dim));
                }
            }
        }
    }
}
