//! Owning wrappers of the shim's handles: each frees its C++ object exactly once.

use crate::ffi;
use std::ffi::CString;
use std::time::Duration;

/// Milliseconds for the shim, at least 1 (0 means "no timeout" to c10d).
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// A C string for the shim; interior NULs (impossible in the keys and hosts built here) become errors.
pub(crate) fn c_string(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

/// A c10d store.
pub(crate) struct Store(*mut ffi::EctStore);

// SAFETY: a c10d store is a heap object with no thread affinity; each `Store` is used by one thread at a
// time (`&mut self` on every operation).
unsafe impl Send for Store {}

impl Store {
    /// A `TCPStore` at `host:port`, hosting it when `is_server`.
    pub(crate) fn tcp(
        host: &str,
        port: u16,
        is_server: bool,
        world_size: usize,
        timeout: Duration,
    ) -> Result<Self, String> {
        let host = c_string(host)?;
        let mut out = std::ptr::null_mut();
        let world = i64::try_from(world_size).unwrap_or(i64::MAX);
        // SAFETY: valid C string and out-pointer; the shim catches every C++ exception.
        ffi::take_error(unsafe {
            ffi::ect_store_tcp(
                host.as_ptr(),
                port,
                is_server,
                world,
                millis(timeout),
                &mut out,
            )
        })?;
        Ok(Self(out))
    }

    /// `PrefixStore(prefix, self)`: shares the connection, keys under `prefix/`.
    pub(crate) fn prefixed(&self, prefix: &str) -> Result<Self, String> {
        let prefix = c_string(prefix)?;
        let mut out = std::ptr::null_mut();
        // SAFETY: `self.0` is a live store; the new store holds its own reference to it.
        ffi::take_error(unsafe { ffi::ect_store_prefix(self.0, prefix.as_ptr(), &mut out) })?;
        Ok(Self(out))
    }

    /// A new connection to the same store (same prefixes), for use on another thread.
    pub(crate) fn try_clone(&self) -> Result<Self, String> {
        let mut out = std::ptr::null_mut();
        // SAFETY: `self.0` is a live store.
        ffi::take_error(unsafe { ffi::ect_store_clone(self.0, &mut out) })?;
        Ok(Self(out))
    }

    /// The timeout of this connection's blocking operations.
    pub(crate) fn set_timeout(&mut self, timeout: Duration) -> Result<(), String> {
        // SAFETY: `self.0` is a live store.
        ffi::take_error(unsafe { ffi::ect_store_set_timeout(self.0, millis(timeout)) })
    }

    /// Atomically adds `delta` to the counter `key` (created at 0) and returns its new value.
    pub(crate) fn add(&mut self, key: &str, delta: i64) -> Result<i64, String> {
        let key = c_string(key)?;
        let mut value = 0i64;
        // SAFETY: `self.0` is a live store, `key` a valid C string.
        ffi::take_error(unsafe { ffi::ect_store_add(self.0, key.as_ptr(), delta, &mut value) })?;
        Ok(value)
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::EctStore {
        self.0
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: owned pointer, freed once.
        unsafe { ffi::ect_store_free(self.0) }
    }
}

/// A c10d backend (a process group for one device type).
pub(crate) struct BackendHandle(*mut ffi::EctBackend);

// SAFETY: c10d backends are used from any thread in PyTorch; `Dist` serialises the calls.
unsafe impl Send for BackendHandle {}

impl BackendHandle {
    pub(crate) fn gloo(
        store: &Store,
        rank: usize,
        world_size: usize,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut out = std::ptr::null_mut();
        // SAFETY: live store; the backend keeps its own reference to it.
        ffi::take_error(unsafe {
            ffi::ect_gloo_new(
                store.as_ptr(),
                rank as i32,
                world_size as i32,
                millis(timeout),
                &mut out,
            )
        })?;
        Ok(Self(out))
    }

    #[cfg(ect_nccl)]
    pub(crate) fn nccl(
        store: &Store,
        rank: usize,
        world_size: usize,
        device: usize,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut out = std::ptr::null_mut();
        // SAFETY: live store; the backend keeps its own reference to it.
        ffi::take_error(unsafe {
            ffi::ect_nccl_new(
                store.as_ptr(),
                rank as i32,
                world_size as i32,
                device as i32,
                millis(timeout),
                &mut out,
            )
        })?;
        Ok(Self(out))
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::EctBackend {
        self.0
    }

    /// Gives up the C++ object without destroying it (see `Dist`'s `Drop`).
    pub(crate) fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for BackendHandle {
    fn drop(&mut self) {
        // SAFETY: owned pointer, freed once.
        unsafe { ffi::ect_backend_free(self.0) }
    }
}
