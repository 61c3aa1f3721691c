//! `ect train --profile N`: a Chrome trace of N training steps with the convolutions in it, a table of
//! self times on standard error, and no run directory written.

use crate::common::{idx_run_setup, train_command, TINY_TRAIN_CONFIG};

#[test]
fn profile_writes_a_trace_of_the_steps_and_no_run() {
    let (dir, cfg) = idx_run_setup("profile", 16, "train.toml", TINY_TRAIN_CONFIG);
    let run = dir.join("run");
    let trace = dir.join("trace.json");
    let out = train_command(&dir, &cfg, &run)
        .args(["--set", "threads=1", "--set", "batch_size=4"])
        .args(["--profile", "2", "--profile-trace"])
        .arg(&trace)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("profiled 2 step(s)"), "{stderr}");
    assert!(stderr.contains("| aten::"), "{stderr}");
    // The second table names operators with their input shapes (batch 4 of 8x8 images).
    assert!(stderr.contains("| operator and input shapes |"), "{stderr}");
    assert!(
        stderr.contains("aten::convolution_backward [4, "),
        "{stderr}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let names: Vec<&str> = json["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    // Two steps of a network with three 3x3 convolutions forward (more with the teacher) and backward.
    let convs = names.iter().filter(|n| **n == "aten::convolution").count();
    assert!(convs >= 2 * 6, "{convs} convolutions in the trace");
    assert!(names.contains(&"aten::convolution_backward"));
    assert!(!run.exists(), "--profile must not write the run directory");
    let _ = std::fs::remove_dir_all(&dir);
}
