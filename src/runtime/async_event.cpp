#include "gpubridge/runtime/async_event.hpp"

namespace gpubridge::runtime {

void AsyncEvent::set() {
  Awaiter* list = nullptr;
  {
    std::lock_guard lock(mu_);
    if (set_) return;
    set_ = true;
    list = head_;
    head_ = nullptr;
    for (Awaiter* a = list; a != nullptr; a = a->next_) a->waiting_ = false;
  }
  while (list != nullptr) {
    Awaiter* next = list->next_;  // read first: once resumed, the awaiter may be gone
    list->context_.resume(list->resumption_);
    list = next;
  }
}

bool AsyncEvent::is_set() const {
  std::lock_guard lock(mu_);
  return set_;
}

bool AsyncEvent::Awaiter::await_suspend(std::coroutine_handle<> h) {
  resumption_.handle = h;
  context_ = ResumeContext::current();
  std::lock_guard lock(event_.mu_);
  if (event_.set_) return false;
  next_ = event_.head_;
  prev_ = nullptr;
  if (next_ != nullptr) next_->prev_ = this;
  event_.head_ = this;
  waiting_ = true;
  return true;
}

AsyncEvent::Awaiter::~Awaiter() {
  std::lock_guard lock(event_.mu_);
  if (!waiting_) return;
  (prev_ != nullptr ? prev_->next_ : event_.head_) = next_;
  if (next_ != nullptr) next_->prev_ = prev_;
  waiting_ = false;
}

}  // namespace gpubridge::runtime
