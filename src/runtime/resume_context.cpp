#include "gpubridge/runtime/resume_context.hpp"

#include "activation/activation.hpp"
#include "execution_context.hpp"

namespace gpubridge::runtime {

ResumeContext ResumeContext::current() noexcept {
  const internal::ExecutionContext& ctx = internal::t_context;
  ResumeContext c;
  c.activation_ = ctx.activation;
  c.turn_ = ctx.turn;
  c.scheduler_ = ctx.core != nullptr ? ctx.core->scheduler.get() : nullptr;
  return c;
}

void ResumeContext::resume(Resumption& r) const noexcept {
  r.turn = turn_;
  if (activation_ != nullptr) {
    activation_->post_ready(r);
  } else if (scheduler_ != nullptr) {
    r.run = &internal::resume_outside;
    scheduler_->post(&r);
  } else {
    internal::resume(r.handle);
  }
}

}  // namespace gpubridge::runtime
