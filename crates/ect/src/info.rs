//! `ect info`: what libtorch this binary runs on and which devices it can use.

use crate::cuda_driver;
use serde_json::json;

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

/// Prints the libtorch version (as built against), CPU threads and each CUDA device.
pub fn run(args: &InfoArgs) -> anyhow::Result<()> {
    let version = env!("ECT_LIBTORCH_VERSION");
    let lib_dir = env!("ECT_LIBTORCH_LIB");
    let threads = tch::get_num_threads();
    let cuda_available = tch::Cuda::is_available();
    let count = if cuda_available {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    };
    let devices: Vec<DeviceInfo> = (0..count).map(describe_device).collect();
    if args.json {
        let devices: Vec<_> = devices
            .iter()
            .map(|d| json!({"index": d.index, "name": d.name, "total_memory_bytes": d.total_memory_bytes}))
            .collect();
        let value = json!({
            "libtorch_version": version,
            "libtorch_lib": lib_dir,
            "cpu_threads": threads,
            "cuda_available": cuda_available,
            "cudnn_available": cuda_available && tch::Cuda::cudnn_is_available(),
            "cuda_devices": devices,
        });
        println!("{value}");
        return Ok(());
    }
    println!("libtorch {version} ({lib_dir})");
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
    Ok(())
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
