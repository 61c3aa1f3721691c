//! `ect info`: what libtorch this binary runs on, which devices it can use, and whether it was built
//! with NCCL (multi-GPU training).
//!
//! The libtorch version is the one actually loaded: the loader may pick another libtorch than the one the
//! binary was built against (the rpath is a DT_RUNPATH, which `LD_LIBRARY_PATH` overrides). libtorch has
//! no C entry point that returns its version, so the loaded `libtorch_cpu.so` is located in
//! `/proc/self/maps` and the version is read from the files of the install it belongs to. Where that
//! fails (no `/proc`, or an install without version files), the build-time version is printed and
//! labelled as such.

use crate::cuda_driver;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Options of `ect info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One CUDA device as seen by the driver.
#[derive(Debug)]
struct DeviceInfo {
    index: usize,
    name: String,
    total_memory_bytes: Option<u64>,
}

/// The libtorch in use: the loaded one where it can be identified, else the build-time one.
#[derive(Debug)]
struct LibtorchInfo {
    /// The version printed: the loaded one if known, else the build-time one.
    version: String,
    /// The library folder printed, chosen the same way.
    lib: PathBuf,
    /// `"loaded"` or `"compile-time"`: where `version` comes from.
    version_source: &'static str,
    /// The folder of the loaded `libtorch_cpu.so`, if found.
    loaded_lib: Option<PathBuf>,
    /// The version read next to `loaded_lib`, if any file there names one.
    loaded_version: Option<String>,
    /// What the binary was built against (`ect-torch-link`).
    build_version: &'static str,
    build_lib: &'static str,
}

impl LibtorchInfo {
    fn detect() -> Self {
        let build_version = env!("ECT_LIBTORCH_VERSION");
        let build_lib = env!("ECT_LIBTORCH_LIB");
        let loaded_lib = std::fs::read_to_string("/proc/self/maps")
            .ok()
            .and_then(|maps| lib_dir_from_maps(&maps));
        let loaded_version = loaded_lib
            .as_deref()
            .and_then(Path::parent)
            .and_then(read_version);
        let (version, version_source) = match &loaded_version {
            Some(v) => (v.clone(), "loaded"),
            None => (build_version.to_owned(), "compile-time"),
        };
        Self {
            version,
            lib: loaded_lib
                .clone()
                .unwrap_or_else(|| PathBuf::from(build_lib)),
            version_source,
            loaded_lib,
            loaded_version,
            build_version,
            build_lib,
        }
    }

    /// A warning when the loaded libtorch is not the one the binary was built against.
    fn mismatch(&self) -> Option<String> {
        let loaded = self.loaded_lib.as_deref()?;
        let same_dir = match (
            loaded.canonicalize(),
            Path::new(self.build_lib).canonicalize(),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => loaded == Path::new(self.build_lib),
        };
        let same_version = self
            .loaded_version
            .as_deref()
            .is_none_or(|v| v == self.build_version);
        (!same_dir || !same_version).then(|| {
            format!(
                "warning: loaded libtorch {} from {}, but this binary was built against libtorch {} ({}); \
                 tch 0.24 needs exactly 2.11.0: unset LD_LIBRARY_PATH, or rebuild with LIBTORCH set to the \
                 libtorch you want",
                self.loaded_version.as_deref().unwrap_or("(version unknown)"),
                loaded.display(),
                self.build_version,
                self.build_lib
            )
        })
    }
}

/// Prints the libtorch version (as loaded), CPU threads and each CUDA device.
pub fn run(args: &InfoArgs) -> anyhow::Result<()> {
    let torch = LibtorchInfo::detect();
    let threads = tch::get_num_threads();
    let cuda_available = tch::Cuda::is_available();
    let count = if cuda_available {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    };
    let devices: Vec<DeviceInfo> = (0..count).map(describe_device).collect();
    if let Some(warning) = torch.mismatch() {
        eprintln!("{warning}");
    }
    if args.json {
        let devices: Vec<_> = devices
            .iter()
            .map(|d| json!({"index": d.index, "name": d.name, "total_memory_bytes": d.total_memory_bytes}))
            .collect();
        let value = json!({
            "libtorch_version": torch.version,
            "libtorch_lib": torch.lib,
            "libtorch_version_source": torch.version_source,
            "libtorch_loaded_lib": torch.loaded_lib,
            "libtorch_loaded_version": torch.loaded_version,
            "libtorch_build_version": torch.build_version,
            "libtorch_build_lib": torch.build_lib,
            "cpu_threads": threads,
            "cuda_available": cuda_available,
            "cudnn_available": cuda_available && tch::Cuda::cudnn_is_available(),
            "cuda_devices": devices,
            "nccl_built": ect_dist::nccl_available(),
            "nccl_status": ect_dist::NCCL_STATUS,
        });
        println!("{value}");
        return Ok(());
    }
    match (&torch.loaded_lib, torch.version_source) {
        (Some(lib), "loaded") => println!("libtorch {} (loaded from {})", torch.version, lib.display()),
        (Some(lib), _) => println!(
            "libtorch {} (compile-time version: the loaded {} names no version; built against {})",
            torch.version,
            lib.display(),
            torch.build_lib
        ),
        (None, _) => println!(
            "libtorch {} (compile-time version: the loaded library was not found; built against {})",
            torch.version, torch.build_lib
        ),
    }
    println!("cpu threads: {threads}");
    if devices.is_empty() {
        println!("cuda: not available (running on CPU)");
    }
    for d in &devices {
        let memory = d
            .total_memory_bytes
            .map(|b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64))
            .unwrap_or_else(|| "memory unknown".to_owned());
        println!("cuda:{} {} ({memory})", d.index, d.name);
    }
    // Multi-GPU training needs NCCL in this build; the status says why it is missing.
    println!(
        "nccl (multi-GPU): {}",
        if ect_dist::nccl_available() {
            "built".to_owned()
        } else {
            format!("not built: {}", ect_dist::NCCL_STATUS)
        }
    );
    Ok(())
}

/// The folder of the `libtorch_cpu.so` mapped into this process, from a `/proc/<pid>/maps` listing
/// (`address perms offset dev inode path`; the path, the only field starting with `/`, may hold spaces).
fn lib_dir_from_maps(maps: &str) -> Option<PathBuf> {
    maps.lines().find_map(|line| {
        let path = Path::new(&line[line.find(" /")? + 1..]);
        (path.file_name()? == "libtorch_cpu.so").then(|| path.parent().map(Path::to_path_buf))?
    })
}

/// The version (`major.minor.patch`, local suffix dropped) of the libtorch install at `root`, from the
/// same files `ect-torch-link` reads at build time: `build-version`, `version.py`, the C++ header.
fn read_version(root: &Path) -> Option<String> {
    let strip = |v: &str| {
        Some(v.trim().split('+').next().unwrap_or_default().to_owned()).filter(|v| !v.is_empty())
    };
    if let Some(v) = std::fs::read_to_string(root.join("build-version"))
        .ok()
        .and_then(|t| strip(&t))
    {
        return Some(v);
    }
    if let Some(v) = std::fs::read_to_string(root.join("version.py"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|line| {
                let value = line
                    .strip_prefix("__version__")?
                    .trim_start()
                    .strip_prefix('=')?;
                strip(value.trim().trim_matches(|c| c == '\'' || c == '"'))
            })
        })
    {
        return Some(v);
    }
    [
        "include/torch/headeronly/version.h",
        "include/torch/csrc/api/include/torch/version.h",
    ]
    .iter()
    .find_map(|rel| {
        let text = std::fs::read_to_string(root.join(rel)).ok()?;
        let field = |name: &str| -> Option<u32> {
            let prefix = format!("#define TORCH_VERSION_{name} ");
            text.lines()
                .find_map(|line| line.trim().strip_prefix(prefix.as_str()))
                .and_then(|v| v.trim().parse().ok())
        };
        Some(format!(
            "{}.{}.{}",
            field("MAJOR")?,
            field("MINOR")?,
            field("PATCH")?
        ))
    })
}

fn describe_device(index: usize) -> DeviceInfo {
    match cuda_driver::device_properties(index) {
        Ok((name, memory)) => DeviceInfo {
            index,
            name,
            total_memory_bytes: Some(memory),
        },
        Err(err) => DeviceInfo {
            index,
            name: format!("unknown device ({err})"),
            total_memory_bytes: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaded_lib_dir_is_found_in_a_maps_listing() {
        let maps = "\
55d0c0a00000-55d0c0a20000 r--p 00000000 fd:01 4242   /usr/bin/ect\n\
7f00a0000000-7f00a1000000 r-xp 00000000 fd:01 77     /opt/my libs/torch/lib/libc10.so\n\
7f00a2000000-7f00a9000000 r-xp 00100000 fd:01 78     /opt/my libs/torch/lib/libtorch_cpu.so\n\
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]\n";
        assert_eq!(
            lib_dir_from_maps(maps),
            Some(PathBuf::from("/opt/my libs/torch/lib"))
        );
        let gone = "7f00a2000000-7f00a9000000 r-xp 0 fd:01 78 /x/lib/libtorch_cpu.so (deleted)\n";
        assert_eq!(lib_dir_from_maps(gone), None);
        assert_eq!(lib_dir_from_maps("7f00-7f01 rw-p 0 00:00 0\n"), None);
    }

    #[test]
    fn version_is_read_like_the_build_script_reads_it() {
        let dir = std::env::temp_dir().join(format!("ect-info-version-{}", std::process::id()));
        let header = dir.join("include/torch/csrc/api/include/torch/version.h");
        std::fs::create_dir_all(header.parent().unwrap()).unwrap();
        assert_eq!(read_version(&dir), None);
        std::fs::write(
            &header,
            "#define TORCH_VERSION_MAJOR 2\n#define TORCH_VERSION_MINOR 11\n#define TORCH_VERSION_PATCH 0\n",
        )
        .unwrap();
        assert_eq!(read_version(&dir).as_deref(), Some("2.11.0"));
        std::fs::write(dir.join("version.py"), "__version__ = '2.10.0+cu128'\n").unwrap();
        assert_eq!(read_version(&dir).as_deref(), Some("2.10.0"));
        std::fs::write(dir.join("build-version"), "2.9.1\n").unwrap();
        assert_eq!(read_version(&dir).as_deref(), Some("2.9.1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
