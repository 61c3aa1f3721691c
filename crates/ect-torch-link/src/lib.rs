//! Build-script helper for every package whose binaries or tests link libtorch (through `tch`).
//!
//! Call [`emit`] from the package's `build.rs`; the package must depend on `torch-sys` directly, since
//! Cargo only passes `torch-sys`'s `cargo:libtorch_lib=...` metadata (as `DEP_TCH_LIBTORCH_LIB`) to
//! direct dependents. It emits, for that package's own link steps only:
//!
//! - `-Wl,-rpath,<libtorch lib>` so binaries and tests run without `LD_LIBRARY_PATH`;
//! - `-Wl,--no-as-needed -ltorch_cuda -Wl,--as-needed` when `libtorch_cuda.so` exists, because nothing
//!   references its symbols directly and the linker would otherwise drop it, leaving CUDA silently
//!   unavailable.
//!
//! These flags must never go into a global `RUSTFLAGS`: proc-macro crates would then load
//! `libtorch_cuda` into `rustc` itself, which crashes.
//!
//! In `build.rs`:
//!
//! ```no_run
//! ect_torch_link::emit();
//! ```

use std::path::{Path, PathBuf};

/// The libtorch library directory published by `torch-sys`, if this build script can see it.
pub fn libtorch_lib_dir() -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from)
}

/// The `cargo:` lines that make binaries and tests of a package find libtorch (and CUDA) at run time.
pub fn link_directives(lib_dir: &Path) -> Vec<String> {
    let mut lines = vec![format!(
        "cargo:rustc-link-arg=-Wl,-rpath,{}",
        lib_dir.display()
    )];
    if lib_dir.join("libtorch_cuda.so").exists() {
        lines.push("cargo:rustc-link-arg=-Wl,--no-as-needed".to_owned());
        lines.push("cargo:rustc-link-arg=-ltorch_cuda".to_owned());
        lines.push("cargo:rustc-link-arg=-Wl,--as-needed".to_owned());
    }
    lines
}

/// Reads the libtorch version (`major.minor.patch`, local suffix such as `+cu130` dropped) from the files
/// next to `lib_dir`: `build-version` (standalone libtorch archives), `version.py` (a PyTorch install) or
/// the C++ version header.
pub fn libtorch_version(lib_dir: &Path) -> Option<String> {
    let root = lib_dir.parent()?;
    let strip = |v: &str| v.trim().split('+').next().unwrap_or_default().to_owned();
    if let Ok(text) = std::fs::read_to_string(root.join("build-version")) {
        return Some(strip(&text));
    }
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let found = text.lines().find_map(|line| {
            let value = line
                .strip_prefix("__version__")?
                .trim_start()
                .strip_prefix('=')?;
            Some(strip(value.trim().trim_matches(|c| c == '\'' || c == '"')))
        });
        if found.is_some() {
            return found;
        }
    }
    [
        "include/torch/headeronly/version.h",
        "include/torch/csrc/api/include/torch/version.h",
    ]
    .iter()
    .find_map(|rel| {
        let text = std::fs::read_to_string(root.join(rel)).ok()?;
        let field = |name: &str| -> Option<String> {
            let prefix = format!("#define TORCH_VERSION_{name} ");
            text.lines()
                .find_map(|line| line.trim().strip_prefix(prefix.as_str()))
                .map(|v| v.trim().to_owned())
        };
        Some(format!(
            "{}.{}.{}",
            field("MAJOR")?,
            field("MINOR")?,
            field("PATCH")?
        ))
    })
}

/// Emits the link directives for the current package, plus `ECT_LIBTORCH_VERSION` and
/// `ECT_LIBTORCH_LIB` as compile-time environment variables (`env!`).
///
/// # Panics
/// When `DEP_TCH_LIBTORCH_LIB` is unset, i.e. the package does not depend on `torch-sys` directly: that
/// is a mistake in the package's manifest, not in the user's setup.
pub fn emit() {
    let lib_dir = libtorch_lib_dir().expect(
        "DEP_TCH_LIBTORCH_LIB is not set: add `torch-sys.workspace = true` to this package's \
         [dependencies] so that torch-sys passes its libtorch directory to this build script",
    );
    for line in link_directives(&lib_dir) {
        println!("{line}");
    }
    let version = libtorch_version(&lib_dir).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=ECT_LIBTORCH_VERSION={version}");
    println!("cargo:rustc-env=ECT_LIBTORCH_LIB={}", lib_dir.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpath_always_and_cuda_only_when_present() {
        let dir = std::env::temp_dir().join(format!("ect-torch-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lines = link_directives(&dir);
        assert_eq!(
            lines,
            vec![format!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display())]
        );
        std::fs::write(dir.join("libtorch_cuda.so"), b"").unwrap();
        let lines = link_directives(&dir);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[2], "cargo:rustc-link-arg=-ltorch_cuda");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn version_read_from_python_install() {
        let root = std::env::temp_dir().join(format!("ect-torch-link-py-{}", std::process::id()));
        std::fs::create_dir_all(root.join("lib")).unwrap();
        std::fs::write(
            root.join("version.py"),
            "debug = False\n__version__ = '2.11.0+cu130'\n",
        )
        .unwrap();
        assert_eq!(
            libtorch_version(&root.join("lib")).as_deref(),
            Some("2.11.0")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn version_read_from_header() {
        let root = std::env::temp_dir().join(format!("ect-torch-link-v-{}", std::process::id()));
        let inc = root.join("include/torch/headeronly");
        std::fs::create_dir_all(&inc).unwrap();
        std::fs::create_dir_all(root.join("lib")).unwrap();
        std::fs::write(
            inc.join("version.h"),
            "#pragma once\n#define TORCH_VERSION_MAJOR 2\n#define TORCH_VERSION_MINOR 11\n#define TORCH_VERSION_PATCH 0\n",
        )
        .unwrap();
        assert_eq!(
            libtorch_version(&root.join("lib")).as_deref(),
            Some("2.11.0")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
