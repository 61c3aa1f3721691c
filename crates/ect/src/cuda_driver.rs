//! Device names and memory from the CUDA driver API (`libcuda.so.1`), which tch does not expose.
//!
//! The driver is loaded at run time, so the binary still starts on machines without one.

use anyhow::{bail, Context};
use std::ffi::{c_char, c_int, CStr};

type CuResult = c_int;

/// Name and total memory (bytes) of CUDA device `index`, asked of the driver.
pub fn device_properties(index: usize) -> anyhow::Result<(String, u64)> {
    // SAFETY: loading the system's CUDA driver runs its initializers, which are designed to be loaded
    // into arbitrary processes (libtorch loads the same library).
    let lib =
        unsafe { libloading::Library::new("libcuda.so.1") }.context("cannot load libcuda.so.1")?;
    // SAFETY: the signatures below are those of the CUDA driver API (cuda.h), stable since CUDA 3.2.
    unsafe {
        let init: libloading::Symbol<'_, unsafe extern "C" fn(u32) -> CuResult> =
            lib.get(b"cuInit\0")?;
        let get: libloading::Symbol<'_, unsafe extern "C" fn(*mut c_int, c_int) -> CuResult> =
            lib.get(b"cuDeviceGet\0")?;
        let name: libloading::Symbol<
            '_,
            unsafe extern "C" fn(*mut c_char, c_int, c_int) -> CuResult,
        > = lib.get(b"cuDeviceGetName\0")?;
        let total: libloading::Symbol<'_, unsafe extern "C" fn(*mut usize, c_int) -> CuResult> =
            lib.get(b"cuDeviceTotalMem_v2\0")?;
        check(init(0), "cuInit")?;
        let mut device: c_int = 0;
        check(get(&mut device, index as c_int), "cuDeviceGet")?;
        let mut buf = [0 as c_char; 256];
        check(
            name(buf.as_mut_ptr(), buf.len() as c_int, device),
            "cuDeviceGetName",
        )?;
        let mut bytes: usize = 0;
        check(total(&mut bytes, device), "cuDeviceTotalMem_v2")?;
        let name = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
        Ok((name, bytes as u64))
    }
}

fn check(code: CuResult, call: &str) -> anyhow::Result<()> {
    if code != 0 {
        bail!("{call} failed with CUDA error {code}");
    }
    Ok(())
}
