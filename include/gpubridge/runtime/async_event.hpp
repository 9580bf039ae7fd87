#pragma once
// AsyncEvent: a one-shot event coroutines can await without blocking a thread. set() (from any
// thread) resumes every awaiter in its own ResumeContext: an awaiting grain continues inside its
// turn, in its activation. Awaiting an event already set completes at once.
//
// A frame destroyed while suspended on the event unregisters itself (the runtime does this when
// it drops calls that never finished at stop()). The event must outlive its awaiters.
#include <coroutine>
#include <mutex>

#include "gpubridge/runtime/messaging/message.hpp"
#include "gpubridge/runtime/resume_context.hpp"

namespace gpubridge::runtime {

class AsyncEvent {
 public:
  AsyncEvent() = default;
  AsyncEvent(const AsyncEvent&) = delete;
  AsyncEvent& operator=(const AsyncEvent&) = delete;
  ~AsyncEvent() = default;

  void set();
  bool is_set() const;

  class Awaiter {
   public:
    explicit Awaiter(AsyncEvent& event) noexcept : event_(event) {}
    Awaiter(const Awaiter&) = delete;
    Awaiter& operator=(const Awaiter&) = delete;
    ~Awaiter();
    bool await_ready() const { return event_.is_set(); }
    bool await_suspend(std::coroutine_handle<> h);
    void await_resume() const noexcept {}

   private:
    friend class AsyncEvent;
    AsyncEvent& event_;
    Resumption resumption_;
    ResumeContext context_;
    Awaiter* prev_ = nullptr;
    Awaiter* next_ = nullptr;
    bool waiting_ = false;
  };
  Awaiter operator co_await() noexcept { return Awaiter(*this); }

 private:
  mutable std::mutex mu_;
  bool set_ = false;
  Awaiter* head_ = nullptr;
};

}  // namespace gpubridge::runtime
