//! `ect train --profile N`: a Chrome trace of N training steps with the convolutions in it, a table of
//! self times on standard error, and no run directory written.

use crate::common::{ect, tmp, write_idx};

const CONFIG: &str = r#"
seed = 1
device = "cpu"
threads = 1
iterations = 100
batch_size = 4
[data]
format = "idx"
[network]
network = "ECMPrecond"
img_resolution = 8
img_channels = 1
model_type = "SongUNet"
model_channels = 8
channel_mult = [1]
channel_mult_emb = 2
num_blocks = 1
attn_resolutions = []
dropout = 0.1
"#;

#[test]
fn profile_writes_a_trace_of_the_steps_and_no_run() {
    let dir = tmp("profile");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_idx(
        &data,
        "train",
        (16, 8, 8),
        |i, p| (i * 7 + p) as u8,
        |i| (i % 10) as u8,
    );
    let cfg = dir.join("train.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let run = dir.join("run");
    let trace = dir.join("trace.json");
    let out = ect()
        .args(["train", "--config"])
        .arg(&cfg)
        .arg("--set")
        .arg(format!("data.path={:?}", data.display().to_string()))
        .arg("--set")
        .arg(format!("output.run_dir={:?}", run.display().to_string()))
        .args(["--profile", "2", "--profile-trace"])
        .arg(&trace)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("profiled 2 step(s)"), "{stderr}");
    assert!(stderr.contains("| aten::"), "{stderr}");
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
