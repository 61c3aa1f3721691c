// The libtorch switches tch does not bind: autocast with a chosen dtype, cuDNN benchmark and TF32 flags,
// and the Kineto profiler written as a Chrome trace.

#include "common.h"

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/profiler_kineto.h>

using ect_shim::guarded;

namespace {

at::DeviceType autocast_device(int32_t code) {
  switch (code) {
    case 0:
      return at::kCPU;
    case 1:
      return at::kCUDA;
    default:
      TORCH_CHECK(false, "unknown autocast device code ", code);
  }
}

at::ScalarType autocast_dtype(int32_t code) {
  switch (code) {
    case 0:
      return at::kHalf;
    case 1:
      return at::kBFloat16;
    default:
      TORCH_CHECK(false, "unknown autocast dtype code ", code);
  }
}

// The dtype codes of `autocast_dtype`, -1 for any other dtype.
int32_t autocast_dtype_code(at::ScalarType dtype) {
  switch (dtype) {
    case at::kHalf:
      return 0;
    case at::kBFloat16:
      return 1;
    default:
      return -1;
  }
}

}  // namespace

extern "C" {

// What torch.autocast.__enter__ does, on the calling thread (autocast state is thread-local). The previous
// state is returned for `ect_autocast_exit`; `prev_dtype` is an opaque c10::ScalarType.
char* ect_autocast_enter(
    int32_t device,
    int32_t dtype,
    bool* prev_enabled,
    int32_t* prev_dtype,
    bool* prev_cache) {
  return guarded([&] {
    const auto dev = autocast_device(device);
    const auto fast = autocast_dtype(dtype);
    *prev_cache = at::autocast::is_autocast_cache_enabled();
    *prev_enabled = at::autocast::is_autocast_enabled(dev);
    *prev_dtype = static_cast<int32_t>(at::autocast::get_autocast_dtype(dev));
    at::autocast::set_autocast_enabled(dev, true);
    at::autocast::set_autocast_dtype(dev, fast);
    at::autocast::increment_nesting();
    at::autocast::set_autocast_cache_enabled(true);
  });
}

// What torch.autocast.__exit__ does: the cast cache is cleared when the outermost region ends.
char* ect_autocast_exit(int32_t device, bool prev_enabled, int32_t prev_dtype, bool prev_cache) {
  return guarded([&] {
    const auto dev = autocast_device(device);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(dev, prev_enabled);
    at::autocast::set_autocast_dtype(dev, static_cast<at::ScalarType>(prev_dtype));
    at::autocast::set_autocast_cache_enabled(prev_cache);
  });
}

char* ect_autocast_state(int32_t device, bool* enabled, int32_t* dtype) {
  return guarded([&] {
    const auto dev = autocast_device(device);
    *enabled = at::autocast::is_autocast_enabled(dev);
    *dtype = autocast_dtype_code(at::autocast::get_autocast_dtype(dev));
  });
}

// Flags of at::globalContext(); `which`: 0 cuDNN benchmark, 1 TF32 in cuBLAS matmuls, 2 TF32 in cuDNN.
char* ect_context_flag_set(int32_t which, bool value) {
  return guarded([&] {
    auto& ctx = at::globalContext();
    switch (which) {
      case 0:
        ctx.setBenchmarkCuDNN(value);
        break;
      case 1:
        ctx.setAllowTF32CuBLAS(value);
        break;
      case 2:
        ctx.setAllowTF32CuDNN(value);
        break;
      default:
        TORCH_CHECK(false, "unknown context flag ", which);
    }
  });
}

char* ect_context_flag_get(int32_t which, bool* value) {
  return guarded([&] {
    const auto& ctx = at::globalContext();
    switch (which) {
      case 0:
        *value = ctx.benchmarkCuDNN();
        break;
      case 1:
        *value = ctx.allowTF32CuBLAS();
        break;
      case 2:
        *value = ctx.allowTF32CuDNN();
        break;
      default:
        TORCH_CHECK(false, "unknown context flag ", which);
    }
  });
}

// Starts the Kineto profiler on the calling thread (and the threads it hands work to), as
// torch.profiler.profile does: prepare, then enable.
char* ect_profiler_start(bool cuda, bool record_shapes, bool profile_memory, bool with_stack) {
  return guarded([&] {
    namespace impl = torch::profiler::impl;
    const impl::ProfilerConfig config(
        impl::ProfilerState::KINETO, record_shapes, profile_memory, with_stack);
    std::set<impl::ActivityType> activities{impl::ActivityType::CPU};
    if (cuda) {
      activities.insert(impl::ActivityType::CUDA);
    }
    torch::autograd::profiler::prepareProfiler(config, activities);
    torch::autograd::profiler::enableProfiler(config, activities);
  });
}

// Stops the profiler; writes the Chrome trace to `path` unless it is null.
char* ect_profiler_stop(const char* path) {
  return guarded([&] {
    auto result = torch::autograd::profiler::disableProfiler();
    if (path != nullptr) {
      TORCH_CHECK(result != nullptr, "the profiler returned no result");
      result->save(std::string(path));
    }
  });
}

// `param.grad = grad` (Python's setter): the gradient that backward accumulates into in place, so that
// gradients can live in views of one flat buffer (DDP's `gradient_as_bucket_view`).
char* ect_set_grad(at::Tensor* param, at::Tensor* grad) {
  return guarded([&] {
    TORCH_CHECK(param != nullptr && param->defined(), "set_grad: the parameter is undefined");
    TORCH_CHECK(grad != nullptr && grad->defined(), "set_grad: the gradient is undefined");
    TORCH_CHECK(
        grad->sizes() == param->sizes() && grad->scalar_type() == param->scalar_type() &&
            grad->device() == param->device(),
        "set_grad: gradient ", grad->sizes(), " ", grad->scalar_type(), " on ", grad->device(),
        " does not match parameter ", param->sizes(), " ", param->scalar_type(), " on ",
        param->device());
    param->mutable_grad() = *grad;
  });
}

}  // extern "C"
