//! Workspace-level tests of the ECT project; the library part only locates the workspace.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace")
        .to_path_buf()
}

/// Every file under `dir` (recursively) whose name ends with `suffix`, skipping build outputs and
/// virtual environments.
pub fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(
                    name.as_str(),
                    "target" | ".venv" | ".git" | "fixtures" | "runs" | "fuzz"
                ) {
                    stack.push(path);
                }
            } else if name.ends_with(suffix) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The workspace's own crates in layers, lowest first: a crate may depend only on crates of lower
/// layers, so data flows one way (bytes -> batches -> networks -> training -> tools). A crate missing
/// here is a tidy failure: place it when it is added.
pub const LAYERS: &[&[&str]] = &[
    &["ect-schedule", "ect-torch-link", "ect-pickle", "ect-tests"],
    &["ect-config", "ect-data"],
    &["ect-unet", "ect-dist"],
    &["ect-metrics"],
    &["ect-train"],
    &["ect", "xtask"],
];

/// Crates that must never link libtorch, even indirectly: they are usable (and tested) without it.
pub const TORCH_FREE: &[&str] = &[
    "ect-schedule",
    "ect-config",
    "ect-data",
    "ect-pickle",
    "xtask",
    "ect-tests",
];

/// The crates that bind libtorch.
pub const TORCH_CRATES: &[&str] = &["tch", "torch-sys"];

/// A dependency graph: package name -> names of its normal and build dependencies.
pub type DepGraph = std::collections::BTreeMap<String, Vec<String>>;

/// The resolved dependency graph of the workspace from `cargo metadata` (normal and build edges; dev
/// dependencies do not ship).
pub fn dependency_graph() -> Result<DepGraph, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("running cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata JSON: {e}"))?;
    let names: std::collections::HashMap<&str, &str> = meta["packages"]
        .as_array()
        .ok_or("no packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    let mut graph = DepGraph::new();
    for node in meta["resolve"]["nodes"]
        .as_array()
        .ok_or("no resolve graph")?
    {
        let Some(name) = node["id"].as_str().and_then(|id| names.get(id)) else {
            continue;
        };
        let deps = node["deps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].as_str() != Some("dev")))
            })
            .filter_map(|d| d["pkg"].as_str().and_then(|id| names.get(id)))
            .map(|s| s.to_string())
            .collect();
        graph.insert(name.to_string(), deps);
    }
    Ok(graph)
}

/// Every package `root` depends on, directly or not.
pub fn transitive_deps(graph: &DepGraph, root: &str) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![root.to_string()];
    while let Some(p) = stack.pop() {
        for d in graph.get(&p).into_iter().flatten() {
            if seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    seen
}

/// The torch-free crates of `torch_free` that reach a torch binding anyway, with the path-independent
/// fact of which binding.
pub fn torch_leaks(graph: &DepGraph, torch_free: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for krate in torch_free {
        let deps = transitive_deps(graph, krate);
        for t in TORCH_CRATES {
            if deps.contains(*t) {
                out.push(format!("{krate} depends on {t}"));
            }
        }
    }
    out
}

/// Edges between workspace crates that do not point to a lower layer, and workspace crates with no
/// layer.
pub fn layer_violations(graph: &DepGraph, layers: &[&[&str]]) -> Vec<String> {
    let layer_of = |name: &str| layers.iter().position(|l| l.contains(&name));
    let workspace: Vec<&String> = graph
        .keys()
        .filter(|k| k.starts_with("ect") || k.as_str() == "xtask")
        .collect();
    let mut out = Vec::new();
    for krate in workspace {
        let Some(own) = layer_of(krate) else {
            out.push(format!("{krate} has no layer in LAYERS"));
            continue;
        };
        for dep in &graph[krate] {
            if let Some(theirs) = layer_of(dep) {
                if theirs >= own {
                    out.push(format!(
                        "{krate} (layer {own}) depends on {dep} (layer {theirs})"
                    ));
                }
            }
        }
    }
    out
}

/// References in `//` comments of `text` (a file at `file`) to Markdown documents that do not exist:
/// a path ending in `.md` is looked up relative to the workspace root, the file's crate and the file's
/// own folder. Documents outside the repository cannot be cited (a user's clone does not have them).
pub fn dangling_doc_refs(root: &Path, file: &Path, text: &str) -> Vec<String> {
    let crate_dir = file
        .ancestors()
        .find(|a| a.join("Cargo.toml").is_file())
        .map(Path::to_path_buf);
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let Some(comment) = line.find("//").map(|i| &line[i..]) else {
            continue;
        };
        let forbidden = ["SPEC-ECT", "DESIGN.md", "../shared"];
        if let Some(word) = forbidden.iter().find(|w| comment.contains(*w)) {
            out.push(format!(
                "{}:{}: cites `{word}`, which is not in the repository",
                file.display(),
                n + 1
            ));
            continue;
        }
        for token in comment.split(|c: char| c.is_whitespace() || "`()[],;'\"".contains(c)) {
            let token = token.trim_end_matches(['.', ':']);
            if !token.ends_with(".md") || token.starts_with("http") {
                continue;
            }
            let candidates = [
                Some(root.join(token)),
                crate_dir.as_ref().map(|d| d.join(token)),
                file.parent().map(|d| d.join(token)),
            ];
            if !candidates.iter().flatten().any(|p| p.is_file()) {
                out.push(format!(
                    "{}:{}: cites `{token}`, which does not exist",
                    file.display(),
                    n + 1
                ));
            }
        }
    }
    out
}
