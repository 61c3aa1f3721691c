//! The libtorch switches tch does not bind: autocast with a chosen dtype, the cuDNN benchmark and TF32
//! flags, and the Kineto profiler.

use crate::ffi;
use crate::handle::c_string;
use std::marker::PhantomData;
use std::path::Path;

/// A failure reported by libtorch for one of these switches.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct ContextError {
    /// What was attempted.
    pub what: String,
    /// libtorch's message (first line).
    pub message: String,
}

fn check(what: impl FnOnce() -> String, err: *mut std::ffi::c_char) -> Result<(), ContextError> {
    ffi::take_error(err).map_err(|message| ContextError {
        what: what(),
        message,
    })
}

/// The device type whose autocast state is switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutocastDevice {
    /// CPU autocast (bfloat16 or float16).
    Cpu,
    /// CUDA autocast.
    Cuda,
}

impl AutocastDevice {
    fn code(self) -> i32 {
        match self {
            AutocastDevice::Cpu => 0,
            AutocastDevice::Cuda => 1,
        }
    }
}

/// The lower-precision dtype autocast casts eligible ops to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutocastDtype {
    /// IEEE half precision (needs loss scaling in training).
    Float16,
    /// bfloat16 (float32's range; no loss scaling).
    BFloat16,
}

impl AutocastDtype {
    fn code(self) -> i32 {
        match self {
            AutocastDtype::Float16 => 0,
            AutocastDtype::BFloat16 => 1,
        }
    }

    fn from_code(code: i32) -> Option<Self> {
        match code {
            0 => Some(AutocastDtype::Float16),
            1 => Some(AutocastDtype::BFloat16),
            _ => None,
        }
    }

    /// The matching tch kind.
    pub fn kind(self) -> tch::Kind {
        match self {
            AutocastDtype::Float16 => tch::Kind::Half,
            AutocastDtype::BFloat16 => tch::Kind::BFloat16,
        }
    }
}

/// Autocast switched on for one device type on the calling thread, as `torch.autocast(device, dtype)`
/// does; dropping it restores the previous state (and clears the cast cache when the outermost region
/// ends). Autocast state is per thread, so the guard is neither `Send` nor `Sync`: create it on the thread
/// that runs the forward pass.
#[derive(Debug)]
pub struct AutocastGuard {
    device: AutocastDevice,
    prev_enabled: bool,
    prev_dtype: i32,
    prev_cache: bool,
    _not_send: PhantomData<*const ()>,
}

impl AutocastGuard {
    /// Enables autocast for `device` with `dtype` on this thread until the guard is dropped.
    pub fn new(device: AutocastDevice, dtype: AutocastDtype) -> Result<Self, ContextError> {
        let (mut prev_enabled, mut prev_dtype, mut prev_cache) = (false, 0i32, false);
        // SAFETY: plain out-pointers; the shim catches every C++ exception.
        let err = unsafe {
            ffi::ect_autocast_enter(
                device.code(),
                dtype.code(),
                &mut prev_enabled,
                &mut prev_dtype,
                &mut prev_cache,
            )
        };
        check(
            || format!("enabling {device:?} autocast with {dtype:?}"),
            err,
        )?;
        Ok(Self {
            device,
            prev_enabled,
            prev_dtype,
            prev_cache,
            _not_send: PhantomData,
        })
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // SAFETY: restores the state read by `new` on this same thread (the guard is not `Send`). The
        // codes came from the shim, so the restore cannot fail on them; an error is ignored in `drop`.
        let err = unsafe {
            ffi::ect_autocast_exit(
                self.device.code(),
                self.prev_enabled,
                self.prev_dtype,
                self.prev_cache,
            )
        };
        let _ = ffi::take_error(err);
    }
}

/// Runs `f` with autocast on for `device` with `dtype`, on the calling thread.
pub fn with_autocast<T>(
    device: AutocastDevice,
    dtype: AutocastDtype,
    f: impl FnOnce() -> T,
) -> Result<T, ContextError> {
    let _guard = AutocastGuard::new(device, dtype)?;
    Ok(f())
}

/// The autocast state of `device` on the calling thread: whether it is on, and its dtype (`None` when it
/// is neither float16 nor bfloat16).
pub fn autocast_state(
    device: AutocastDevice,
) -> Result<(bool, Option<AutocastDtype>), ContextError> {
    let (mut enabled, mut dtype) = (false, -1i32);
    // SAFETY: plain out-pointers.
    let err = unsafe { ffi::ect_autocast_state(device.code(), &mut enabled, &mut dtype) };
    check(|| format!("reading the {device:?} autocast state"), err)?;
    Ok((enabled, AutocastDtype::from_code(dtype)))
}

/// A process-wide flag of libtorch's global context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendFlag {
    /// `torch.backends.cudnn.benchmark`: let cuDNN time its algorithms per input shape and keep the
    /// fastest (fast for fixed shapes; not bitwise reproducible).
    CudnnBenchmark,
    /// `torch.backends.cuda.matmul.allow_tf32`: TF32 tensor cores in cuBLAS float32 matmuls (Ampere+).
    Tf32Matmul,
    /// `torch.backends.cudnn.allow_tf32`: TF32 in cuDNN float32 convolutions.
    Tf32Cudnn,
}

impl BackendFlag {
    fn code(self) -> i32 {
        match self {
            BackendFlag::CudnnBenchmark => 0,
            BackendFlag::Tf32Matmul => 1,
            BackendFlag::Tf32Cudnn => 2,
        }
    }
}

/// Sets a global libtorch flag (process-wide, all threads).
pub fn set_backend_flag(flag: BackendFlag, value: bool) -> Result<(), ContextError> {
    // SAFETY: no pointers.
    let err = unsafe { ffi::ect_context_flag_set(flag.code(), value) };
    check(|| format!("setting {flag:?} to {value}"), err)
}

/// Reads a global libtorch flag.
pub fn backend_flag(flag: BackendFlag) -> Result<bool, ContextError> {
    let mut value = false;
    // SAFETY: plain out-pointer.
    let err = unsafe { ffi::ect_context_flag_get(flag.code(), &mut value) };
    check(|| format!("reading {flag:?}"), err)?;
    Ok(value)
}

/// What the profiler records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProfilerOptions {
    /// Also record CUDA kernels and memcpys (needs CUPTI, i.e. a CUDA build on a GPU machine).
    pub cuda: bool,
    /// Record the input shapes of each op.
    pub record_shapes: bool,
    /// Record tensor allocations and frees.
    pub profile_memory: bool,
    /// Record the C++/Python stack of each op.
    pub with_stack: bool,
}

/// libtorch's Kineto profiler running on the calling thread (and the threads it hands work to, such as
/// intra-op workers and the autograd engine), as `torch.profiler.profile` does. [`Profiler::finish`]
/// writes a Chrome trace (open it in `chrome://tracing` or <https://ui.perfetto.dev>); dropping the
/// profiler unfinished stops it and discards the trace. Only one profiler may run at a time.
#[derive(Debug)]
pub struct Profiler {
    running: bool,
    _not_send: PhantomData<*const ()>,
}

impl Profiler {
    /// Starts recording.
    pub fn start(options: ProfilerOptions) -> Result<Self, ContextError> {
        // SAFETY: no pointers.
        let err = unsafe {
            ffi::ect_profiler_start(
                options.cuda,
                options.record_shapes,
                options.profile_memory,
                options.with_stack,
            )
        };
        check(|| format!("starting the profiler ({options:?})"), err)?;
        Ok(Self {
            running: true,
            _not_send: PhantomData,
        })
    }

    /// Stops recording and writes the Chrome trace JSON to `path`.
    pub fn finish(mut self, path: &Path) -> Result<(), ContextError> {
        self.running = false;
        let what = || format!("writing the profiler trace to {}", path.display());
        let c_path = c_string(&path.to_string_lossy()).map_err(|message| ContextError {
            what: what(),
            message,
        })?;
        // SAFETY: valid C string; the profiler was started by `start` on this thread.
        let err = unsafe { ffi::ect_profiler_stop(c_path.as_ptr()) };
        check(what, err)
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        if self.running {
            // SAFETY: a null path discards the trace.
            let _ = ffi::take_error(unsafe { ffi::ect_profiler_stop(std::ptr::null()) });
        }
    }
}

/// Runs `f` under the profiler and writes its Chrome trace to `path`.
pub fn profile_to<T>(
    path: &Path,
    options: ProfilerOptions,
    f: impl FnOnce() -> T,
) -> Result<T, ContextError> {
    let profiler = Profiler::start(options)?;
    let out = f();
    profiler.finish(path)?;
    Ok(out)
}

/// Sets `param`'s gradient to `grad` (Python's `param.grad = grad`): backward then accumulates into
/// `grad` in place, so gradients can be views of one flat buffer (DDP's `gradient_as_bucket_view`).
/// `grad` must have the parameter's shape, dtype and device.
pub fn set_grad(param: &mut tch::Tensor, grad: &mut tch::Tensor) -> Result<(), ContextError> {
    // SAFETY: both pointers come from live tensors borrowed for the call; the shim copies the handle.
    let err = unsafe { ffi::ect_set_grad(param.as_mut_ptr(), grad.as_mut_ptr()) };
    check(|| "setting a parameter's gradient".to_owned(), err)
}
