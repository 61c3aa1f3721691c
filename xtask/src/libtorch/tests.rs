//! The bootstrap's decisions, on fake libtorch folders and fake `python3`/venv interpreters (shell scripts
//! that log their arguments), so that nothing is installed and `pip` never runs.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;
use tempfile::TempDir;

/// Serializes the tests that write and then execute scripts: executing a file while another thread's
/// freshly forked child still holds it open for writing fails with ETXTBSY.
static SCRIPTS: Mutex<()> = Mutex::new(());

fn scripts_lock() -> std::sync::MutexGuard<'static, ()> {
    SCRIPTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fake libtorch folder (`lib/` and `include/`) with the given extra files.
fn fake_libtorch(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let root = dir.join("libtorch");
    std::fs::create_dir_all(root.join("lib")).unwrap();
    std::fs::create_dir_all(root.join("include")).unwrap();
    for (rel, text) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    root
}

fn header(major: u32, minor: u32, patch: u32) -> String {
    format!(
        "#pragma once\n#define TORCH_VERSION_MAJOR {major}\n#define TORCH_VERSION_MINOR {minor}\n\
         #define TORCH_VERSION_PATCH {patch}\n#define TORCH_VERSION_ABI_TAG 0\n"
    )
}

const OLD_HEADER: &str = "include/torch/csrc/api/include/torch/version.h";
const NEW_HEADER: &str = "include/torch/headeronly/version.h";

fn user(root: &Path) -> Bootstrap {
    Bootstrap {
        user_libtorch: Some(root.to_path_buf()),
        bypass_version_check: false,
        venv: root.join("no-venv-here"),
        python3: "/nonexistent/python3".into(),
    }
}

fn write_script(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fake `python3` that logs every call to `log`, answers `--version`, and for `-m venv DIR` either
/// fails (`venv_ok = false`) or copies `venv_python` to `DIR/bin/python`.
fn fake_python3(dir: &Path, log: &Path, venv_python: &Path, venv_ok: bool) -> OsString {
    let path = dir.join("python3");
    let venv = if venv_ok {
        format!(
            "mkdir -p \"$3/bin\" && cp '{}' \"$3/bin/python\" && exit 0",
            venv_python.display()
        )
    } else {
        "mkdir -p \"$3\"; echo 'Error: ensurepip is not available' >&2; exit 1".to_owned()
    };
    write_script(
        &path,
        &format!(
            "echo \"python3 $*\" >> '{log}'\ncase \"$1\" in\n  --version) echo 'Python 3.11.2'; exit 0;;\n  \
             -m) {venv};;\nesac\nexit 2\n",
            log = log.display()
        ),
    );
    path.into_os_string()
}

/// A fake venv interpreter: `-c` (the torch probe) runs `probe`, `-m pip` runs `pip`; both log.
fn fake_venv_python(path: &Path, log: &Path, probe: &str, pip: &str) {
    write_script(
        path,
        &format!(
            "echo \"python $*\" >> '{log}'\ncase \"$1\" in\n  -c) {probe};;\n  -m) {pip};;\nesac\nexit 2\n",
            log = log.display()
        ),
    );
}

fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

const PROBE_NO_TORCH: &str = "echo \"ModuleNotFoundError: No module named 'torch'\" >&2; exit 1";

// --- version files --------------------------------------------------------------------------------

#[test]
fn version_from_version_py_drops_local_suffix() {
    let dir = TempDir::new().unwrap();
    std::fs::write(
        dir.path().join("version.py"),
        "__version__ = '2.11.0+cu130'\ndebug = False\n",
    )
    .unwrap();
    assert_eq!(read_version(dir.path()).as_deref(), Some("2.11.0"));
    std::fs::write(dir.path().join("build-version"), "2.10.1+cpu\n").unwrap();
    assert_eq!(read_version(dir.path()).as_deref(), Some("2.10.1"));
}

#[test]
fn version_file_only_is_accepted() {
    let dir = TempDir::new().unwrap();
    let root = fake_libtorch(dir.path(), &[("build-version", "2.11.0+cpu\n")]);
    let lib = user(&root).ensure().unwrap();
    assert_eq!(
        (lib.version.as_str(), lib.source, lib.root),
        ("2.11.0", "$LIBTORCH", root)
    );
}

#[test]
fn header_only_libtorch_is_accepted() {
    // The layout before PyTorch 2.9 (defines in the csrc/api header) and the current one (headeronly).
    for rel in [OLD_HEADER, NEW_HEADER] {
        let dir = TempDir::new().unwrap();
        let root = fake_libtorch(dir.path(), &[(rel, &header(2, 11, 0))]);
        assert_eq!(read_version(&root).as_deref(), Some("2.11.0"), "{rel}");
        let lib = user(&root).ensure().unwrap();
        assert_eq!((lib.version.as_str(), lib.source), ("2.11.0", "$LIBTORCH"));
    }
}

#[test]
fn version_files_win_over_the_header() {
    let dir = TempDir::new().unwrap();
    let root = fake_libtorch(
        dir.path(),
        &[
            ("version.py", "__version__ = '2.11.0'\n"),
            (OLD_HEADER, &header(2, 4, 1)),
        ],
    );
    assert_eq!(read_version(&root).as_deref(), Some("2.11.0"));
    // A version.py without __version__ (or an empty build-version) does not hide the header.
    let dir = TempDir::new().unwrap();
    let root = fake_libtorch(
        dir.path(),
        &[
            ("build-version", "\n"),
            ("version.py", "debug = False\n"),
            (NEW_HEADER, &header(2, 11, 0)),
        ],
    );
    assert_eq!(read_version(&root).as_deref(), Some("2.11.0"));
}

#[test]
fn header_with_a_missing_or_garbled_field_names_no_version() {
    let dir = TempDir::new().unwrap();
    let text = "#define TORCH_VERSION_MAJOR 2\n#define TORCH_VERSION_MINOR_X 11\n\
                #define TORCH_VERSION_MINOR eleven\n#define TORCH_VERSION_PATCH 0\n";
    let root = fake_libtorch(dir.path(), &[(NEW_HEADER, text)]);
    assert_eq!(read_version(&root), None);
}

#[test]
fn libtorch_without_any_version_is_refused_with_what_to_do() {
    let dir = TempDir::new().unwrap();
    let root = fake_libtorch(dir.path(), &[]);
    let msg = user(&root).ensure().unwrap_err().to_string();
    for want in [
        root.display().to_string().as_str(),
        "names no version",
        "build-version",
        "version.py",
        OLD_HEADER,
        "libtorch 2.11.0 folder",
        "LIBTORCH_BYPASS_VERSION_CHECK=1",
    ] {
        assert!(msg.contains(want), "{want:?} missing from: {msg}");
    }
    // The bypass (which torch-sys honours too) lets it through, labelled as unknown.
    let lib = Bootstrap {
        bypass_version_check: true,
        ..user(&root)
    }
    .ensure()
    .unwrap();
    assert_eq!(lib.version, "unknown");
}

#[test]
fn wrong_version_is_refused_with_what_to_do() {
    for (rel, text) in [
        ("build-version", "2.10.0+cu128\n".to_owned()),
        ("version.py", "__version__ = '2.10.0'\n".to_owned()),
        (OLD_HEADER, header(2, 10, 0)),
    ] {
        let dir = TempDir::new().unwrap();
        let root = fake_libtorch(dir.path(), &[(rel, &text)]);
        let msg = user(&root).ensure().unwrap_err().to_string();
        let want = format!(
            "LIBTORCH={} is libtorch 2.10.0, but this project's tch 0.24 needs exactly 2.11.0: install that \
             version (pip install torch==2.11.0) and point LIBTORCH at it, or unset LIBTORCH",
            root.display()
        );
        assert_eq!(msg, want, "{rel}");
    }
}

#[test]
fn user_libtorch_without_lib_folder_is_refused_with_a_hint() {
    let err = user(Path::new("/nonexistent/libtorch"))
        .ensure()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("LIBTORCH=/nonexistent/libtorch has no lib/ and include/ folders")
            && msg.contains("unset it"),
        "{msg}"
    );
}

// --- $LIBTORCH against the venv -------------------------------------------------------------------

#[test]
fn from_env_reads_libtorch_and_the_workspace_venv() {
    let b = Bootstrap::from_env();
    assert_eq!(b.venv, workspace_root().join(".venv"));
    assert_eq!(b.python3, OsString::from("python3"));
    let set = std::env::var_os("LIBTORCH").filter(|v| !v.is_empty());
    assert_eq!(b.user_libtorch, set.map(PathBuf::from));
}

#[test]
fn libtorch_wins_over_a_working_venv() {
    let _guard = scripts_lock();
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("log");
    let venv = dir.path().join("venv");
    // A venv that would answer with a good torch, and a python3 that would work: neither may run.
    fake_venv_python(
        &venv.join("bin/python"),
        &log,
        &format!("echo 2.11.0; echo '{}'; exit 0", dir.path().display()),
        "exit 0",
    );
    let root = fake_libtorch(dir.path(), &[("build-version", "2.11.0\n")]);
    let python3 = fake_python3(dir.path(), &log, &venv.join("bin/python"), true);
    let b = Bootstrap {
        user_libtorch: Some(root.clone()),
        bypass_version_check: false,
        venv: venv.clone(),
        python3: python3.clone(),
    };
    let lib = b.ensure().unwrap();
    assert_eq!((lib.source, lib.root), ("$LIBTORCH", root.clone()));
    assert_eq!(log_lines(&log), Vec::<String>::new());
    // A bad $LIBTORCH is an error, not a silent fall-back to the venv.
    std::fs::write(root.join("build-version"), "2.10.0\n").unwrap();
    let msg = b.ensure().unwrap_err().to_string();
    assert!(msg.contains("is libtorch 2.10.0"), "{msg}");
    assert_eq!(log_lines(&log), Vec::<String>::new());
    // Without $LIBTORCH the same inputs use the venv.
    let lib = Bootstrap {
        user_libtorch: None,
        ..b
    }
    .ensure()
    .unwrap();
    assert_eq!((lib.source, lib.version.as_str()), (".venv", "2.11.0"));
    assert_eq!(lib.root, dir.path());
}

// --- the venv ------------------------------------------------------------------------------------

#[test]
fn missing_python3_says_what_to_install() {
    let dir = TempDir::new().unwrap();
    let venv = dir.path().join("venv");
    let b = Bootstrap {
        user_libtorch: None,
        bypass_version_check: false,
        venv: venv.clone(),
        python3: dir.path().join("no-such-python3").into_os_string(),
    };
    let msg = b.ensure().unwrap_err().to_string();
    assert_eq!(
        msg,
        "python3 was not found: install Python 3.10 or newer (Debian: apt-get install python3 \
         python3-venv), or set LIBTORCH to an existing libtorch 2.11.0"
    );
    assert!(!venv.exists());
}

#[test]
fn python3_whose_version_call_fails_counts_as_missing() {
    let _guard = scripts_lock();
    let dir = TempDir::new().unwrap();
    let python3 = dir.path().join("python3");
    write_script(&python3, "exit 127\n");
    let b = Bootstrap {
        user_libtorch: None,
        bypass_version_check: false,
        venv: dir.path().join("venv"),
        python3: python3.into_os_string(),
    };
    let msg = b.ensure().unwrap_err().to_string();
    assert!(msg.starts_with("python3 was not found"), "{msg}");
}

#[test]
fn missing_venv_module_says_what_to_install_and_leaves_no_half_venv() {
    let _guard = scripts_lock();
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("log");
    let venv = dir.path().join("venv");
    let python3 = fake_python3(dir.path(), &log, Path::new("/unused"), false);
    let b = Bootstrap {
        user_libtorch: None,
        bypass_version_check: false,
        venv: venv.clone(),
        python3,
    };
    let msg = b.ensure().unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "python3 -m venv {} failed: install the venv module (Debian: apt-get install python3-venv) \
             or set LIBTORCH",
            venv.display()
        )
    );
    assert!(!venv.exists(), "the half-made venv must be removed");
    assert_eq!(
        log_lines(&log),
        [
            "python3 --version".to_owned(),
            format!("python3 -m venv {}", venv.display())
        ]
    );
}

#[test]
fn failed_pip_install_says_what_to_do() {
    let _guard = scripts_lock();
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("log");
    let venv = dir.path().join("venv");
    let template = dir.path().join("venv-python");
    fake_venv_python(
        &template,
        &log,
        PROBE_NO_TORCH,
        "echo 'ERROR: Could not find a version that satisfies the requirement' >&2; exit 1",
    );
    let python3 = fake_python3(dir.path(), &log, &template, true);
    let b = Bootstrap {
        user_libtorch: None,
        bypass_version_check: false,
        venv: venv.clone(),
        python3,
    };
    let msg = b.ensure().unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "pip install torch==2.11.0 into {} failed (see pip's output above): check the network and \
             disk space, then run the command again, or set LIBTORCH to an existing libtorch 2.11.0",
            venv.display()
        )
    );
    let log = log_lines(&log);
    assert_eq!(log.len(), 4, "{log:?}");
    assert_eq!(log[1], format!("python3 -m venv {}", venv.display()));
    assert!(log[2].starts_with("python -c import os, torch;"), "{log:?}");
    assert_eq!(
        log[3],
        "python -m pip install --progress-bar on torch==2.11.0"
    );
}

#[test]
fn wrong_torch_in_the_venv_is_refused_without_reinstalling() {
    let _guard = scripts_lock();
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("log");
    let python = dir.path().join("venv/bin/python");
    fake_venv_python(
        &python,
        &log,
        "echo 2.10.0+cu128; echo /x/torch; exit 0",
        "exit 0",
    );
    let b = Bootstrap {
        user_libtorch: None,
        bypass_version_check: false,
        venv: dir.path().join("venv"),
        python3: "/nonexistent/python3".into(),
    };
    let msg = b.ensure().unwrap_err().to_string();
    let p = python.display();
    assert_eq!(
        msg,
        format!(
            "{p} has torch 2.10.0, but this project needs exactly 2.11.0: run `{p} -m pip install \
             torch==2.11.0` (or delete the venv and run this command again)"
        )
    );
    assert_eq!(log_lines(&log).len(), 1, "pip must not run");
}

#[test]
fn first_use_creates_the_venv_and_installs_once() {
    let _guard = scripts_lock();
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("log");
    let venv = dir.path().join("venv");
    let marker = dir.path().join("installed");
    let template = dir.path().join("venv-python");
    fake_venv_python(
        &template,
        &log,
        &format!(
            "[ -e '{m}' ] || exit 1; echo 2.11.0+cpu; echo '{root}'; exit 0",
            m = marker.display(),
            root = dir.path().join("torch").display()
        ),
        &format!("touch '{}'; exit 0", marker.display()),
    );
    let python3 = fake_python3(dir.path(), &log, &template, true);
    let b = Bootstrap {
        user_libtorch: None,
        bypass_version_check: false,
        venv: venv.clone(),
        python3,
    };
    let lib = b.ensure().unwrap();
    assert_eq!(
        (lib.source, lib.version.as_str(), lib.root),
        (".venv", "2.11.0", dir.path().join("torch"))
    );
    assert_eq!(log_lines(&log).len(), 5, "{:?}", log_lines(&log));
    // The second use only probes.
    b.ensure().unwrap();
    let log = log_lines(&log);
    assert_eq!(log.len(), 6, "{log:?}");
    assert!(log[5].starts_with("python -c "), "{log:?}");
}

#[test]
fn installed_torch_that_cannot_be_imported_says_what_to_do() {
    let _guard = scripts_lock();
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("log");
    let venv = dir.path().join("venv");
    fake_venv_python(&venv.join("bin/python"), &log, PROBE_NO_TORCH, "exit 0");
    let b = Bootstrap {
        user_libtorch: None,
        bypass_version_check: false,
        venv: venv.clone(),
        python3: "/nonexistent/python3".into(),
    };
    let msg = b.ensure().unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "torch was installed into {v} but cannot be imported: delete {v} and run the command again",
            v = venv.display()
        )
    );
}

/// With the CUDA wheel (a `lib/libtorch_cuda.so` next to `nvidia/*/include`), the bootstrap installs the
/// two header packages NCCL support needs, in the wheel's CUDA version, once: when they are present it
/// only probes. A CPU wheel never asks for them.
#[test]
fn a_cuda_wheel_gets_the_nccl_headers_once() {
    let _guard = scripts_lock();
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("log");
    let site = dir.path().join("site-packages");
    let torch = site.join("torch");
    std::fs::create_dir_all(torch.join("lib")).unwrap();
    std::fs::write(torch.join("lib/libtorch_cuda.so"), "").unwrap();
    let include = site.join("nvidia/cu13/include");
    std::fs::create_dir_all(&include).unwrap();
    let python = dir.path().join("venv/bin/python");
    // The probe prints the version and folder, or the CUDA version; pip creates the headers.
    fake_venv_python(
        &python,
        &log,
        &format!(
            "case \"$2\" in *version.cuda*) echo 13.0;; *) echo 2.11.0+cu130; echo '{}';; esac; exit 0",
            torch.display()
        ),
        &format!(
            "mkdir -p '{i}/crt' '{i}/nv/target' && touch '{i}/crt/host_config.h'; exit 0",
            i = include.display()
        ),
    );
    let b = Bootstrap {
        user_libtorch: None,
        bypass_version_check: false,
        venv: dir.path().join("venv"),
        python3: "/nonexistent/python3".into(),
    };
    b.ensure().unwrap();
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines[2],
        "python -m pip install --no-deps nvidia-cuda-crt==13.0.* nvidia-cuda-cccl==13.0.*"
    );
    b.ensure().unwrap();
    assert_eq!(
        log_lines(&log).len(),
        4,
        "present headers are not installed again"
    );
    // A CPU wheel: no libtorch_cuda.so, no CUDA question, no pip.
    std::fs::remove_file(torch.join("lib/libtorch_cuda.so")).unwrap();
    std::fs::remove_dir_all(include.join("crt")).unwrap();
    b.ensure().unwrap();
    assert_eq!(log_lines(&log).len(), 5);
}
