//! Builds the C++ shim (`src/shim/*.cpp`) against the libtorch headers and links it with libtorch.
//!
//! - `dist.cpp` (c10d stores, Gloo, collectives) and `context.cpp` (autocast, cuDNN/TF32, profiler) are
//!   always built. `ProcessGroupGloo.hpp` includes gloo's own headers, which the PyTorch wheel does not
//!   ship: they come from Debian's `libgloo-dev` (or `ECT_GLOO_INCLUDE`); without them the build stops
//!   with a message saying so.
//! - `nccl.cpp` is built only when `libtorch_cuda.so` exists and the NCCL and CUDA headers are found
//!   (`ECT_CUDA_INCLUDE`, the wheel's `nvidia/*/include` next to torch, `CUDA_HOME`, `/usr/local/cuda`);
//!   otherwise the crate builds without NCCL and `Backend::Nccl` reports why. `ECT_DIST_NCCL=0` turns it
//!   off, `ECT_DIST_NCCL=1` makes missing headers an error.

use std::env;
use std::path::{Path, PathBuf};

/// Headers the NCCL translation unit needs beyond libtorch's own, with the package that provides each.
const NCCL_HEADERS: &[(&str, &str)] = &[
    ("nccl.h", "the wheel's nvidia-nccl (nvidia/nccl/include)"),
    (
        "cuda_runtime_api.h",
        "the wheel's CUDA runtime (nvidia/cu13/include)",
    ),
    ("crt/host_config.h", "PyPI nvidia-cuda-crt"),
    ("nv/target", "PyPI nvidia-cuda-cccl"),
];

fn main() {
    ect_torch_link::emit();
    let lib_dir = ect_torch_link::libtorch_lib_dir().expect("checked by ect_torch_link::emit");
    for var in [
        "LIBTORCH_INCLUDE",
        "LIBTORCH_CXX11_ABI",
        "ECT_GLOO_INCLUDE",
        "ECT_CUDA_INCLUDE",
        "ECT_DIST_NCCL",
        "CUDA_HOME",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=src/shim");
    println!("cargo::rustc-check-cfg=cfg(ect_nccl)");

    let torch_root = lib_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| lib_dir.clone());
    // The CUDA wheels next to torch: headers installed there later (`cargo xtask` does on first use)
    // turn NCCL on at the next build.
    if let Some(nvidia) = torch_root.parent().map(|site| site.join("nvidia")) {
        if nvidia.is_dir() {
            println!("cargo:rerun-if-changed={}", nvidia.display());
        }
    }
    let include_root = env::var_os("LIBTORCH_INCLUDE")
        .map(PathBuf::from)
        .unwrap_or_else(|| torch_root.clone());
    let torch_includes = [
        include_root.join("include"),
        include_root.join("include/torch/csrc/api/include"),
    ];
    let c10d = torch_includes[0].join("torch/csrc/distributed/c10d/ProcessGroupGloo.hpp");
    if !c10d.exists() {
        fail(&format!(
            "{} does not exist: this libtorch has no c10d headers (a libtorch built without \
             USE_DISTRIBUTED?); ect-dist needs the PyTorch 2.11.0 wheel's or a full libtorch's include/",
            c10d.display()
        ));
    }
    let gloo = find_gloo();
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());

    let base = |files: &[&str]| {
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .std("c++17")
            .pic(true)
            .warnings(false)
            .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
            .define("USE_C10D_GLOO", None)
            .include(&gloo)
            .includes(&torch_includes);
        for file in files {
            build.file(format!("src/shim/{file}"));
        }
        build
    };
    base(&["dist.cpp", "context.cpp"]).compile("ect_dist_shim");

    let nccl_status = match nccl_includes(&lib_dir, &torch_root) {
        Ok(cuda_includes) => {
            let mut build = base(&["nccl.cpp"]);
            build.define("USE_C10D_NCCL", None).includes(&cuda_includes);
            build.compile("ect_dist_nccl");
            println!("cargo:rustc-cfg=ect_nccl");
            println!("cargo:rustc-link-lib=dylib=torch_cuda");
            println!("cargo:rustc-link-lib=dylib=c10_cuda");
            "built".to_owned()
        }
        Err(reason) => reason,
    };
    println!("cargo:rustc-env=ECT_DIST_NCCL_STATUS={nccl_status}");
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}

/// Stops the build with `message` (Cargo shows a failing build script's stderr).
fn fail(message: &str) -> ! {
    eprintln!("error: ect-dist: {message}");
    std::process::exit(1);
}

/// The folder that holds `gloo/algorithm.h`.
fn find_gloo() -> PathBuf {
    let mut candidates: Vec<PathBuf> = env::var_os("ECT_GLOO_INCLUDE")
        .map(|v| env::split_paths(&v).collect())
        .unwrap_or_default();
    candidates.extend(["/usr/include", "/usr/local/include"].map(PathBuf::from));
    match candidates
        .iter()
        .find(|dir| dir.join("gloo/algorithm.h").exists())
    {
        Some(dir) => dir.clone(),
        None => fail(&format!(
            "gloo's headers (gloo/algorithm.h) were not found in {}: libtorch's ProcessGroupGloo.hpp \
             includes them and the PyTorch wheel does not ship them. Install Debian's libgloo-dev \
             (`apt-get install libgloo-dev`; `.ci/run` does this), or set ECT_GLOO_INCLUDE to a folder \
             containing gloo/",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The include folders for the NCCL translation unit, or why it is not built.
fn nccl_includes(lib_dir: &Path, torch_root: &Path) -> Result<Vec<PathBuf>, String> {
    let mode = env::var("ECT_DIST_NCCL").unwrap_or_default();
    if matches!(mode.as_str(), "0" | "off" | "false") {
        return Err("disabled by ECT_DIST_NCCL=0 when ect-dist was built".to_owned());
    }
    let required = matches!(mode.as_str(), "1" | "on" | "true");
    if !lib_dir.join("libtorch_cuda.so").exists() {
        let reason = format!(
            "the libtorch it was built against ({}) has no libtorch_cuda.so",
            lib_dir.display()
        );
        if required {
            fail(&format!("ECT_DIST_NCCL=1 but {reason}"));
        }
        return Err(reason);
    }
    let dirs = cuda_include_candidates(torch_root);
    let missing: Vec<String> = NCCL_HEADERS
        .iter()
        .filter(|(header, _)| !dirs.iter().any(|dir| dir.join(header).exists()))
        .map(|(header, source)| format!("{header} (from {source})"))
        .collect();
    if missing.is_empty() {
        // The other CUDA headers libtorch's CUDA headers include (cuBLAS, cuSPARSE, cuSOLVER) sit in the
        // same wheel folders; pass every candidate that exists.
        return Ok(dirs);
    }
    let reason = format!(
        "the NCCL/CUDA headers were not found when ect-dist was built: missing {}; searched {}. \
         Install them with `<venv>/bin/pip install --no-deps nvidia-cuda-crt==13.0.* \
         nvidia-cuda-cccl==13.0.*` (or set ECT_CUDA_INCLUDE) and rebuild",
        missing.join(", "),
        dirs.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if required {
        fail(&format!("ECT_DIST_NCCL=1 but {reason}"));
    }
    // Only worth a warning where NCCL could run: on a machine without an NVIDIA driver a CPU build is
    // the expected outcome.
    if Path::new("/proc/driver/nvidia/version").exists() {
        println!("cargo:warning=ect-dist builds without NCCL: {reason}");
    }
    Err(reason)
}

/// Folders that may hold CUDA and NCCL headers, most specific first; only those that exist.
fn cuda_include_candidates(torch_root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("ECT_CUDA_INCLUDE")
        .map(|v| env::split_paths(&v).collect())
        .unwrap_or_default();
    // A pip install puts the CUDA wheels next to torch: site-packages/nvidia/<package>/include.
    if let Some(site) = torch_root.parent() {
        if let Ok(entries) = std::fs::read_dir(site.join("nvidia")) {
            let mut wheel_dirs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("include"))
                .collect();
            wheel_dirs.sort();
            dirs.extend(wheel_dirs);
        }
    }
    if let Some(home) = env::var_os("CUDA_HOME") {
        dirs.push(PathBuf::from(home).join("include"));
    }
    dirs.push(PathBuf::from("/usr/local/cuda/include"));
    dirs.retain(|d| d.is_dir());
    dirs.dedup();
    dirs
}
