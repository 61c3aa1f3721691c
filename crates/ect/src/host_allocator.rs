//! glibc allocator settings for libtorch's CPU tensors.
//!
//! glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh `mmap` and gives it
//! back with `munmap` on free, so each large activation tensor is page-faulted and zeroed again on every
//! forward pass. At sampling batch 250 on the Fashion-MNIST network that made sampling 2.4x slower than
//! with the memory kept (25.7 s against 10.7 s for 2,000 one-step images on 2 cores). Keeping freed memory
//! in the heap costs a higher resident size at most equal to the run's peak.

/// Environment variables through which a user sets glibc's own tuning, or asks for glibc's defaults
/// (`ECT_SYSTEM_MALLOC`); when one is present we leave the allocator alone.
const USER_TUNING: [&str; 4] = [
    "ECT_SYSTEM_MALLOC",
    "MALLOC_MMAP_MAX_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
];

/// Makes glibc keep freed memory for reuse instead of unmapping it (no `mmap` for large blocks, no trimming
/// of the heap top). Does nothing on other C libraries or when the user tuned glibc through the environment.
pub fn keep_freed_memory() {
    if USER_TUNING.iter().any(|v| std::env::var_os(v).is_some()) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
