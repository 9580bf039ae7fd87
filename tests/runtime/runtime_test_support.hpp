#pragma once
// Helpers for the runtime tests: a runtime with test-friendly options and an error sink.
#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gpubridge/runtime/runtime.hpp"

namespace gpubridge::runtime::testing {

// Collects what the runtime reports through on_unhandled_error. Thread-safe.
class ErrorSink {
 public:
  std::function<void(std::string_view)> handler() {
    return [this](std::string_view what) {
      std::lock_guard lock(mu_);
      messages_.emplace_back(what);
    };
  }
  std::vector<std::string> messages() const {
    std::lock_guard lock(mu_);
    return messages_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> messages_;
};

inline std::unique_ptr<Runtime> make_runtime(RuntimeOptions options = {}) {
  if (options.worker_threads == 0) options.worker_threads = 2;
  auto r = Runtime::create(std::move(options));
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string());
  return r.ok() ? std::move(r).value() : nullptr;
}

// The ErrorCode carried by an exception (ok when it is not an ErrorException).
inline ErrorCode code_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const ErrorException& x) {
    return x.error().code();
  } catch (...) {
    return ErrorCode::ok;
  }
}

}  // namespace gpubridge::runtime::testing
