//! Tidy rules for the whole tree, run as ordinary tests (rust-analyzer's habit).

use ect_tests::{files_with_suffix, workspace_root};

/// No unfinished-work markers in Rust sources: the project ships no stubs.
#[test]
fn no_stub_markers_in_sources() {
    let root = workspace_root();
    let markers = [
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
        concat!("// TO", "DO"),
        concat!("FIX", "ME"),
    ];
    let mut offenders = Vec::new();
    for file in files_with_suffix(&root, ".rs") {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if markers.iter().any(|m| line.contains(m)) {
                offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "unfinished markers:\n{}",
        offenders.join("\n")
    );
}

/// Every library crate documents itself at the top of `lib.rs`.
#[test]
fn every_library_has_crate_docs() {
    let root = workspace_root();
    let libs: Vec<_> = files_with_suffix(&root.join("crates"), "lib.rs");
    assert!(!libs.is_empty());
    for lib in libs {
        let text = std::fs::read_to_string(&lib).unwrap();
        assert!(
            text.trim_start().starts_with("//!"),
            "{} has no crate-level doc comment",
            lib.display()
        );
    }
}

/// `.ci/run` runs the README's test command.
#[test]
fn ci_runs_the_readme_test_command() {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(
        readme.contains("cargo xtask test"),
        "README must name the test command"
    );
    assert!(
        ci.lines()
            .any(|l| l.trim_start().starts_with("cargo xtask test")),
        ".ci/run must run it"
    );
}

/// Every `cargo xtask <cmd>` the README mentions exists in xtask's command list.
#[test]
fn readme_xtask_commands_exist() {
    let root = workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let main = std::fs::read_to_string(root.join("xtask/src/main.rs")).unwrap();
    for word in readme.split("cargo xtask ").skip(1) {
        let cmd: String = word
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if cmd.is_empty() {
            continue;
        }
        // clap turns the variant `ScalingSweep` into the command `scaling-sweep`.
        let variant: String = cmd
            .split('-')
            .map(|p| {
                let mut c = p.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        assert!(
            main.contains(&format!("    {variant}")),
            "README mentions `cargo xtask {cmd}` but xtask/src/main.rs has no `{variant}` command"
        );
    }
}
