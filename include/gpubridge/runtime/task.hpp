#pragma once
// Task<T>: the runtime's coroutine type. Grain methods, lifecycle hooks and timer callbacks are
// coroutines returning Task<T>.
//
// Contract:
// - Lazy: creating a Task runs nothing; the body starts when the Task is co_awaited (or handed to
//   Runtime::run / Runtime::spawn / sync_wait).
// - Move-only; the Task owns its coroutine frame and destroys it in its destructor. Await a Task
//   once. Destroying a Task that is suspended destroys its frame (and the Tasks it awaits).
// - An exception that leaves the body is stored and rethrown by the co_await in the awaiter.
// - Symmetric transfer: awaiting a Task and returning from one hand control between frames
//   without nesting (see internal/trampoline.hpp), so a loop awaiting Tasks that complete
//   synchronously does not grow the stack, in optimised, debug and sanitizer builds alike.
// - Frames come from FramePool (thread-local size classes): warm code allocates nothing.
// - Not thread-safe: one coroutine at a time awaits a given Task.
#include <coroutine>
#include <exception>
#include <type_traits>
#include <utility>
#include <variant>

#include "gpubridge/runtime/frame_pool.hpp"
#include "gpubridge/runtime/internal/trampoline.hpp"

namespace gpubridge::runtime {

template <typename T = void>
class Task;

namespace internal {

// Routes coroutine frame allocation to FramePool; promise types of the runtime derive from it.
struct PooledFrame {
  static void* operator new(std::size_t size) { return FramePool::allocate(size); }
  static void operator delete(void* p, std::size_t size) noexcept { FramePool::deallocate(p, size); }
};

class TaskPromiseBase : public PooledFrame {
 public:
  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <typename P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) const noexcept {
      std::coroutine_handle<> c = h.promise().continuation_;
      return c ? transfer_to(c) : std::noop_coroutine();
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() const noexcept { return {}; }
  FinalAwaiter final_suspend() const noexcept { return {}; }
  void set_continuation(std::coroutine_handle<> c) noexcept { continuation_ = c; }
  std::coroutine_handle<> continuation() const noexcept { return continuation_; }

 private:
  std::coroutine_handle<> continuation_;
};

template <typename T>
class TaskPromise final : public TaskPromiseBase {
 public:
  Task<T> get_return_object() noexcept;
  template <typename U = T>
    requires std::is_convertible_v<U&&, T>
  void return_value(U&& value) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    state_.template emplace<1>(std::forward<U>(value));
  }
  void unhandled_exception() noexcept { state_.template emplace<2>(std::current_exception()); }

  T take_result() {
    if (state_.index() == 2) std::rethrow_exception(std::get<2>(state_));
    return std::move(std::get<1>(state_));
  }

 private:
  std::variant<std::monostate, T, std::exception_ptr> state_;
};

template <>
class TaskPromise<void> final : public TaskPromiseBase {
 public:
  Task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void unhandled_exception() noexcept { error_ = std::current_exception(); }
  void take_result() {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::exception_ptr error_;
};

}  // namespace internal

template <typename T>
class [[nodiscard]] Task {
  static_assert(!std::is_reference_v<T>, "Task<T&> is not supported: return a value or a pointer");

 public:
  using promise_type = internal::TaskPromise<T>;
  using value_type = T;
  using handle_type = std::coroutine_handle<promise_type>;

  Task() noexcept = default;
  explicit Task(handle_type h) noexcept : h_(h) {}
  Task(Task&& other) noexcept : h_(std::exchange(other.h_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      reset();
      h_ = std::exchange(other.h_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { reset(); }

  bool valid() const noexcept { return static_cast<bool>(h_); }

  struct Awaiter {
    handle_type h;
    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) const noexcept {
      h.promise().set_continuation(awaiting);
      return internal::transfer_to(h);  // symmetric transfer into the (not yet started) body
    }
    T await_resume() const { return h.promise().take_result(); }
  };
  Awaiter operator co_await() const& noexcept { return Awaiter{h_}; }
  Awaiter operator co_await() const&& noexcept { return Awaiter{h_}; }

  // Gives up ownership of the frame (for runtime roots that manage frames themselves).
  handle_type release() noexcept { return std::exchange(h_, {}); }

 private:
  void reset() noexcept {
    if (h_) h_.destroy();
    h_ = {};
  }
  handle_type h_;
};

namespace internal {
template <typename T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<TaskPromise<T>>::from_promise(*this));
}
inline Task<void> TaskPromise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<TaskPromise<void>>::from_promise(*this));
}
}  // namespace internal

}  // namespace gpubridge::runtime
