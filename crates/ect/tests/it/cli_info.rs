//! `ect info` is the first proof that the libtorch bootstrap works: it must run without
//! `LD_LIBRARY_PATH` (rpath) and report the libtorch it actually loaded.

use crate::common;

use common::ect;
use std::path::{Path, PathBuf};

/// The libtorch library folder this test binary was built against (set by `ect-torch-link`).
fn build_lib() -> PathBuf {
    Path::new(env!("ECT_LIBTORCH_LIB")).canonicalize().unwrap()
}

fn canonical(value: &serde_json::Value) -> PathBuf {
    Path::new(
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a path: {value}")),
    )
    .canonicalize()
    .unwrap()
}

#[test]
fn info_runs_without_ld_library_path_and_reports_libtorch() {
    let out = ect().arg("info").output().expect("run ect info");
    assert!(
        out.status.success(),
        "ect info failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap_or_default();
    let want = format!("libtorch 2.11.0 (loaded from {})", build_lib().display());
    assert_eq!(first, want, "full output: {text}");
    assert!(text.contains("cpu threads: "), "{text}");
    let cuda_line = text.lines().any(|l| l.starts_with("cuda"));
    assert!(cuda_line, "no CUDA line in: {text}");
    let nccl = text
        .lines()
        .find(|l| l.starts_with("nccl (multi-GPU): "))
        .unwrap_or_else(|| panic!("no NCCL line in: {text}"));
    let built = ect_dist::nccl_available();
    assert_eq!(nccl.ends_with(": built"), built, "{nccl}");
    assert_eq!(nccl.contains("not built: "), !built, "{nccl}");
}

#[test]
fn info_json_is_machine_readable() {
    let out = ect()
        .args(["info", "--json"])
        .output()
        .expect("run ect info --json");
    assert!(out.status.success());
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(value["libtorch_version"], "2.11.0");
    assert_eq!(value["libtorch_version_source"], "loaded");
    assert_eq!(value["libtorch_loaded_version"], "2.11.0");
    assert_eq!(value["libtorch_build_version"], "2.11.0");
    assert_eq!(canonical(&value["libtorch_lib"]), build_lib());
    assert_eq!(canonical(&value["libtorch_loaded_lib"]), build_lib());
    assert_eq!(canonical(&value["libtorch_build_lib"]), build_lib());
    assert!(value["cpu_threads"].as_i64().unwrap() >= 1);
    assert_eq!(value["nccl_built"], ect_dist::nccl_available());
    assert_eq!(value["nccl_status"], ect_dist::NCCL_STATUS);
    let devices = value["cuda_devices"].as_array().unwrap();
    assert_eq!(
        devices.is_empty(),
        !value["cuda_available"].as_bool().unwrap()
    );
}

/// A libtorch picked up through `LD_LIBRARY_PATH` is the one reported, with a warning: a second install
/// made of hard links to the real libraries (no copy), whose `version.py` says 2.10.0.
#[test]
fn info_reports_the_libtorch_the_loader_picked() {
    let real = build_lib();
    let site =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("info-other-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&site);
    let lib = site.join("torch/lib");
    std::fs::create_dir_all(&lib).unwrap();
    for entry in std::fs::read_dir(&real).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_type().unwrap().is_file() {
            continue;
        }
        if let Err(err) = std::fs::hard_link(entry.path(), lib.join(entry.file_name())) {
            // Only possible when libtorch lives on another file system than target/ (a user's LIBTORCH).
            eprintln!(
                "skipped: cannot hard-link {} ({err})",
                entry.path().display()
            );
            std::fs::remove_dir_all(&site).unwrap();
            return;
        }
    }
    // A PyTorch wheel's libtorch_cuda finds the CUDA libraries through $ORIGIN/../../nvidia.
    let nvidia = real.join("../../nvidia");
    if nvidia.is_dir() {
        std::os::unix::fs::symlink(nvidia.canonicalize().unwrap(), site.join("nvidia")).unwrap();
    }
    std::fs::write(site.join("torch/version.py"), "__version__ = '2.10.0'\n").unwrap();
    let out = ect()
        .args(["info", "--json"])
        .env("LD_LIBRARY_PATH", &lib)
        .output()
        .expect("run ect info --json");
    std::fs::remove_dir_all(&site).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(value["libtorch_version"], "2.10.0");
    assert_eq!(value["libtorch_version_source"], "loaded");
    assert_eq!(value["libtorch_build_version"], "2.11.0");
    let loaded = PathBuf::from(value["libtorch_loaded_lib"].as_str().unwrap());
    assert_eq!(loaded.file_name().unwrap(), "lib");
    assert!(
        loaded.ends_with(format!("info-other-{}/torch/lib", std::process::id())),
        "{loaded:?}"
    );
    assert!(
        stderr.contains("warning: loaded libtorch 2.10.0 from ")
            && stderr.contains("built against libtorch 2.11.0")
            && stderr.contains("unset LD_LIBRARY_PATH"),
        "{stderr}"
    );
}
