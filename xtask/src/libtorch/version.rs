//! Reading a libtorch folder's version from the files it ships with.
//!
//! Kept in step with `ect-torch-link::libtorch_version`, which the build scripts use: both must accept the
//! same folders, or `cargo xtask` would refuse a libtorch that the build itself accepts (or the reverse).

use std::path::Path;

/// Where a version was read from, in the order they are tried.
///
/// A standalone libtorch archive has `build-version`, a PyTorch install has `version.py`, and every libtorch
/// (including one built from source or packaged by a distribution) has the C++ headers. Since PyTorch 2.9
/// the defines live in `headeronly/version.h` and the older `csrc/api` header only includes it.
pub const VERSION_HEADERS: [&str; 2] = [
    "include/torch/headeronly/version.h",
    "include/torch/csrc/api/include/torch/version.h",
];

/// Reads the version of the libtorch rooted at `root` (the folder with `include/` and `lib/`), as
/// `major.minor.patch` without a local suffix such as `+cu130`; `None` when no file names one.
pub fn read_version(root: &Path) -> Option<String> {
    if let Some(v) = std::fs::read_to_string(root.join("build-version"))
        .ok()
        .and_then(|text| non_empty(strip_local(&text)))
    {
        return Some(v);
    }
    if let Some(v) = std::fs::read_to_string(root.join("version.py"))
        .ok()
        .and_then(|text| version_py(&text))
    {
        return Some(v);
    }
    VERSION_HEADERS.iter().find_map(|rel| {
        let text = std::fs::read_to_string(root.join(rel)).ok()?;
        version_header(&text)
    })
}

/// `2.11.0+cu130` -> `2.11.0`.
fn strip_local(v: &str) -> String {
    v.trim().split('+').next().unwrap_or_default().to_owned()
}

fn non_empty(v: String) -> Option<String> {
    (!v.is_empty()).then_some(v)
}

/// The `__version__ = '...'` line of PyTorch's `torch/version.py`.
fn version_py(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line
            .strip_prefix("__version__")?
            .trim_start()
            .strip_prefix('=')?;
        non_empty(strip_local(
            value.trim().trim_matches(|c| c == '\'' || c == '"'),
        ))
    })
}

/// `TORCH_VERSION_MAJOR`, `_MINOR` and `_PATCH` from a C++ version header.
fn version_header(text: &str) -> Option<String> {
    let field = |name: &str| -> Option<u32> {
        let prefix = format!("#define TORCH_VERSION_{name}");
        text.lines().find_map(|line| {
            let rest = line.trim().strip_prefix(prefix.as_str())?;
            // `#define TORCH_VERSION_MAJOR_X` must not match `MAJOR`.
            if !rest.starts_with(char::is_whitespace) {
                return None;
            }
            rest.trim().parse().ok()
        })
    };
    Some(format!(
        "{}.{}.{}",
        field("MAJOR")?,
        field("MINOR")?,
        field("PATCH")?
    ))
}
