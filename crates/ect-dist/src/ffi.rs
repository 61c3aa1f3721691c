//! The C ABI of the shim (`src/shim/*.cpp`). Every function catches all C++ exceptions and returns either
//! null (success) or a `malloc`'ed error message that [`take_error`] turns into a `String`.

use std::ffi::{c_char, CStr};
use torch_sys::C_tensor;

/// An opaque `c10::intrusive_ptr<c10d::Store>` holder.
#[repr(C)]
pub struct EctStore {
    _private: [u8; 0],
}

/// An opaque `c10::intrusive_ptr<c10d::Backend>` holder.
#[repr(C)]
pub struct EctBackend {
    _private: [u8; 0],
}

extern "C" {
    pub fn ect_string_free(s: *mut c_char);

    pub fn ect_store_tcp(
        host: *const c_char,
        port: u16,
        is_server: bool,
        world_size: i64,
        timeout_ms: i64,
        out: *mut *mut EctStore,
    ) -> *mut c_char;
    pub fn ect_store_prefix(
        base: *const EctStore,
        prefix: *const c_char,
        out: *mut *mut EctStore,
    ) -> *mut c_char;
    pub fn ect_store_clone(base: *const EctStore, out: *mut *mut EctStore) -> *mut c_char;
    pub fn ect_store_set_timeout(store: *mut EctStore, timeout_ms: i64) -> *mut c_char;
    pub fn ect_store_add(
        store: *mut EctStore,
        key: *const c_char,
        delta: i64,
        out: *mut i64,
    ) -> *mut c_char;
    pub fn ect_store_free(store: *mut EctStore);

    pub fn ect_gloo_new(
        store: *mut EctStore,
        rank: i32,
        world_size: i32,
        timeout_ms: i64,
        out: *mut *mut EctBackend,
    ) -> *mut c_char;
    #[cfg(ect_nccl)]
    pub fn ect_nccl_new(
        store: *mut EctStore,
        rank: i32,
        world_size: i32,
        device: i32,
        timeout_ms: i64,
        out: *mut *mut EctBackend,
    ) -> *mut c_char;
    pub fn ect_backend_free(backend: *mut EctBackend);
    pub fn ect_allreduce(
        backend: *mut EctBackend,
        tensors: *const *mut C_tensor,
        n: usize,
        op: i32,
        timeout_ms: i64,
    ) -> *mut c_char;
    pub fn ect_broadcast(
        backend: *mut EctBackend,
        tensors: *const *mut C_tensor,
        n: usize,
        root: i32,
        timeout_ms: i64,
    ) -> *mut c_char;
    pub fn ect_barrier(backend: *mut EctBackend, timeout_ms: i64) -> *mut c_char;

    pub fn ect_autocast_enter(
        device: i32,
        dtype: i32,
        prev_enabled: *mut bool,
        prev_dtype: *mut i32,
        prev_cache: *mut bool,
    ) -> *mut c_char;
    pub fn ect_autocast_exit(
        device: i32,
        prev_enabled: bool,
        prev_dtype: i32,
        prev_cache: bool,
    ) -> *mut c_char;
    pub fn ect_autocast_state(device: i32, enabled: *mut bool, dtype: *mut i32) -> *mut c_char;
    pub fn ect_context_flag_set(which: i32, value: bool) -> *mut c_char;
    pub fn ect_context_flag_get(which: i32, value: *mut bool) -> *mut c_char;
    pub fn ect_profiler_start(
        cuda: bool,
        record_shapes: bool,
        profile_memory: bool,
        with_stack: bool,
    ) -> *mut c_char;
    pub fn ect_profiler_stop(path: *const c_char) -> *mut c_char;
    pub fn ect_set_grad(
        param: *mut torch_sys::C_tensor,
        grad: *mut torch_sys::C_tensor,
    ) -> *mut c_char;
}

/// Turns a shim return value into `Ok(())` (null) or the message it carries, freeing it.
pub fn take_error(err: *mut c_char) -> Result<(), String> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string from the shim, owned by us until freed once.
    let message = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: freed exactly once, by the shim's allocator.
    unsafe { ect_string_free(err) };
    Err(message)
}
