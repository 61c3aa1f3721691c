// c10d stores, the Gloo backend and the collectives the Rust side calls (see src/ffi.rs for the contract).
// Built with -DUSE_C10D_GLOO against libtorch's headers and Debian's libgloo-dev headers.

#include "common.h"

#include <chrono>
#include <cstdint>
#include <sstream>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

using ect_shim::guarded;

namespace {

std::chrono::milliseconds millis(int64_t ms) {
  return std::chrono::milliseconds(ms);
}

c10d::ReduceOp reduce_op(int32_t op) {
  switch (op) {
    case 0:
      return c10d::ReduceOp::SUM;
    case 1:
      return c10d::ReduceOp::MAX;
    case 2:
      return c10d::ReduceOp::MIN;
    default:
      TORCH_CHECK(false, "unknown reduce op code ", op);
  }
}

// Waits for every issued work until one shared deadline. Waiting on all of them, even after a failure,
// keeps the order of completion the same on every rank; a deadline for the whole call (rather than one
// timeout per work) keeps a stalled peer from costing one timeout per bucket.
void wait_all(
    std::vector<c10::intrusive_ptr<c10d::Work>>& works,
    int64_t timeout_ms,
    const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + millis(timeout_ms);
  std::exception_ptr first;
  bool timed_out = false;
  for (auto& work : works) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() < 1) {
      left = millis(1);
    }
    try {
      work->wait(left);
    } catch (...) {
      if (!first) {
        first = std::current_exception();
        // Work::wait reports its own deadline as a bare "Operation timed out!".
        timed_out = !work->isCompleted();
      }
    }
  }
  if (timed_out) {
    std::ostringstream msg;
    msg << what << " did not complete within " << timeout_ms << " ms";
    throw std::runtime_error(msg.str());
  }
  if (first) {
    std::rethrow_exception(first);
  }
}

// Issues one collective per tensor (all before waiting, so that the backend pipelines them), then waits
// for all of them. When issuing fails part-way, the works already issued are still waited for.
template <typename Issue>
void issue_and_wait(
    at::Tensor* const* tensors,
    size_t n,
    int64_t timeout_ms,
    const char* what,
    Issue issue) {
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  works.reserve(n);
  std::exception_ptr issue_error;
  for (size_t i = 0; i < n; ++i) {
    std::vector<at::Tensor> one{*tensors[i]};
    try {
      works.push_back(issue(one));
    } catch (...) {
      issue_error = std::current_exception();
      break;
    }
  }
  wait_all(works, timeout_ms, what);
  if (issue_error) {
    std::rethrow_exception(issue_error);
  }
}

}  // namespace

extern "C" {

void ect_string_free(char* s) {
  if (s != nullptr && s != ect_shim::out_of_memory_message()) {
    std::free(s);
  }
}

char* ect_store_tcp(
    const char* host,
    uint16_t port,
    bool is_server,
    int64_t world_size,
    int64_t timeout_ms,
    EctStore** out) {
  return guarded([&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server;
    // As torch.distributed.rendezvous does: the server waits for every rank to connect (and each client
    // counts itself in), so a rank that never arrives fails here, within the timeout.
    if (world_size > 0) {
      opts.numWorkers = static_cast<size_t>(world_size);
    }
    opts.waitWorkers = true;
    opts.multiTenant = is_server;
    opts.timeout = millis(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    *out = new EctStore{std::move(store)};
  });
}

char* ect_store_prefix(const EctStore* base, const char* prefix, EctStore** out) {
  return guarded([&] {
    auto store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), base->store);
    *out = new EctStore{std::move(store)};
  });
}

char* ect_store_clone(const EctStore* base, EctStore** out) {
  return guarded([&] { *out = new EctStore{base->store->clone()}; });
}

char* ect_store_set_timeout(EctStore* store, int64_t timeout_ms) {
  return guarded([&] { store->store->setTimeout(millis(timeout_ms)); });
}

char* ect_store_add(EctStore* store, const char* key, int64_t delta, int64_t* out) {
  return guarded([&] { *out = store->store->add(std::string(key), delta); });
}

void ect_store_free(EctStore* store) {
  delete store;
}

char* ect_gloo_new(
    EctStore* store,
    int32_t rank,
    int32_t world_size,
    int64_t timeout_ms,
    EctBackend** out) {
  return guarded([&] {
    auto opts = c10d::ProcessGroupGloo::Options::create(millis(timeout_ms));
    // As torch.distributed does: GLOO_SOCKET_IFNAME (a comma-separated list) picks the interfaces,
    // otherwise the address this machine's hostname resolves to (loopback when it does not resolve).
    const char* ifnames = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifnames != nullptr && *ifnames != '\0') {
      std::stringstream list(ifnames);
      std::string name;
      while (std::getline(list, name, ',')) {
        if (!name.empty()) {
          opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
        }
      }
    }
    if (opts->devices.empty()) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    opts->threads = static_cast<int>(opts->devices.size()) * 2;
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store->store, rank, world_size, opts);
    *out = new EctBackend{std::move(pg)};
  });
}

void ect_backend_free(EctBackend* backend) {
  delete backend;
}

// In-place all-reduce of `n` tensors (one collective each, issued together, waited together).
char* ect_allreduce(
    EctBackend* backend,
    at::Tensor* const* tensors,
    size_t n,
    int32_t op,
    int64_t timeout_ms) {
  return guarded([&] {
    c10d::AllreduceOptions opts;
    opts.reduceOp = reduce_op(op);
    issue_and_wait(tensors, n, timeout_ms, "all_reduce", [&](std::vector<at::Tensor>& one) {
      return backend->backend->allreduce(one, opts);
    });
  });
}

// In-place broadcast of `n` tensors from `root`.
char* ect_broadcast(
    EctBackend* backend,
    at::Tensor* const* tensors,
    size_t n,
    int32_t root,
    int64_t timeout_ms) {
  return guarded([&] {
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    issue_and_wait(tensors, n, timeout_ms, "broadcast", [&](std::vector<at::Tensor>& one) {
      return backend->backend->broadcast(one, opts);
    });
  });
}

char* ect_barrier(EctBackend* backend, int64_t timeout_ms) {
  return guarded([&] {
    std::vector<c10::intrusive_ptr<c10d::Work>> works{backend->backend->barrier()};
    wait_all(works, timeout_ms, "barrier");
  });
}

}  // extern "C"
