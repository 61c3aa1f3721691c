//! Process-wide libtorch switches of a run (`[backend]`): cuDNN autotuning and TF32 arithmetic on CUDA.
//! They change how fast a GPU step runs, not what is trained (up to floating-point rounding), so a
//! resumed run may change them. The CPU ignores both.

use serde::{Deserialize, Serialize};

/// libtorch backend switches applied once when a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// `torch.backends.cudnn.benchmark`: cuDNN times its convolution algorithms for each input shape
    /// once and keeps the fastest. On (the reference's training loop sets it) because a training run's
    /// shapes are fixed; the choice is not bitwise reproducible between processes.
    pub cudnn_benchmark: bool,
    /// TF32 tensor-core arithmetic in float32 matmuls and cuDNN convolutions (Ampere and newer GPUs):
    /// about 10 mantissa bits instead of 23. Off, as the reference's `enable_tf32 = False`.
    pub allow_tf32: bool,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            cudnn_benchmark: true,
            allow_tf32: false,
        }
    }
}
