// Shared by the shim's translation units: opaque handles and the one rule of this shim, that no C++
// exception crosses into Rust. Every exported function is `extern "C"`, catches everything, and reports a
// failure as a malloc'ed message (first line only: c10 messages embed stack traces) that Rust frees with
// `ect_string_free`.
#pragma once

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

// A c10d store (TCPStore, possibly wrapped in PrefixStores) owned by Rust.
struct EctStore {
  c10::intrusive_ptr<c10d::Store> store;
};

// A c10d backend (ProcessGroupGloo or ProcessGroupNCCL) owned by Rust.
struct EctBackend {
  c10::intrusive_ptr<c10d::Backend> backend;
};

namespace ect_shim {

// Returned when even the error message cannot be allocated; `ect_string_free` never frees it.
inline char* out_of_memory_message() {
  static char message[] = "out of memory while reporting a C++ error";
  return message;
}

// The first line of `text` (trailing spaces dropped), as a malloc'ed C string. Uses only C functions so
// that reporting an error cannot throw.
inline char* first_line(const char* text) noexcept {
  if (text == nullptr || *text == '\0') {
    text = "unknown C++ error (empty message)";
  }
  const char* end = std::strchr(text, '\n');
  size_t len = end != nullptr ? static_cast<size_t>(end - text) : std::strlen(text);
  while (len > 0 && (text[len - 1] == '\r' || text[len - 1] == ' ')) {
    --len;
  }
  char* out = static_cast<char*>(std::malloc(len + 1));
  if (out == nullptr) {
    return out_of_memory_message();
  }
  std::memcpy(out, text, len);
  out[len] = '\0';
  return out;
}

// Runs `body`; returns nullptr on success or the error's first line. c10::Error's `what()` appends a C++
// backtrace, so its message is taken without it.
template <typename F>
char* guarded(F&& body) noexcept {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& e) {
    return first_line(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return first_line(e.what());
  } catch (...) {
    return first_line("unknown C++ exception");
  }
}

}  // namespace ect_shim
