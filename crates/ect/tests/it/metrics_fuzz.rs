//! Issue 15: `ect metrics` (`fd`, `stats --samples`, `score`, `compare`) driven with random `.npy` and
//! `.npz` files: random shapes (0-d, empty, huge declared dimensions over a few bytes, wrong rank), dtypes
//! (`<f4`, `<f8`, `|u1`, `<i8`, `>f4`, `|b1`, `<c8`, object, unicode, ...), Fortran order, truncated
//! or padded data, broken headers, NaN/inf and out-of-range values, statistics that are not covariances,
//! damaged archives. Every invocation must end, within a time bound, with status 0 or the tool's error
//! status 1 and an `error:` line: never a panic (101), an abort (134) or a signal.
//!
//! Each case draws from ChaCha8 seeded by `ECT_FUZZ_SEED` (default below) on stream = the case index, so
//! a failure reproduces alone: `ECT_FUZZ_SEED=S ECT_FUZZ_CASE=I cargo test -p ect --test it metrics_fuzz`.
//! `ECT_FUZZ_CASES=N` runs more cases (default [`DEFAULT_CASES`], a few tens of seconds);
//! `ECT_FUZZ_VERBOSE=1` prints every case's outcome (with `--nocapture`).

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::{ect, tmp};
use crate::npy_files::{header, npy, npz};

const DEFAULT_SEED: u64 = 15;
/// Cases per run of the test: about 0.5-1 s each on two shared cores (most time is libtorch's start).
const DEFAULT_CASES: u64 = 32;
/// The most one invocation may take; every input here is small, so only a hang comes near it.
const LIMIT: Duration = Duration::from_secs(60);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// `(descr, item size)`; the first three are what the tool reads, listed three times to be drawn more.
const DTYPES: [(&str, u64); 17] = [
    ("|u1", 1),
    ("<f4", 4),
    ("<f8", 8),
    ("|u1", 1),
    ("<f4", 4),
    ("<f8", 8),
    ("|u1", 1),
    ("<f4", 4),
    ("<f8", 8),
    (">f4", 4),
    ("<i8", 8),
    ("|b1", 1),
    ("<c8", 8),
    ("|O", 8),
    ("<U3", 12),
    ("<f2", 2),
    ("u1", 1),
];

struct Gen {
    rng: ChaCha8Rng,
}

impl Gen {
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        *items.choose(&mut self.rng).expect("non-empty")
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p)
    }

    /// Shapes the samples reader accepts most of the time, else anything.
    fn shape(&mut self) -> Vec<u64> {
        if self.chance(0.6) {
            let n = self.pick(&[0u64, 1, 2, 3, 5, 12]);
            let shapes: [&[u64]; 7] = [
                &[1, 28, 28],
                &[28, 28],
                &[28, 28, 1],
                &[3, 28, 28],
                &[28, 28, 3],
                &[1, 8, 8],
                &[2, 28, 28],
            ];
            let mut s = vec![n];
            s.extend_from_slice(self.pick(&shapes));
            s
        } else {
            let ndim = self.rng.gen_range(0..=5);
            let dims = [0u64, 1, 2, 3, 28, 1 << 20, 1 << 33, 1 << 62, u64::MAX];
            (0..ndim).map(|_| self.pick(&dims)).collect()
        }
    }

    /// Element bytes: floats drawn from one of several value ranges, anything else random.
    fn body(&mut self, descr: &str, count: u64, item: u64) -> (Vec<u8>, String) {
        let full = (count as u128) * (item as u128);
        let len = if full <= 1 << 21 {
            full as usize
        } else {
            self.rng.gen_range(0..4096)
        };
        let mode = self.pick(&["[-1,1]", "[0,1]", "0-255", "NaN", "inf", "1e300", "raw"]);
        let value = |rng: &mut ChaCha8Rng| -> f64 {
            match mode {
                "[-1,1]" => rng.gen_range(-1.0..=1.0),
                "[0,1]" => rng.gen_range(0.0..=1.0),
                "0-255" => rng.gen_range(0.0..=255.0f64).round(),
                "NaN" if rng.gen_bool(0.1) => f64::NAN,
                "inf" if rng.gen_bool(0.1) => f64::NEG_INFINITY,
                "1e300" => rng.gen_range(-1e300..1e300),
                _ => rng.gen_range(-1.0..=1.0),
            }
        };
        let mut out = Vec::with_capacity(len);
        match descr {
            "<f8" if mode != "raw" => {
                while out.len() + 8 <= len {
                    out.extend_from_slice(&value(&mut self.rng).to_le_bytes());
                }
            }
            "<f4" if mode != "raw" => {
                while out.len() + 4 <= len {
                    out.extend_from_slice(&(value(&mut self.rng) as f32).to_le_bytes());
                }
            }
            _ => {}
        }
        while out.len() < len {
            out.push(self.rng.gen());
        }
        (out, format!("values {mode}, {len} of {full} bytes"))
    }

    /// A random `.npy`, with a description of what was drawn: two in five are clean samples files of 28x28
    /// grayscale images (so that the extractor, the statistics and the metrics run too), the rest
    /// anything.
    fn npy(&mut self) -> (Vec<u8>, String) {
        if self.chance(0.4) {
            let descr = self.pick(&["|u1", "<f4", "<f8"]);
            let n = self.pick(&[2u64, 3, 5, 12]);
            let dims: [&[u64]; 3] = [&[1, 28, 28], &[28, 28], &[28, 28, 1]];
            let mut shape = vec![n];
            shape.extend_from_slice(self.pick(&dims));
            let count = n * 784;
            let body: Vec<u8> = match descr {
                "|u1" => (0..count).map(|_| self.rng.gen()).collect(),
                "<f4" => (0..count)
                    .flat_map(|_| self.rng.gen_range(-1.0f32..=1.0).to_le_bytes())
                    .collect(),
                _ => (0..count)
                    .flat_map(|_| self.rng.gen_range(-1.0f64..=1.0).to_le_bytes())
                    .collect(),
            };
            let what = format!("clean {descr} {shape:?}");
            return (npy(header(descr, false, &shape).as_bytes(), 1, &body), what);
        }
        let (descr, item) = self.pick(&DTYPES);
        let shape = self.shape();
        let count = shape
            .iter()
            .fold(1u128, |a, &d| a.saturating_mul(d as u128));
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        let (mut body, values) = self.body(descr, count, item);
        let mut what = format!("{descr} {shape:?}, {values}");
        if self.chance(0.15) && !body.is_empty() {
            let keep = self.rng.gen_range(0..body.len());
            body.truncate(keep);
            what += &format!(", cut to {keep} bytes");
        } else if self.chance(0.1) {
            body.extend((0..self.rng.gen_range(1..100)).map(|_| 7u8));
            what += ", extra bytes";
        }
        let mut text = header(descr, false, &shape).into_bytes();
        let mut version = 1;
        if self.chance(0.2) {
            let damage = self.pick(&[
                "fortran",
                "shape -1",
                "shape 2.5",
                "nested shape",
                "shape (",
                "list shape",
                "no descr",
                "not utf-8",
                "no brace",
                "version 2",
                "version 3",
                "version 9",
            ]);
            let t = String::from_utf8(text.clone()).expect("ascii");
            text = match damage {
                "fortran" => header(descr, true, &shape).into_bytes(),
                "shape -1" => t.replace("'shape': (", "'shape': (-1, ").into_bytes(),
                "shape 2.5" => t.replace("'shape': (", "'shape': (2.5, ").into_bytes(),
                "nested shape" => t.replace("'shape': (", "'shape': ((1, 2), ").into_bytes(),
                "shape (" => t.replace("'shape': (", "'shape': ((").into_bytes(),
                "list shape" => t.replace("'shape': (", "'shape': [").into_bytes(),
                "no descr" => t.replace("'descr'", "'dtype'").into_bytes(),
                "not utf-8" => {
                    let mut b = t.into_bytes();
                    b[3] = 0xff;
                    b
                }
                "no brace" => t.replace('}', " ").into_bytes(),
                _ => text,
            };
            version = match damage {
                "version 2" => 2,
                "version 3" => 3,
                "version 9" => 9,
                _ => 1,
            };
            what += &format!(", header damage: {damage}");
        }
        let mut bytes = npy(&text, version, &body);
        if self.chance(0.08) {
            let damage = self.pick(&["length", "magic", "cut in header", "tiny"]);
            match damage {
                "length" => {
                    bytes[8] = 0xff;
                    bytes[9] = 0x7f;
                }
                "magic" => bytes[1] = b'X',
                "cut in header" => {
                    let keep = self.rng.gen_range(0..bytes.len().min(80));
                    bytes.truncate(keep);
                }
                _ => {
                    bytes = (0..self.rng.gen_range(0..12))
                        .map(|_| self.rng.gen())
                        .collect()
                }
            }
            what += &format!(", file damage: {damage}");
        }
        (bytes, what)
    }

    /// Statistics `.npz` bytes: mostly `mu`/`sigma` of dimension `d`, with a covariance of some kind, a
    /// wrong member now and then, and damage.
    fn stats(&mut self, d: usize) -> (Vec<u8>, String) {
        let kind = self.pick(&[
            "psd", "psd", "psd", "-I", "asym", "zeros", "NaN", "inf", "1e200",
        ]);
        let mu: Vec<f64> = (0..d).map(|_| self.rng.gen_range(-3.0..3.0)).collect();
        let a: Vec<f64> = (0..d * d).map(|_| self.rng.gen_range(-1.0..1.0)).collect();
        let mut sigma: Vec<f64> = (0..d * d)
            .map(|k| {
                let (i, j) = (k / d, k % d);
                (0..d).map(|m| a[i * d + m] * a[j * d + m]).sum()
            })
            .collect();
        match kind {
            "-I" => sigma
                .iter_mut()
                .enumerate()
                .for_each(|(k, s)| *s = if k % (d + 1) == 0 { -1.0 } else { 0.0 }),
            "asym" if d > 1 => sigma[1] += 0.5,
            "zeros" => sigma.fill(0.0),
            "NaN" if d > 0 => sigma[0] = f64::NAN,
            "inf" if d > 0 => sigma[d * d - 1] = f64::INFINITY,
            "1e200" => sigma.iter_mut().for_each(|s| *s *= 1e200),
            _ => {}
        }
        let f4 = self.chance(0.2);
        let encode = |shape: &[u64], v: &[f64]| -> Vec<u8> {
            if f4 {
                let body: Vec<u8> = v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
                npy(header("<f4", false, shape).as_bytes(), 1, &body)
            } else {
                let body: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                npy(header("<f8", false, shape).as_bytes(), 1, &body)
            }
        };
        let d64 = d as u64;
        let mut members = vec![
            ("mu", encode(&[d64], &mu)),
            ("sigma", encode(&[d64, d64], &sigma)),
        ];
        let mut what = format!("stats d={d} sigma {kind}{}", if f4 { " f4" } else { "" });
        if self.chance(0.3) {
            let counts: [(&[u64], &[f64]); 6] = [
                (&[], &[4.0]),
                (&[], &[-1.0]),
                (&[], &[1.5]),
                (&[2], &[1.0, 2.0]),
                (&[], &[f64::NAN]),
                (&[], &[1e30]),
            ];
            let (n, label) = self.pick(&counts);
            members.push(("num_samples", encode(n, label)));
            what += &format!(", num_samples {label:?}");
        }
        if self.chance(0.25) {
            let k = self.rng.gen_range(0..members.len());
            let (bytes, w) = self.npy();
            what += &format!(", {} replaced by {w}", members[k].0);
            members[k].1 = bytes;
        }
        if self.chance(0.1) {
            let k = self.rng.gen_range(0..members.len());
            what += &format!(", {} missing", members[k].0);
            members.remove(k);
        }
        let deflate = self.chance(0.3);
        let mut bytes = npz(&members, deflate);
        if self.chance(0.1) {
            let keep = self.rng.gen_range(0..bytes.len());
            bytes.truncate(keep);
            what += &format!(", archive cut to {keep} bytes");
        } else if self.chance(0.05) {
            let at = self.rng.gen_range(0..bytes.len());
            bytes[at] ^= 0x5a;
            what += &format!(", archive byte {at} flipped");
        }
        (bytes, what)
    }
}

/// One invocation's outcome: exit code, signal, standard error, time taken.
struct Ran {
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
    took: Duration,
}

fn run(args: &[OsString], dir: &Path) -> Ran {
    let err_path = dir.join("stderr.txt");
    let mut child = ect()
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ran {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        took: start.elapsed(),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Random `--layout`, `--range` and `--batch` options.
fn options(g: &mut Gen, args: &mut Vec<OsString>) {
    if g.chance(0.3) {
        args.push("--layout".into());
        args.push(g.pick(&["auto", "nchw", "nhwc"]).into());
    }
    if g.chance(0.3) {
        args.push(g.pick(&["--range=-1,1", "--range=0,1"]).into());
    }
    if g.chance(0.2) {
        args.push("--batch".into());
        args.push(g.pick(&["1", "3"]).into());
    }
}

/// The arguments of case `index` (files written under `dir`) and what was drawn.
fn case(seed: u64, index: u64, dir: &Path, net: &Path) -> (Vec<OsString>, String) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    let mut g = Gen { rng };
    let mut args: Vec<OsString> = vec!["metrics".into()];
    let mut what = Vec::new();
    match g.rng.gen_range(0..4) {
        0 => {
            let d = g.pick(&[1, 2, 3, 128]);
            args.push("fd".into());
            for name in ["a.npz", "b.npz"] {
                let (bytes, w) = g.stats(d);
                args.push(write(dir, name, &bytes).into());
                what.push(format!("{name}: {w}"));
            }
        }
        1 => {
            let (bytes, w) = g.npy();
            what.push(format!("samples.npy: {w}"));
            args.push("stats".into());
            args.push("--feature-net".into());
            args.push(net.into());
            args.push("--samples".into());
            args.push(write(dir, "samples.npy", &bytes).into());
            args.push("--out".into());
            args.push(dir.join("out.npz").into());
            options(&mut g, &mut args);
        }
        2 => {
            let (bytes, w) = g.npy();
            what.push(format!("samples.npy: {w}"));
            let d = if g.chance(0.8) { 128 } else { 3 };
            let (reference, r) = g.stats(d);
            what.push(format!("ref.npz: {r}"));
            args.push("score".into());
            args.push("--samples".into());
            args.push(write(dir, "samples.npy", &bytes).into());
            args.push("--feature-net".into());
            args.push(net.into());
            args.push("--reference".into());
            args.push(write(dir, "ref.npz", &reference).into());
            options(&mut g, &mut args);
        }
        _ => {
            args.push("compare".into());
            for (flag, name) in [("--samples", "samples.npy"), ("--reference", "ref.npy")] {
                let (bytes, w) = g.npy();
                what.push(format!("{name}: {w}"));
                args.push(flag.into());
                args.push(write(dir, name, &bytes).into());
            }
            args.push("--feature-net".into());
            args.push(net.into());
            for a in ["--kid-subsets", "3", "--kid-subset-size", "4", "--k", "2"] {
                args.push(a.into());
            }
            options(&mut g, &mut args);
        }
    }
    (args, what.join("; "))
}

#[test]
fn metrics_commands_never_panic_on_random_npy_and_npz_files() {
    let seed = env_u64("ECT_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let cases: Vec<u64> = match env_u64("ECT_FUZZ_CASE") {
        Some(i) => vec![i],
        None => (0..env_u64("ECT_FUZZ_CASES").unwrap_or(DEFAULT_CASES)).collect(),
    };
    let verbose = std::env::var_os("ECT_FUZZ_VERBOSE").is_some();
    let root = tmp("harden-metrics-fuzz");
    let net = crate::feature_net(&root);
    let started = Instant::now();
    let (mut failures, mut ok, mut errors) = (Vec::new(), 0, 0);
    for &i in &cases {
        let dir = root.join(format!("case-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (args, what) = case(seed, i, &dir, &net);
        let r = run(&args, &dir);
        if verbose {
            let first = r.stderr.lines().next().unwrap_or("(no message)");
            eprintln!(
                "case {i}: {:?} {:.1} s {}: {what}\n  {first}",
                r.code,
                r.took.as_secs_f64(),
                args[1].to_string_lossy()
            );
        }
        let tool_error = r.code == Some(1) && r.stderr.starts_with("error: ");
        let fine = (r.code == Some(0) || tool_error) && !r.stderr.contains("panicked");
        if fine {
            ok += usize::from(r.code == Some(0));
            errors += usize::from(r.code == Some(1));
            std::fs::remove_dir_all(&dir).unwrap();
        } else {
            let cmd: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
            failures.push(format!(
                "case {i} (reproduce: ECT_FUZZ_SEED={seed} ECT_FUZZ_CASE={i}), {}\n  ect {}\n  \
                 files: {what}\n  exit code {:?}, signal {:?}, after {:.1} s\n  stderr: {}",
                if r.code.is_none() && r.signal.is_none() {
                    format!("killed after the {LIMIT:?} limit")
                } else {
                    "bad exit".into()
                },
                cmd.join(" "),
                r.code,
                r.signal,
                r.took.as_secs_f64(),
                r.stderr.trim()
            ));
        }
    }
    eprintln!(
        "metrics fuzz: seed {seed}, {} cases in {:.1} s: {ok} succeeded, {errors} refused with an error",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    std::fs::remove_dir_all(&root).unwrap();
}
