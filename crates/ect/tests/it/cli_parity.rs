//! `ect parity` on malformed input: clear errors (exit status 2, never a panic), tolerance validation,
//! and exit status 1 reserved for "above the tolerance".

use std::path::{Path, PathBuf};

use crate::common;

use common::{ect, tmp};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ect-unet/tests/fixtures")
        .join(name)
}

/// Runs `ect parity --fixture DIR ARGS...` and returns (exit code, stderr).
fn parity(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = ect()
        .arg("parity")
        .arg("--fixture")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn nan_and_negative_tolerances_are_rejected() {
    let dir = fixture("unet-ddpmpp-tiny");
    for tol in ["nan", "-1", "inf", "x"] {
        let (code, err) = parity(&dir, &[&format!("--tol={tol}")]);
        assert_eq!(code, Some(2), "--tol {tol}: {err}");
        assert!(err.contains("--tol"), "--tol {tol}: {err}");
    }
    let (code, err) = parity(&dir, &["--tol", "0"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("above the tolerance"), "{err}");
}

#[test]
fn a_malformed_io_file_is_an_error_with_status_2_not_a_panic() {
    let dir = tmp("parity-malformed");
    let src = fixture("unet-adm-tiny");
    for f in ["meta.json", "weights.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    // An io file from another fixture: unconditional, so `class_labels` is missing.
    std::fs::copy(
        fixture("unet-ddpmpp-tiny").join("io.safetensors"),
        dir.join("io.safetensors"),
    )
    .unwrap();
    let (code, err) = parity(&dir, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no tensor `class_labels`"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let (code, err) = parity(&dir.join("missing"), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("meta.json"), "{err}");
    assert_eq!(
        err.matches("No such file").count(),
        1,
        "the cause is printed once: {err}"
    );
}

#[test]
fn help_documents_the_exit_statuses() {
    let out = ect().args(["parity", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Exit status") && text.contains("2 when"),
        "{text}"
    );
}
