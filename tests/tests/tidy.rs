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

/// The crates that promise to work without libtorch never reach tch or torch-sys (read from the
/// resolved `cargo metadata` graph).
#[test]
fn torch_free_crates_never_depend_on_torch() {
    let graph = ect_tests::dependency_graph().unwrap();
    for krate in ect_tests::TORCH_FREE {
        assert!(
            graph.contains_key(*krate) || *krate == "ect-pickle",
            "{krate} is not in the workspace graph"
        );
    }
    let leaks = ect_tests::torch_leaks(&graph, ect_tests::TORCH_FREE);
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
    // The rule can fail: the same check on crates that do link torch names them.
    let leaks = ect_tests::torch_leaks(&graph, &["ect-unet", "ect"]);
    assert_eq!(
        leaks,
        [
            "ect-unet depends on tch",
            "ect-unet depends on torch-sys",
            "ect depends on tch",
            "ect depends on torch-sys"
        ]
    );
}

/// Dependencies between the workspace's crates point down the layers of `ect_tests::LAYERS` only.
#[test]
fn no_crate_depends_on_a_crate_above_it() {
    let graph = ect_tests::dependency_graph().unwrap();
    let violations = ect_tests::layer_violations(&graph, ect_tests::LAYERS);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    // The rule can fail: the schedule crate reaching the trainer, and an unplaced crate.
    let mut bad = graph.clone();
    bad.get_mut("ect-schedule")
        .unwrap()
        .push("ect-train".into());
    bad.insert("ect-new".into(), vec![]);
    let violations = ect_tests::layer_violations(&bad, ect_tests::LAYERS);
    assert_eq!(
        violations,
        [
            "ect-new has no layer in LAYERS",
            "ect-schedule (layer 0) depends on ect-train (layer 4)"
        ]
    );
}

/// Comments cite only documents the repository has (`docs/method.md §N`, crate READMEs), never the
/// project's private notes.
#[test]
fn comments_cite_only_documents_in_the_repository() {
    let root = workspace_root();
    let mut offenders = Vec::new();
    // The checker's own crate names the forbidden citations in its rules and examples.
    for file in files_with_suffix(&root, ".rs")
        .into_iter()
        .filter(|f| !f.starts_with(root.join("tests")))
    {
        let text = std::fs::read_to_string(&file).unwrap();
        offenders.extend(ect_tests::dangling_doc_refs(&root, &file, &text));
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
    // The rule can fail: a citation of the private spec and of a missing document are named.
    let file = root.join("crates/ect-train/src/lib.rs");
    let text = "//! As SPEC-ECT section 3 says.\n/// See docs/method.md §2 and docs/missing.md.\n";
    let found = ect_tests::dangling_doc_refs(&root, &file, text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("SPEC-ECT") && found[1].contains("docs/missing.md"));
}
