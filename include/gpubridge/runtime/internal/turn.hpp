#pragma once
// The coroutine that runs one turn of an activation: a method call, a timer tick or a lifecycle
// hook. Internal: created by MethodInfo::start (or the activation), resumed only by the
// activation that owns it; its frame destroys itself when the turn ends, after handing the
// outcome to the activation (finish_turn), which answers the caller.
#include <array>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>

#include "gpubridge/runtime/filters/call_filter.hpp"
#include "gpubridge/runtime/messaging/message.hpp"
#include "gpubridge/runtime/task.hpp"

namespace gpubridge::runtime {

class Grain;

namespace internal {

// Ends the turn of `message` on its activation. Returns the coroutine to run next on this
// thread (the caller, when it may resume inline) or a no-op handle.
std::coroutine_handle<> finish_turn(Message& message) noexcept;

struct TurnPromise;

struct TurnTask {
  using promise_type = TurnPromise;
  std::coroutine_handle<TurnPromise> handle;
};

struct TurnPromise : PooledFrame {
  Message* message;

  template <typename... Rest>
  TurnPromise(Grain&, Message& m, Rest&&...) noexcept : message(&m) {}

  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<TurnPromise> h) const noexcept {
      Message& m = *h.promise().message;
      h.destroy();  // the frame first, so the next frame can reuse its memory on this thread
      return transfer_to(finish_turn(m));
    }
    void await_resume() const noexcept {}
  };

  TurnTask get_return_object() noexcept { return TurnTask{std::coroutine_handle<TurnPromise>::from_promise(*this)}; }
  std::suspend_always initial_suspend() const noexcept { return {}; }
  FinalAwaiter final_suspend() const noexcept { return {}; }
  void return_void() const noexcept {}
  void unhandled_exception() const noexcept { std::terminate(); }  // turn bodies catch everything
};

// Runs the call filters around one call; lives in the turn's frame.
class CallScope {
 public:
  explicit CallScope(Message& m) noexcept : m_(m) {}
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;
  // Runs before() of every filter; false when one threw (the call's error is then set).
  bool before() noexcept;
  // Runs after() of the filters whose before() ran.
  void after() noexcept;

 private:
  Message& m_;
  const void* filters_ = nullptr;
  std::size_t entered_ = 0;
  std::uint64_t start_ticks_ = 0;  // CycleClock::now() before the first filter (0: not timed)
  std::array<void*, kMaxCallFilters> states_{};  // CallContext::state of each filter
};

}  // namespace internal
}  // namespace gpubridge::runtime
