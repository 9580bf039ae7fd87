#pragma once
// Helpers for the runtime tests: a runtime with test-friendly options, an error sink, parked
// continuations resumed in bulk from outside the runtime, and a bounded wait for a latch.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <latch>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gpubridge/runtime/resume_context.hpp"
#include "gpubridge/runtime/runtime.hpp"

namespace gpubridge::runtime::testing {

// Collects what the runtime reports through on_unhandled_error. Thread-safe.
class ErrorSink {
 public:
  std::function<void(std::string_view)> handler() {
    return [this](std::string_view what) {
      {
        std::lock_guard lock(mu_);
        messages_.emplace_back(what);
      }
      cv_.notify_all();
    };
  }
  std::vector<std::string> messages() const {
    std::lock_guard lock(mu_);
    return messages_;
  }
  // Waits (at most 10 s) until at least n messages arrived; whether they did.
  bool wait_for(std::size_t n) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return messages_.size() >= n; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<std::string> messages_;
};

inline std::unique_ptr<Runtime> make_runtime(RuntimeOptions options = {}) {
  if (options.worker_threads == 0) options.worker_threads = 2;
  auto r = Runtime::create(std::move(options));
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string());
  return r.ok() ? std::move(r).value() : nullptr;
}

// Continuations parked until a thread outside the runtime resumes them in bulk (as a kernel
// batch's completion does), each in the ResumeContext it suspended in. Thread-safe.
class Parking {
 public:
  struct Spot {
    Resumption resumption;
    ResumeContext context;
  };
  void park(Spot& s) {
    std::lock_guard lock(mu_);
    spots_.push_back(&s);
  }
  // Resumes everything parked so far; how many.
  std::size_t resume_all() {
    std::vector<Spot*> batch;
    {
      std::lock_guard lock(mu_);
      batch.swap(spots_);
    }
    for (Spot* s : batch) s->context.resume(s->resumption);
    return batch.size();
  }

 private:
  std::mutex mu_;
  std::vector<Spot*> spots_;
};

// co_await Park{parking}: suspends until parking.resume_all() (on any thread) resumes it.
struct Park {
  Parking& parking;
  Parking::Spot spot{};
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    spot.context = ResumeContext::current();
    spot.resumption.handle = h;
    parking.park(spot);  // may be resumed on another thread from here on
  }
  void await_resume() const noexcept {}
};

// A thread outside the runtime that resumes whatever `parking` holds, in bulk, until stop() (or
// destruction), pausing `idle` whenever nothing was parked.
class BulkResumer {
 public:
  BulkResumer(Parking& parking, std::chrono::microseconds idle)
      : thread_([this, &parking, idle] {
          while (!stopping_.load()) {
            if (parking.resume_all() == 0) std::this_thread::sleep_for(idle);
          }
        }) {}
  BulkResumer(const BulkResumer&) = delete;
  BulkResumer& operator=(const BulkResumer&) = delete;
  ~BulkResumer() { stop(); }
  void stop() {
    stopping_.store(true);
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

// Waits up to `limit` for `done` to reach zero; whether it did.
inline bool wait_for(std::latch& done, std::chrono::milliseconds limit) {
  for (auto deadline = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < deadline;) {
    if (done.try_wait()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done.try_wait();
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
