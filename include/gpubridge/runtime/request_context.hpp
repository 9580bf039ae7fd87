#pragma once
// RequestContext: values that travel with every grain call, like Orleans' RequestContext.
//
// Semantics: a grain call carries a copy of its caller's current context (taken when the call is
// made); the callee's turn reads and writes its own copy through RequestContext::current(), and
// that copy stays the turn's current context across every co_await of the turn, on whatever
// worker resumes it. Changes a callee makes never flow back to its caller. Code outside any turn
// has a context per root task (Runtime::run, Runtime::spawn, sync_wait copy the starting
// thread's context when they start) or, on a plain thread, one per thread: a caller outside the
// runtime sets its thread's context and the grains it calls see it.
//
// The runtime carries the values opaquely (it knows nothing about tracing): a W3C traceparent
// (exactly 55 characters, or empty) in fixed-size storage, so carrying a context never
// allocates. A tenant id will join as another fixed-size field.
//
// Thread-safety: a RequestContext is a plain value. current() refers to the context of the code
// running on the calling thread; use it only from that code (never keep the reference across a
// co_await: take it again after resuming).
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace gpubridge::runtime {

class RequestContext {
 public:
  static constexpr std::size_t kTraceparentSize = 55;  // "00-<32 hex>-<16 hex>-<2 hex>"

  // The context of the code running on this thread (see above). Never fails.
  static RequestContext& current() noexcept;

  // Empty, or exactly kTraceparentSize characters (not validated further: the runtime only
  // carries it; the tracing layer parses it).
  std::string_view traceparent() const noexcept {
    return {traceparent_.data(), has_traceparent_ ? kTraceparentSize : 0};
  }
  // False (and nothing changes) unless `value` is empty or kTraceparentSize characters long.
  bool set_traceparent(std::string_view value) noexcept {
    if (value.empty()) {
      has_traceparent_ = false;
      return true;
    }
    if (value.size() != kTraceparentSize) return false;
    for (std::size_t i = 0; i < kTraceparentSize; ++i) traceparent_[i] = value[i];
    has_traceparent_ = true;
    return true;
  }
  void clear() noexcept { has_traceparent_ = false; }
  bool empty() const noexcept { return !has_traceparent_; }

 private:
  std::array<char, kTraceparentSize> traceparent_{};
  bool has_traceparent_ = false;
};

namespace internal {
// Makes `context` the current context of this thread (null: the thread's own) and returns the
// previous one. For roots that start inline on a plain thread (sync_wait).
RequestContext* exchange_current_context(RequestContext* context) noexcept;
}  // namespace internal

}  // namespace gpubridge::runtime
