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

namespace {

// The open resume batch of this thread: continuations grouped by activation, in arrival order.
struct ResumeBatch {
  static constexpr std::size_t kGroups = 16;  // a seventeenth activation posts the groups so far
  struct Group {
    internal::Activation* activation = nullptr;
    Resumption* first = nullptr;
    Resumption* last = nullptr;
  };
  int depth = 0;
  std::size_t used = 0;
  Group groups[kGroups];

  void post_all() noexcept {
    for (std::size_t i = 0; i < used; ++i) {
      Group& g = groups[i];
      g.activation->post_ready_chain(*g.first, *g.last);
      g = Group{};
    }
    used = 0;
  }

  void add(internal::Activation* a, Resumption& r) noexcept {
    r.next = nullptr;
    for (std::size_t i = 0; i < used; ++i) {
      if (groups[i].activation == a) {
        groups[i].last->next = &r;
        groups[i].last = &r;
        return;
      }
    }
    if (used == kGroups) post_all();
    groups[used++] = Group{a, &r, &r};
  }
};

constinit thread_local ResumeBatch t_resume_batch{};

}  // namespace

void open_resume_batch() noexcept { ++t_resume_batch.depth; }

void close_resume_batch() noexcept {
  if (--t_resume_batch.depth == 0) t_resume_batch.post_all();
}

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
    if (t_resume_batch.depth > 0) {
      t_resume_batch.add(activation_, r);
    } else {
      activation_->post_ready(r);
    }
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
