//! `ect-dist-check`: checks a distributed set-up end to end, and measures all-reduce bandwidth.
//!
//! Run it under any launcher: its own (`--nproc-per-node N`), torchrun
//! (`torchrun --nproc-per-node 2 --no-python ect-dist-check check`) or `srun`. Every rank verifies the
//! numbers it receives and exits non-zero on a mismatch; rank 0 prints what it measured.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ect_dist::launch::{launch, LaunchSpec};
use ect_dist::{Backend, Dist, ReduceOp, DEFAULT_BUCKET_BYTES};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Parser)]
#[command(about = "Checks ect-dist collectives across processes and measures all-reduce bandwidth")]
struct Cli {
    /// Start this many local workers of this same command (like torchrun --standalone).
    #[arg(long, global = true)]
    nproc_per_node: Option<usize>,
    /// Timeout of the rendezvous and of each collective, in seconds.
    #[arg(long, default_value_t = 60.0, global = true)]
    timeout_s: f64,
    /// Use NCCL for CUDA tensors (device = local rank).
    #[arg(long, global = true)]
    nccl: bool,
    /// Fault injection for restart checks under torchrun: the last rank exits with code 1 right after
    /// joining when TORCHELASTIC_RESTART_COUNT equals this.
    #[arg(long, global = true, hide = true)]
    fail_on_attempt: Option<u32>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Verify all-reduce (sum, mean, max; single and bucketed), broadcast, scalars and barrier.
    Check,
    /// Time all-reduce (mean) of one large float32 tensor and of the same numbers in many tensors.
    Bench {
        /// Elements in all (DDPM++ on CIFAR-10 has about 56M parameters).
        #[arg(long, default_value_t = 56_000_000)]
        numel: i64,
        /// Timed repetitions (after one warm-up).
        #[arg(long, default_value_t = 5)]
        iters: usize,
        /// Bucket size in MiB for the bucketed variant.
        #[arg(long, default_value_t = 25.0)]
        bucket_mib: f64,
        /// Number of tensors the bucketed variant splits the elements into.
        #[arg(long, default_value_t = 300)]
        tensors: i64,
    },
    /// Fault injection for the tests: rank `rank` sleeps `secs` while the others all-reduce, and each
    /// other rank prints how its all-reduce ended.
    #[command(hide = true)]
    Stall {
        /// The rank that does not join.
        #[arg(long)]
        rank: usize,
        /// How long it sleeps.
        #[arg(long, default_value_t = 300.0)]
        secs: f64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(nproc) = cli.nproc_per_node {
        // Re-launch this command without --nproc-per-node as `nproc` workers.
        let exe = std::env::current_exe().context("locating this program")?;
        let mut args: Vec<String> = Vec::new();
        let mut skip = false;
        for arg in std::env::args().skip(1) {
            if skip {
                skip = false;
            } else if arg == "--nproc-per-node" {
                skip = true;
            } else if !arg.starts_with("--nproc-per-node=") {
                args.push(arg);
            }
        }
        launch(&LaunchSpec::new(exe, args, nproc))?;
        return Ok(());
    }
    let timeout = Duration::from_secs_f64(cli.timeout_s);
    let backend = if cli.nccl {
        Backend::Nccl
    } else {
        Backend::Gloo
    };
    let started = Instant::now();
    let env = ect_dist::DistEnv::from_process_env()?;
    let dist = Dist::new(env, backend, timeout)?;
    let store = dist.env().rendezvous.as_ref().map(|r| r.store.clone());
    if let (Some(attempt), Some(ect_dist::StoreHost::Agent { restart_count })) =
        (cli.fail_on_attempt, &store)
    {
        if *restart_count == attempt && dist.rank() + 1 == dist.world_size() {
            println!(
                "rank {} failing on purpose in attempt {attempt}",
                dist.rank()
            );
            drop(dist);
            std::process::exit(1);
        }
    }
    if dist.is_main() {
        println!(
            "joined: world_size={} launcher={} store={store:?} backend={:?} device={:?} in {:.2} s",
            dist.world_size(),
            dist.env().launcher,
            dist.backend(),
            dist.device(),
            started.elapsed().as_secs_f64()
        );
    }
    match cli.command {
        Cmd::Check => check(&dist)?,
        Cmd::Bench {
            numel,
            iters,
            bucket_mib,
            tensors,
        } => bench(&dist, numel, iters, bucket_mib, tensors)?,
        Cmd::Stall { rank, secs } => {
            if !stall(&dist, rank, secs) {
                // Dropping a failed group must not hang either (its backends are left to the OS).
                drop(dist);
                std::process::exit(3);
            }
        }
    }
    dist.shutdown()?;
    Ok(())
}

/// Rank `r`'s contribution: `(r + 1) * (i + offset)` for element `i`.
fn contribution(numel: i64, offset: i64, rank: usize, kind: Kind, device: Device) -> Tensor {
    (Tensor::arange(numel, (Kind::Float, device)) + offset as f64)
        .g_mul_scalar(rank as f64 + 1.0)
        .to_kind(kind)
}

/// The largest absolute difference between `t` and `expected`.
fn max_diff(t: &Tensor, expected: &Tensor) -> f64 {
    (t.to_kind(Kind::Double) - expected.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn check(dist: &Dist) -> anyhow::Result<()> {
    let (rank, world) = (dist.rank(), dist.world_size());
    let device = dist.device();
    let w = world as f64;
    // Sum over ranks of (r + 1) = W(W + 1)/2.
    let sum_factor = w * (w + 1.0) / 2.0;

    let mut t = contribution(1000, 0, rank, Kind::Float, device);
    dist.all_reduce_sum(&mut t)?;
    let err_sum = max_diff(
        &t,
        &contribution(1000, 0, 0, Kind::Float, device).g_mul_scalar(sum_factor),
    );

    let mut t = contribution(1000, 0, rank, Kind::Float, device);
    dist.all_reduce_mean(&mut t)?;
    let err_mean = max_diff(
        &t,
        &contribution(1000, 0, 0, Kind::Float, device).g_mul_scalar(sum_factor / w),
    );

    let mut t = contribution(10, 0, rank, Kind::Float, device);
    dist.all_reduce(&mut t, ReduceOp::Max)?;
    let err_max = max_diff(&t, &contribution(10, 0, world - 1, Kind::Float, device));

    // Many tensors of mixed sizes, two dtypes and a non-contiguous one, through small buckets so that
    // there are many buckets, single-tensor buckets and tensors larger than a bucket.
    let sizes: Vec<i64> = (0..240)
        .map(|i| [1, 3, 17, 256, 1000, 4099][i % 6] * (1 + (i as i64 % 5)))
        .collect();
    let make = |r: usize| -> Vec<Tensor> {
        let mut ts: Vec<Tensor> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let kind = if i % 7 == 3 {
                    Kind::Double
                } else {
                    Kind::Float
                };
                contribution(n, i as i64, r, kind, device)
            })
            .collect();
        ts.push(contribution(300_000, 5, r, Kind::Float, device));
        ts.push(
            contribution(12, 1, r, Kind::Float, device)
                .view([3, 4])
                .tr(),
        );
        ts
    };
    let mut tensors = make(rank);
    let expected_sum: Vec<Tensor> = make(0).iter().map(|t| t.g_mul_scalar(sum_factor)).collect();
    dist.all_reduce_bucketed(&mut tensors, ReduceOp::Sum, 64 * 1024)?;
    let err_bucketed_sum = tensors
        .iter()
        .zip(&expected_sum)
        .map(|(t, e)| max_diff(t, e))
        .fold(0.0, f64::max);
    let mut tensors = make(rank);
    dist.all_reduce_bucketed(&mut tensors, ReduceOp::Mean, 64 * 1024)?;
    let err_bucketed_mean = tensors
        .iter()
        .zip(&expected_sum)
        .map(|(t, e)| max_diff(t, &e.g_div_scalar(w)))
        .fold(0.0, f64::max);
    let non_contiguous_ok = tensors.last().is_some_and(|t| t.size() == [4, 3]);

    // Broadcast from the last rank, many tensors at once.
    let root = world - 1;
    let mut tensors: Vec<Tensor> = (0..20)
        .map(|i| {
            if rank == root {
                contribution(100 + i, i, 0, Kind::Float, device)
            } else {
                Tensor::zeros([100 + i], (Kind::Float, device))
            }
        })
        .collect();
    dist.broadcast_bucketed(&mut tensors, root, DEFAULT_BUCKET_BYTES)?;
    let err_broadcast = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            max_diff(
                t,
                &contribution(100 + i as i64, i as i64, 0, Kind::Float, device),
            )
        })
        .fold(0.0, f64::max);

    let r = rank as f64;
    let mut scalars = [r, 1.0, r * r, 0.5];
    dist.all_reduce_f64(&mut scalars, ReduceOp::Sum)?;
    let mut maxima = [r, 10.0 - r];
    dist.all_reduce_f64(&mut maxima, ReduceOp::Max)?;
    dist.barrier()?;

    let errors = [
        ("all_reduce_sum", err_sum),
        ("all_reduce_mean", err_mean),
        ("all_reduce_max", err_max),
        ("bucketed_sum", err_bucketed_sum),
        ("bucketed_mean", err_bucketed_mean),
        ("broadcast", err_broadcast),
    ];
    if rank == 0 {
        for (name, err) in errors {
            println!("max_abs_error {name} {err:e}");
        }
        println!(
            "scalars_sum {} {} {} {}",
            scalars[0], scalars[1], scalars[2], scalars[3]
        );
        println!("scalars_max {} {}", maxima[0], maxima[1]);
    }
    // Bucketed mean divides float32 values up to ~1e6 by the world size: allow float32 rounding.
    let bad: Vec<String> = errors
        .iter()
        .filter(|(_, err)| *err > 1e-3)
        .map(|(name, err)| format!("{name} off by {err}"))
        .collect();
    if !bad.is_empty() || !non_contiguous_ok {
        bail!("rank {rank}: wrong results: {}", bad.join(", "));
    }
    Ok(())
}

fn bench(
    dist: &Dist,
    numel: i64,
    iters: usize,
    bucket_mib: f64,
    pieces: i64,
) -> anyhow::Result<()> {
    let device = dist.device();
    let bytes = numel as f64 * 4.0;
    let bucket_bytes = (bucket_mib * 1024.0 * 1024.0) as usize;
    let mut one = Tensor::ones([numel], (Kind::Float, device));
    let piece = numel / pieces;
    let mut many: Vec<Tensor> = (0..pieces)
        .map(|i| {
            let n = if i == pieces - 1 {
                numel - piece * (pieces - 1)
            } else {
                piece
            };
            Tensor::ones([n], (Kind::Float, device))
        })
        .collect();
    let time =
        |f: &mut dyn FnMut() -> Result<(), ect_dist::DistError>| -> anyhow::Result<Vec<f64>> {
            f()?;
            let mut secs = Vec::with_capacity(iters);
            for _ in 0..iters {
                dist.barrier()?;
                let start = Instant::now();
                f()?;
                secs.push(start.elapsed().as_secs_f64());
            }
            Ok(secs)
        };
    let single = time(&mut || dist.all_reduce_mean(&mut one))?;
    let bucketed = time(&mut || dist.all_reduce_bucketed(&mut many, ReduceOp::Mean, bucket_bytes))?;
    if dist.is_main() {
        let w = dist.world_size() as f64;
        for (name, secs) in [("one tensor", &single), ("bucketed", &bucketed)] {
            let mut sorted = secs.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            // Bus bandwidth as nccl-tests defines it for all-reduce: bytes * 2(W-1)/W per second.
            println!(
                "all_reduce {name}: {numel} float32 ({:.0} MB) x {} ranks: median {:.3} s (min {:.3}, max {:.3}), algbw {:.2} GB/s, busbw {:.2} GB/s",
                bytes / 1e6,
                dist.world_size(),
                median,
                sorted[0],
                sorted[sorted.len() - 1],
                bytes / median / 1e9,
                bytes * 2.0 * (w - 1.0) / w / median / 1e9,
            );
        }
        if pieces > 0 {
            println!("bucketed: {pieces} tensors, {bucket_mib} MiB buckets");
        }
    }
    Ok(())
}

/// Returns whether this rank's part went through.
fn stall(dist: &Dist, stalled: usize, secs: f64) -> bool {
    if dist.rank() == stalled {
        println!("rank {stalled} stalling");
        std::thread::sleep(Duration::from_secs_f64(secs));
        return true;
    }
    // Let the stalled rank announce itself first (the test waits for that line before acting).
    std::thread::sleep(Duration::from_millis(200));
    println!("rank {} entering all_reduce", dist.rank());
    let mut t = Tensor::ones([1000], (Kind::Float, Device::Cpu));
    let start = Instant::now();
    let result = dist.all_reduce_sum(&mut t);
    let elapsed = start.elapsed().as_secs_f64();
    match result {
        Ok(()) => {
            println!("rank {} all_reduce ok after {elapsed:.3} s", dist.rank());
            true
        }
        Err(e) => {
            println!(
                "rank {} all_reduce failed after {elapsed:.3} s: {e}",
                dist.rank()
            );
            // A broken group refuses further work with an error too.
            if let Err(again) = dist.barrier() {
                println!("rank {} then: {again}", dist.rank());
            }
            false
        }
    }
}
