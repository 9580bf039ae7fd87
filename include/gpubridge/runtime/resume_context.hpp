#pragma once
// ResumeContext: where a suspended coroutine must continue. Awaitables that complete on another
// thread (I/O, device completions, AsyncEvent) capture ResumeContext::current() in
// await_suspend and hand their continuation to it instead of calling handle.resume():
//   - inside a grain: the continuation runs as part of the same turn, queued to the activation,
//     so it never runs at the same time as another turn of that activation;
//   - elsewhere on a runtime worker: it is posted to the worker pool;
//   - outside any runtime thread: it resumes inline on the completing thread.
// In every case the continuation runs in the request context it was suspended in.
// Thread-safety: resume() may be called from any thread, once per suspension.
#include <coroutine>

#include "gpubridge/runtime/messaging/message.hpp"

namespace gpubridge::runtime {

namespace internal {
class Activation;
class Scheduler;
}  // namespace internal

// Resume batches: code that completes many awaiters at once (every caller of one kernel batch)
// opens a batch on its thread, completes them, and closes it. Meanwhile resume() collects the
// continuations bound for activations, grouped by activation in their order, and close posts
// each group with one lock of its activation (instead of one per continuation). Other
// continuations are not delayed. Batches nest (the outermost close posts). Thread-local:
// open and close on the same thread, and do not wait for a collected continuation in between.
void open_resume_batch() noexcept;
void close_resume_batch() noexcept;

class ResumeContext {
 public:
  static ResumeContext current() noexcept;
  // Resumes r.handle in this context. `r` must stay alive until it has run (keep it in the
  // awaiting frame, e.g. as a member of the awaiter).
  void resume(Resumption& r) const noexcept;

 private:
  internal::Activation* activation_ = nullptr;
  Message* turn_ = nullptr;
  internal::Scheduler* scheduler_ = nullptr;
  RequestContext* request_ = nullptr;  // the suspended code's request context (outside turns)
};

// co_await yield_now(): lets work already queued run first, then continues in the same context
// (as a later step of the same turn inside a grain, through the worker pool elsewhere on a
// runtime worker, at once outside the runtime's threads).
struct YieldNow {
  Resumption r;  // lives in the awaiting frame until it has run
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) noexcept {
    r.handle = h;
    ResumeContext::current().resume(r);
  }
  void await_resume() const noexcept {}
};
inline YieldNow yield_now() noexcept { return {}; }

}  // namespace gpubridge::runtime
