#pragma once
// sync_wait(task): runs a Task from non-coroutine code and blocks the calling thread until it
// completes; returns its value or rethrows its exception.
//
// The task starts on the calling thread and continues wherever it is resumed (grain calls made
// from it resume it on a runtime worker). Never call it on a runtime worker thread or from a
// grain: it blocks the thread (Runtime::run checks this; sync_wait itself cannot).
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include "gpubridge/runtime/messaging/message.hpp"
#include "gpubridge/runtime/request_context.hpp"
#include "gpubridge/runtime/task.hpp"

namespace gpubridge::runtime {

namespace internal {

// Completion state shared by a blocked thread and the root coroutine that runs the task.
template <typename T>
struct SyncState {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::exception_ptr error;
  std::optional<std::conditional_t<std::is_void_v<T>, char, T>> value;

  void finish() {
    std::lock_guard lock(mu);  // notify under the lock: the waiter may destroy *this right after
    done = true;
    cv.notify_all();
  }
  void wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done; });
  }
  T take() {
    if (error) std::rethrow_exception(error);
    if constexpr (!std::is_void_v<T>) return std::move(*value);
  }
};

// A coroutine that starts eagerly, destroys its own frame at the end and reports nothing: the
// body catches everything. Used for roots (sync_wait, Runtime::run, Runtime::spawn).
struct RootTask {
  struct promise_type : PooledFrame {
    // Lets a scheduler start the root: run() resumes it on the worker.
    Resumption start{{nullptr, [](WorkItem* w) { internal::resume(static_cast<Resumption*>(w)->handle); }}, {}, nullptr};
    RequestContext context;  // the starting code's request context, copied when the root starts
    RootTask get_return_object() noexcept {
      return RootTask{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    std::suspend_never final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }  // bodies catch everything
  };
  std::coroutine_handle<promise_type> handle;
};

template <typename T>
RootTask sync_root(Task<T> task, SyncState<T>& state) {
  {
    Task<T> owned = std::move(task);
    try {
      if constexpr (std::is_void_v<T>) {
        co_await owned;
      } else {
        state.value.emplace(co_await owned);
      }
    } catch (...) {
      state.error = std::current_exception();
    }
  }  // the task's frames are freed here, before the waiting thread wakes up
  state.finish();
}

}  // namespace internal

template <typename T>
T sync_wait(Task<T> task) {
  internal::SyncState<T> state;
  auto root = internal::sync_root(std::move(task), state).handle;
  root.promise().context = RequestContext::current();
  // The root may finish (and free its frame) inside resume(); the pointer is not read after.
  RequestContext* previous = internal::exchange_current_context(&root.promise().context);
  internal::resume(root);
  internal::exchange_current_context(previous);
  state.wait();
  return state.take();
}

}  // namespace gpubridge::runtime
