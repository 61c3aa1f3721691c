// The NCCL backend, compiled only when libtorch_cuda and the NCCL/CUDA headers are present (see build.rs);
// without it the Rust side reports that this build has no NCCL and never calls in here.

#include "common.h"

#include <chrono>
#include <cstdint>
#include <cstdlib>

#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

using ect_shim::guarded;

extern "C" {

char* ect_nccl_new(
    EctStore* store,
    int32_t rank,
    int32_t world_size,
    int32_t device,
    int64_t timeout_ms,
    EctBackend** out) {
  return guarded([&] {
    // Without blocking wait, a collective whose peer died is detected by ProcessGroupNCCL's watchdog,
    // which aborts the whole process; with it, Work::wait throws and the Rust caller gets an error. A
    // user's own setting wins.
    setenv("TORCH_NCCL_BLOCKING_WAIT", "1", /*overwrite=*/0);
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = std::chrono::milliseconds(timeout_ms);
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store->store, rank, world_size, opts);
    const at::Device bound(at::kCUDA, static_cast<c10::DeviceIndex>(device));
    pg->setBoundDeviceId(bound);
    // Create the communicator now, so that a missing peer shows up at start-up, not at the first step.
    pg->eagerConnectSingleDevice(bound);
    *out = new EctBackend{std::move(pg)};
  });
}

}  // extern "C"
