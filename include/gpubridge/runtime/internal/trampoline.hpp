#pragma once
// Symmetric transfer that keeps the stack bounded in every build mode.
//
// g++ implements "await_suspend returns the next coroutine" as a tail call only when optimising
// and not instrumenting: at -O0 or under AddressSanitizer a long chain of synchronously completing
// co_awaits overflows the stack. So every place where the runtime resumes a coroutine runs a
// trampoline (resume()): awaiters hand the next coroutine to it (transfer_to()) and return to the
// loop, which resumes it. Outside a trampoline, transfer_to() falls back to the compiler's own
// symmetric transfer, so a coroutine resumed by foreign code still works.
//
// Rule that follows: code running inside a runtime coroutine must not call handle.resume() on
// another coroutine directly; hand it to a ResumeContext (or Runtime::spawn) instead.
#include <coroutine>
#include <utility>

namespace gpubridge::runtime::internal {

struct Trampoline {
  std::coroutine_handle<> next;
  bool active = false;
};
constinit inline thread_local Trampoline t_trampoline{};

// Called by await_suspend: the coroutine to run next, after the current one has suspended.
inline std::coroutine_handle<> transfer_to(std::coroutine_handle<> h) noexcept {
  Trampoline& t = t_trampoline;
  if (!t.active) return h;
  t.next = h;
  return std::noop_coroutine();
}

// Resumes `h` and every coroutine it transfers to, on this thread, until none is left.
inline void resume(std::coroutine_handle<> h) {
  Trampoline& t = t_trampoline;
  const bool outer_active = t.active;
  const std::coroutine_handle<> outer_next = std::exchange(t.next, {});
  t.active = true;
  while (h) {
    h.resume();
    h = std::exchange(t_trampoline.next, {});
  }
  t_trampoline.active = outer_active;
  t_trampoline.next = outer_next;
}

}  // namespace gpubridge::runtime::internal
