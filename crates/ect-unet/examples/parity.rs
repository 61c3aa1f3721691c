//! Checks a fixture directory (or a checkpoint converted with `scripts/convert_edm_checkpoint.py --io`)
//! against its reference outputs: `cargo run -p ect-unet --example parity -- DIR [--tol 1e-4]`.
//! Exit status 1 above the tolerance, 2 on bad input.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut dir, mut tol) = (None, 1e-4);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--tol" => match it.next().and_then(|v| v.parse::<f64>().ok()) {
                Some(t) if t.is_finite() && t >= 0.0 => tol = t,
                _ => {
                    eprintln!("--tol needs a finite number >= 0");
                    return ExitCode::from(2);
                }
            },
            d => dir = Some(PathBuf::from(d)),
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: parity DIR [--tol 1e-4]");
        return ExitCode::from(2);
    };
    match ect_unet::check_fixture(&dir) {
        Ok(r) => {
            println!(
                "{}: {} relative error eval {:.3e}, train {:.3e} (tol {tol:.1e})",
                dir.display(),
                r.network,
                r.rel_err_eval,
                r.rel_err_train
            );
            if r.passes(tol) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            let mut msg = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                msg.push_str(&format!(": {c}"));
                cause = c.source();
            }
            eprintln!("{msg}");
            ExitCode::from(2)
        }
    }
}
