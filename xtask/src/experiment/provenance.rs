//! What every run directory records about how it was made: git revision (and whether the tree was
//! dirty), the libtorch version and device (from `ect info --json`), the command line and the time.

use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The git revision of `root` and whether its tracked files differ from it (`None` outside git).
pub fn git_revision(root: &Path) -> (Option<String>, Option<bool>) {
    let rev = git(root, &["rev-parse", "HEAD"]);
    let dirty =
        git(root, &["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
    (rev, dirty)
}

/// The provenance record; `ect_info` is the output of `ect info --json`.
pub fn record(root: &Path, ect_info: &Value, seed: u64) -> Value {
    let (rev, dirty) = git_revision(root);
    let args: Vec<String> = std::env::args().collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({
        "git_revision": rev,
        "git_dirty": dirty,
        "libtorch_version": ect_info["libtorch_version"],
        "device": if ect_info["cuda_available"].as_bool() == Some(true) {
            ect_info["cuda_devices"][0]["name"].clone()
        } else {
            json!(format!("cpu ({} threads)", ect_info["cpu_threads"]))
        },
        "seed": seed,
        "command": args,
        "unix_time": now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_revision_and_device() {
        let root = crate::libtorch::workspace_root();
        let info = json!({"libtorch_version": "2.11.0", "cpu_threads": 2, "cuda_available": false, "cuda_devices": []});
        let rec = record(&root, &info, 3);
        assert_eq!(rec["libtorch_version"], "2.11.0");
        assert_eq!(rec["device"], "cpu (2 threads)");
        assert_eq!(rec["seed"], 3);
        if root.join(".git").exists() {
            assert_eq!(rec["git_revision"].as_str().map(str::len), Some(40));
            assert!(rec["git_dirty"].is_boolean());
        }
    }
}
