//! Turning a configured [`DeviceSpec`] into a libtorch device, after checking that it exists (a missing
//! GPU is an error naming what this machine has, before anything is written).

use ect_config::DeviceSpec;
use tch::Device;

use crate::error::{Result, TrainError};

/// The libtorch device `spec` names: `auto` is the first CUDA device when one is available, else the
/// CPU; an explicit CUDA device must exist.
pub fn resolve(spec: DeviceSpec) -> Result<Device> {
    match spec {
        DeviceSpec::Auto => Ok(Device::cuda_if_available()),
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(i) => {
            let available = if tch::Cuda::is_available() {
                tch::Cuda::device_count().max(0) as usize
            } else {
                0
            };
            if i >= available {
                let have = match available {
                    0 => "no CUDA device is available to libtorch (no NVIDIA driver or GPU, or a CPU-only libtorch; `ect info` shows what libtorch sees)".to_owned(),
                    n => format!("libtorch sees {n} CUDA device(s), cuda:0 to cuda:{}", n - 1),
                };
                return Err(TrainError::invalid(
                    "device",
                    format!("{spec} was requested but {have}"),
                ));
            }
            Ok(Device::Cuda(i))
        }
    }
}
