// ResumeContext and RequestContext::current(): in what context suspended and running code runs.
#include "gpubridge/runtime/resume_context.hpp"

#include <utility>

#include "activation/activation.hpp"
#include "gpubridge/runtime/request_context.hpp"
#include "execution_context.hpp"

namespace gpubridge::runtime {

namespace {
// The request context of plain code on this thread (outside turns and runtime roots).
constinit thread_local RequestContext t_thread_context{};
}  // namespace

RequestContext& RequestContext::current() noexcept {
  RequestContext* c = internal::t_context.request;
  return c != nullptr ? *c : t_thread_context;
}

namespace internal {
RequestContext* exchange_current_context(RequestContext* context) noexcept {
  return std::exchange(t_context.request, context);
}
}  // namespace internal

ResumeContext ResumeContext::current() noexcept {
  const internal::ExecutionContext& ctx = internal::t_context;
  ResumeContext c;
  c.activation_ = ctx.activation;
  c.turn_ = ctx.turn;
  c.scheduler_ = ctx.core != nullptr ? ctx.core->scheduler.get() : nullptr;
  c.request_ = ctx.request;
  return c;
}

void ResumeContext::resume(Resumption& r) const noexcept {
  r.turn = turn_;
  r.context = request_;
  if (activation_ != nullptr) {
    activation_->post_ready(r);
  } else if (scheduler_ != nullptr) {
    r.run = &internal::resume_outside;
    scheduler_->post(&r);
  } else {
    RequestContext* previous = internal::exchange_current_context(request_);
    internal::resume(r.handle);
    internal::exchange_current_context(previous);
  }
}

}  // namespace gpubridge::runtime
