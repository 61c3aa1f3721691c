//! Copies between the host and the training device that keep a GPU step asynchronous.
//!
//! A CUDA copy from pageable host memory is synchronous: libtorch stages it and waits for the stream,
//! so the host stalls until every kernel queued before it has run. [`upload`] copies from pinned
//! memory without waiting, which lets the next micro-batch's data and noise levels be queued while the
//! GPU still works on the previous one. Reads the other way ([`read_scalar`]) always wait for the
//! device; the training step makes them only where a decision needs the value, and counts them
//! ([`host_reads`]) so a test can hold it to one read per step.

use std::cell::Cell;

use tch::{Device, Tensor};

thread_local! {
    static HOST_READS: Cell<u64> = const { Cell::new(0) };
}

/// `host` (a CPU tensor) on `device`: pinned and copied without blocking on CUDA, a plain copy
/// elsewhere. libtorch's pinned-memory allocator keeps the staging buffer alive until the copy has run.
pub fn upload(host: Tensor, device: Device) -> Tensor {
    if !device.is_cuda() {
        return host.to_device(device);
    }
    match host.f_pin_memory(device) {
        Ok(pinned) => pinned.to_device_(device, pinned.kind(), true, false),
        // Pinning can fail where page-locked memory is limited (containers); a blocking copy still works.
        Err(_) => host.to_device(device),
    }
}

/// The value of a one-element tensor on the host (waits for the device), counted in [`host_reads`].
pub fn read_scalar(t: &Tensor) -> f64 {
    HOST_READS.with(|n| n.set(n.get() + 1));
    t.double_value(&[])
}

/// Device-to-host reads made through [`read_scalar`] on this thread so far.
pub fn host_reads() -> u64 {
    HOST_READS.with(Cell::get)
}
