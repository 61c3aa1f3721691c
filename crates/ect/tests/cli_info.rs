//! `ect info` is the first proof that the libtorch bootstrap works: it must run without
//! `LD_LIBRARY_PATH` (rpath) and report the libtorch it was built against.

mod common;

use common::ect;

#[test]
fn info_runs_without_ld_library_path_and_reports_libtorch() {
    let out = ect().arg("info").output().expect("run ect info");
    assert!(
        out.status.success(),
        "ect info failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("libtorch 2.11.0 "),
        "unexpected first line: {text}"
    );
    assert!(text.contains("cpu threads: "), "{text}");
    let cuda_line = text.lines().any(|l| l.starts_with("cuda"));
    assert!(cuda_line, "no CUDA line in: {text}");
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
    assert!(value["cpu_threads"].as_i64().unwrap() >= 1);
    let devices = value["cuda_devices"].as_array().unwrap();
    assert_eq!(
        devices.is_empty(),
        !value["cuda_available"].as_bool().unwrap()
    );
}
