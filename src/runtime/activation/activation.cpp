#include "activation/activation.hpp"

#include <algorithm>
#include <utility>

#include "execution_context.hpp"
#include "prefetch.hpp"
#include "timers/timer_service.hpp"

namespace gpubridge::runtime::internal {

namespace {

constexpr int kSliceBudget = 64;  // items per slice before the worker moves to other activations

TurnTask lifecycle_turn(Grain& grain, Message& m) {
  try {
    if (m.kind == MessageKind::activate) {
      co_await grain.on_activate();
    } else {
      co_await grain.on_deactivate();
    }
  } catch (...) {
    m.error = std::current_exception();
  }
}

TurnTask tick_turn(Grain&, Message& m) {
  Timer& timer = *static_cast<Timer*>(m.owner);
  if (timer.cancelled) co_return;  // cancelled while queued; only this thread cancels
  try {
    co_await timer.callback();
  } catch (...) {
    m.error = std::current_exception();
  }
}

// Ready queue (see runtime/prefetch.hpp): taking a continuation - every caller of a finished
// kernel batch is one, often thousands at once - fetches, for the next one, its turn's frame and
// caller's frames (its turn message came a step ago); for the one after it, its own frame and
// turn message (its entry came a step ago); and the entry after that. 8192 callers of a batch
// grain on PoCL, 2 cores: 0.68 -> 0.80 M requests/s (with the batch loops' prefetching,
// bench/results/2026-11-28-epyc2-resume-prefetch).
void prefetch_ready(const WorkItem* next) noexcept {
  if (next == nullptr) return;
  const auto* first = static_cast<const Resumption*>(next);
  if (const Message* m = first->turn; m != nullptr) {
    FramePool::prefetch(m->turn_frame.address());
    prefetch_frames(m->reply);
  }
  const auto* second = static_cast<const Resumption*>(first->next);
  if (second == nullptr) return;
  prefetch_frames(*second);
  if (second->turn != nullptr) prefetch_lines(second->turn, sizeof(Message));
  if (second->next != nullptr) prefetch_lines(second->next, sizeof(Resumption));
}

// Inbox (see runtime/prefetch.hpp): taking a call fetches the caller's frame of the next one -
// where its message and arguments live - and the message after it.
void prefetch_inbox(const Message* next) noexcept {
  if (next == nullptr) return;
  FramePool::prefetch(next->reply.handle.address());
  if (next->next != nullptr) prefetch_lines(next->next, sizeof(Message));
}

void clear_context() noexcept {
  t_context.activation = nullptr;
  t_context.turn = nullptr;
  t_context.request = nullptr;
}

void enter_turn(Activation* activation, Message& turn) noexcept {
  t_context.activation = activation;
  t_context.turn = &turn;
  t_context.request = &turn.context;
}

// The context `r` resumes in, in `activation`: its turn's, or (code of the activation outside a
// turn) the request context it recorded.
void enter_resumption(Activation* activation, const Resumption& r) noexcept {
  if (r.turn != nullptr) {
    enter_turn(activation, *r.turn);
  } else {
    t_context.activation = activation;
    t_context.request = r.context;
  }
}

}  // namespace

std::coroutine_handle<> finish_turn(Message& message) noexcept { return message.receiver->end_turn(message); }

Activation::Activation(Runtime::Core& core, const GrainType& type, GrainId id)
    : core_(core), type_(type), id_(std::move(id)), last_active_(core.clock->now().time_since_epoch().count()) {
  work_.run = &run_thunk;
  work_.self = this;
  for (Message* m : {&activate_msg_, &deactivate_msg_}) {
    m->target = &id_;
    m->receiver = this;
  }
  activate_msg_.kind = MessageKind::activate;
  deactivate_msg_.kind = MessageKind::deactivate;
}

Activation::~Activation() = default;

// ---------------------------------------------------------------- any thread

Activation::Admission Activation::admit(Message& m, bool may_start_here) noexcept {
  std::lock_guard lock(mu_);
  if (may_start_here && type_.options.reentrant && inbox_head_ == nullptr && state_ == ActivationState::valid &&
      !deactivation_requested_ && !frozen_ && !abandon_requested_) {
    add_turns(1);
    active_calls_.store(active_calls_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (type_.options.stateless_worker) load_.fetch_add(1, std::memory_order_relaxed);
    return Admission::start_here;
  }
  m.next = nullptr;
  if (inbox_tail_ != nullptr) {
    inbox_tail_->next = &m;
  } else {
    inbox_head_ = &m;
  }
  inbox_tail_ = &m;
  if (type_.options.stateless_worker) load_.fetch_add(1, std::memory_order_relaxed);
  if (m.method != nullptr && m.method->always_interleave) ++interleavable_queued_;
  if (scheduled_) return Admission::queued;
  // Only schedule when the call can start: otherwise the slice that ends the running turn (or
  // the activation) finds it.
  const bool runnable = state_ == ActivationState::creating ||
                        (state_ == ActivationState::valid && !deactivation_requested_ && can_start(m));
  if (!runnable) return Admission::queued;
  scheduled_ = true;
  return Admission::queued_post;
}

void Activation::start_admitted(Message& m) noexcept {
  // The dispatching code's context comes back once the turn has suspended (or ended).
  Activation* const outer_activation = t_context.activation;
  Message* const outer_turn = t_context.turn;
  RequestContext* const outer_request = t_context.request;
  Message* const outer_inline = std::exchange(t_context.inline_call, &m);
  ++t_context.inline_depth;
  start_turn(m);
  --t_context.inline_depth;
  t_context.inline_call = outer_inline;
  t_context.activation = outer_activation;
  t_context.turn = outer_turn;
  t_context.request = outer_request;
}

void Activation::enqueue_tick(Message& tick) noexcept {
  bool must_post = false;
  {
    std::lock_guard lock(mu_);
    tick.next = nullptr;
    if (inbox_tail_ != nullptr) {
      inbox_tail_->next = &tick;
    } else {
      inbox_head_ = &tick;
    }
    inbox_tail_ = &tick;
    if (!scheduled_) scheduled_ = must_post = true;
  }
  if (must_post) post();
}

void Activation::post_ready(Resumption& r) noexcept {
  r.next = nullptr;
  post_ready_chain(r, r);
}

void Activation::post_ready_chain(Resumption& first, Resumption& last) noexcept {
  bool must_post = false;
  {
    std::lock_guard lock(mu_);
    if (frozen_) return;  // abandoned at stop(): the turns never run again
    last.next = nullptr;
    if (ready_tail_ != nullptr) {
      ready_tail_->next = &first;
    } else {
      ready_head_ = &first;
    }
    ready_tail_ = &last;
    if (!scheduled_) scheduled_ = must_post = true;
  }
  if (must_post) post();
}

std::coroutine_handle<> Activation::resume_here(Resumption& r) noexcept {
  if (t_context.slice == nullptr || t_context.claimed != nullptr) return nullptr;
  {
    std::lock_guard lock(mu_);
    if (scheduled_ || frozen_ || state_ != ActivationState::valid) return nullptr;
    scheduled_ = true;  // this thread is its slice owner until release_claim()
  }
  t_context.claimed = this;
  enter_resumption(this, r);  // as the slice's resume step would
  return r.handle;
}

void Activation::release_claim() noexcept {
  bool must_post = false;
  {
    std::lock_guard lock(mu_);
    // While claimed, whatever would have scheduled it (a continuation, a call, a tick, a request
    // to deactivate or abandon) found it scheduled and only queued itself; a turn that ended
    // here may have left calls waiting for it. A slice sorts them out. (Its state stays valid:
    // only its own slice changes that, and none runs while it is claimed.)
    must_post = !frozen_ && (ready_head_ != nullptr || inbox_head_ != nullptr || abandon_requested_ ||
                             deactivation_requested_);
    if (!must_post) scheduled_ = false;
  }
  if (must_post) post();
}

void Activation::post() noexcept { core_.scheduler->post(&work_); }

bool Activation::deactivate_if_idle(Clock::time_point now, Clock::duration age,
                                    const std::shared_ptr<DeactivationWaiter>& waiter) noexcept {
  bool must_post = false;
  {
    std::lock_guard lock(mu_);
    if (state_ != ActivationState::valid || deactivation_requested_ || frozen_) return false;
    if (inbox_head_ != nullptr || ready_head_ != nullptr || active_turns_.load(std::memory_order_relaxed) > 0) {
      return false;
    }
    const Clock::time_point last{Clock::duration(last_active_.load(std::memory_order_relaxed))};
    if (now - last < age) return false;
    deactivation_requested_ = true;
    accepting_.store(false, std::memory_order_relaxed);
    if (waiter != nullptr) {
      try {
        waiters_.push_back(waiter);
        waiter->add();
      } catch (...) {  // out of memory: deactivate without telling the waiter
      }
    }
    if (!scheduled_) scheduled_ = must_post = true;
  }
  if (must_post) post();
  return true;
}

bool Activation::has_calls() noexcept {
  std::lock_guard lock(mu_);
  if (active_calls_.load(std::memory_order_relaxed) > 0) return true;
  for (const Message* m = inbox_head_; m != nullptr; m = m->next) {
    if (m->kind == MessageKind::call) return true;
  }
  return false;
}

void Activation::shutdown() noexcept {
  Message* failed = nullptr;
  bool must_post = false;
  {
    std::lock_guard lock(mu_);
    if (frozen_ || state_ == ActivationState::invalid) return;
    shutdown_ = true;
    deactivation_requested_ = true;
    accepting_.store(false, std::memory_order_relaxed);
    // Take the queued calls out (ticks stay: deactivation purges them with the timers).
    Message* keep_head = nullptr;
    Message* keep_tail = nullptr;
    for (Message* m = inbox_head_; m != nullptr;) {
      Message* next = m->next;
      m->next = nullptr;
      if (m->kind == MessageKind::call) {
        m->next = failed;
        failed = m;
        if (type_.options.stateless_worker) load_.fetch_sub(1, std::memory_order_relaxed);
      } else {
        (keep_tail != nullptr ? keep_tail->next : keep_head) = m;
        keep_tail = m;
      }
      m = next;
    }
    inbox_head_ = keep_head;
    inbox_tail_ = keep_tail;
    interleavable_queued_ = 0;
    if (!scheduled_) scheduled_ = must_post = true;
  }
  while (failed != nullptr) {
    Message* next = failed->next;
    core_.fail_call(*failed, make_error(ErrorCode::unavailable, "runtime stopped"));
    failed = next;
  }
  if (must_post) post();
}

void Activation::abandon() noexcept {
  bool must_post = false;
  {
    std::lock_guard lock(mu_);
    if (frozen_ || state_ == ActivationState::invalid) return;
    abandon_requested_ = true;
    if (!scheduled_) scheduled_ = must_post = true;
  }
  if (must_post) post();
}

// ---------------------------------------------------------------- the slice

void Activation::run_thunk(WorkItem* item) noexcept { static_cast<Item*>(item)->self->run_slice(); }

void Activation::run_slice() noexcept {
  t_context.slice = this;
  for (int budget = kSliceBudget; budget > 0; --budget) {
    Step step;
    {
      std::lock_guard lock(mu_);
      step = next_step_locked();
    }
    switch (step.kind) {
      case StepKind::none:
        t_context.slice = nullptr;
        return;
      case StepKind::resume: {
        auto* r = static_cast<Resumption*>(step.resumption);
        enter_resumption(this, *r);
        resume(r->handle);
        break;
      }
      case StepKind::start:
        start_turn(*step.message);
        break;
      case StepKind::activate:
        begin_activation();
        break;
      case StepKind::deactivate:
        begin_deactivation();
        break;
      case StepKind::discard: {
        Message* queued = retire();
        while (queued != nullptr) {
          Message* next = queued->next;
          if (queued->kind == MessageKind::call) {
            core_.fail_call(*queued, make_error(ErrorCode::unavailable, "runtime stopped"));
          }
          queued = next;
        }
        notify_waiters();
        destroy_ = true;
        break;
      }
      case StepKind::abandon:
        do_abandon();
        break;
    }
    clear_context();
    if (Activation* claimed = std::exchange(t_context.claimed, nullptr)) claimed->release_claim();
    if (destroy_) {
      t_context.slice = nullptr;
      delete this;
      return;
    }
  }
  t_context.slice = nullptr;
  core_.scheduler->post_shared(&work_);  // budget used: yield (still scheduled) to other work
}

bool Activation::can_start(const Message& m) const noexcept {
  if (active_turns_.load(std::memory_order_relaxed) == 0 || type_.options.reentrant) return true;
  return m.kind == MessageKind::call && m.method->always_interleave;
}

Message* Activation::pick_locked() noexcept {
  Message* prev = nullptr;
  for (Message* m = inbox_head_; m != nullptr; prev = m, m = m->next) {
    if (can_start(*m)) {
      (prev != nullptr ? prev->next : inbox_head_) = m->next;
      if (inbox_tail_ == m) inbox_tail_ = prev;
      m->next = nullptr;
      prefetch_inbox(inbox_head_);
      if (m->method != nullptr && m->method->always_interleave) --interleavable_queued_;
      return m;
    }
    if (interleavable_queued_ == 0) break;  // FIFO unless an always_interleave call waits behind
  }
  return nullptr;
}

Activation::Step Activation::next_step_locked() noexcept {
  if (frozen_) {
    scheduled_ = false;
    return {};
  }
  if (abandon_requested_) return {StepKind::abandon};
  if (ready_head_ != nullptr) {
    WorkItem* r = ready_head_;
    ready_head_ = r->next;
    if (ready_head_ == nullptr) ready_tail_ = nullptr;
    r->next = nullptr;
    prefetch_ready(ready_head_);
    return {StepKind::resume, static_cast<Resumption*>(r)};
  }
  switch (state_) {
    case ActivationState::creating:
      if (shutdown_) return {StepKind::discard};
      state_ = ActivationState::activating;
      return {StepKind::activate};
    case ActivationState::valid:
      if (deactivation_requested_) {
        if (active_turns_.load(std::memory_order_relaxed) == 0) {
          state_ = ActivationState::deactivating;
          return {StepKind::deactivate};
        }
        break;
      }
      if (Message* m = pick_locked()) {
        add_turns(1);
        if (m->kind == MessageKind::call) {
          active_calls_.store(active_calls_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        }
        return {StepKind::start, nullptr, m};
      }
      break;
    case ActivationState::activating:
    case ActivationState::deactivating:
    case ActivationState::invalid:
      break;
  }
  scheduled_ = false;
  return {};
}

// ---------------------------------------------------------------- turns

void Activation::start_turn(Message& m) noexcept {
  if (m.kind == MessageKind::tick) m.context.clear();  // each tick starts with an empty context
  enter_turn(this, m);
  std::coroutine_handle<> h =
      m.kind == MessageKind::tick ? std::coroutine_handle<>(tick_turn(*grain_, m).handle) : m.method->start(*grain_, m);
  m.turn_frame = h;
  add_running(m);
  resume(h);
}

void Activation::add_running(Message& m) noexcept {
  m.running_prev = nullptr;
  m.running_next = running_;
  if (running_ != nullptr) running_->running_prev = &m;
  running_ = &m;
}

void Activation::remove_running(Message& m) noexcept {
  if (m.running_prev == nullptr && running_ != &m) return;  // not listed
  (m.running_prev != nullptr ? m.running_prev->running_next : running_) = m.running_next;
  if (m.running_next != nullptr) m.running_next->running_prev = m.running_prev;
  m.running_prev = m.running_next = nullptr;
}

std::coroutine_handle<> Activation::end_turn(Message& m) noexcept {
  remove_running(m);
  m.turn_frame = {};
  switch (m.kind) {
    case MessageKind::call:
      add_turns(-1);
      active_calls_.store(active_calls_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
      if (core_.phase.load(std::memory_order_relaxed) != Phase::running) core_.notify_progress();
      if (type_.options.stateless_worker) load_.fetch_sub(1, std::memory_order_relaxed);
      last_active_.store(core_.clock->now_coarse().time_since_epoch().count(), std::memory_order_relaxed);
      clear_context();  // the caller may continue inline on this thread, outside this activation
      // A caller outside any activation continues inline here, in its own request context,
      // unless this call started inside the caller's own dispatch (start_admitted): that
      // caller is not suspended yet as far as this thread is concerned, so it is posted.
      if (m.sender == nullptr) t_context.request = m.reply.context;
      return core_.complete_call(m, /*allow_inline=*/&m != t_context.inline_call);
    case MessageKind::tick:
      tick_finished(m);
      break;
    case MessageKind::activate:
      activation_finished(m);
      break;
    case MessageKind::deactivate:
      deactivation_finished(m);
      break;
  }
  return std::noop_coroutine();
}

void Activation::begin_activation() noexcept {
  try {
    grain_ = type_.factory();
    if (!grain_) activate_msg_.error = make_error(ErrorCode::internal, "grain factory returned null");
  } catch (...) {
    activate_msg_.error = std::current_exception();
  }
  if (activate_msg_.error) {
    activation_finished(activate_msg_);
    return;
  }
  grain_->activation_ = this;
  grain_->runtime_ = core_.self;
  grain_->id_ = id_;
  activate_msg_.context.clear();
  enter_turn(this, activate_msg_);
  std::coroutine_handle<> h = lifecycle_turn(*grain_, activate_msg_).handle;
  activate_msg_.turn_frame = h;
  add_running(activate_msg_);
  resume(h);
}

void Activation::activation_finished(Message& m) noexcept {
  if (!m.error) {
    std::lock_guard lock(mu_);
    state_ = ActivationState::valid;
    return;
  }
  core_.activation_failures.fetch_add(1, std::memory_order_relaxed);
  cancel_all_timers();
  Message* queued = retire();
  while (queued != nullptr) {  // every waiting call fails with on_activate's exception
    Message* next = queued->next;
    if (queued->kind == MessageKind::call) core_.fail_call(*queued, m.error);
    queued = next;
  }
  notify_waiters();
  destroy_ = true;
}

void Activation::begin_deactivation() noexcept {
  cancel_all_timers();
  deactivate_msg_.context.clear();
  enter_turn(this, deactivate_msg_);
  std::coroutine_handle<> h = lifecycle_turn(*grain_, deactivate_msg_).handle;
  deactivate_msg_.turn_frame = h;
  add_running(deactivate_msg_);
  resume(h);
}

void Activation::deactivation_finished(Message& m) noexcept {
  if (m.error) core_.report("on_deactivate of " + id_.to_string() + " failed", m.error);
  core_.deactivations.fetch_add(1, std::memory_order_relaxed);
  Message* queued = retire();
  while (queued != nullptr) {  // calls that arrived meanwhile go to a fresh activation
    Message* next = queued->next;
    queued->next = nullptr;
    if (queued->kind == MessageKind::call && !core_.route(*queued)) core_.fail_call(*queued, queued->error);
    queued = next;
  }
  notify_waiters();
  destroy_ = true;
}

void Activation::tick_finished(Message& m) noexcept {
  add_turns(-1);
  last_active_.store(core_.clock->now_coarse().time_since_epoch().count(), std::memory_order_relaxed);
  if (m.error) {
    core_.report("timer tick of " + id_.to_string() + " failed", m.error);
    m.error = nullptr;
  }
  auto it = std::find_if(timers_.begin(), timers_.end(), [&](const auto& t) { return &t->tick == &m; });
  if (it != timers_.end() && !core_.timers->tick_finished(*it)) timers_.erase(it);
}

Message* Activation::retire() noexcept {
  Message* taken = nullptr;
  const bool listed = core_.directory.remove(id_, this, [&] {
    std::lock_guard lock(mu_);
    state_ = ActivationState::invalid;
    accepting_.store(false, std::memory_order_relaxed);
    taken = inbox_head_;
    inbox_head_ = inbox_tail_ = nullptr;
  });
  if (listed) core_.activations_removed.fetch_add(1, std::memory_order_relaxed);
  if (core_.phase.load(std::memory_order_relaxed) != Phase::running) core_.notify_progress();
  return taken;
}

void Activation::do_abandon() noexcept {
  for (Message* m = std::exchange(running_, nullptr); m != nullptr;) {
    Message* const next = m->running_next;  // read first: failing the call may free m's frame
    m->running_prev = m->running_next = nullptr;
    abandoned_frames_.push_back(m->turn_frame);
    if (m->kind == MessageKind::call && !m->abandoned) {
      m->abandoned = true;
      core_.fail_call(*m, make_error(ErrorCode::cancelled, "runtime stopped before the call to " +
                                                               std::string(m->method->name) + " on " +
                                                               id_.to_string() + " completed"));
    }
    m = next;
  }
  for (auto& t : timers_) core_.timers->cancel(*t);  // the Timer objects stay: frozen ticks use them
  Message* queued = nullptr;
  // Counted only once: a deactivation that ended before this step has retired it already.
  const bool listed = core_.directory.remove(id_, this, [&] {
    std::lock_guard lock(mu_);
    frozen_ = true;
    state_ = ActivationState::invalid;
    accepting_.store(false, std::memory_order_relaxed);
    queued = inbox_head_;
    inbox_head_ = inbox_tail_ = nullptr;
    ready_head_ = ready_tail_ = nullptr;
  });
  if (listed) core_.activations_removed.fetch_add(1, std::memory_order_relaxed);
  while (queued != nullptr) {
    Message* next = queued->next;
    if (queued->kind == MessageKind::call) {
      core_.fail_call(*queued, make_error(ErrorCode::unavailable, "runtime stopped"));
    }
    queued = next;
  }
  notify_waiters();
  {
    std::lock_guard lock(core_.graveyard_mu);
    core_.graveyard.push_back(this);
  }
  core_.notify_progress();
}

void Activation::destroy_abandoned_turns() noexcept {
  for (auto h : abandoned_frames_) {
    if (h) h.destroy();
  }
  abandoned_frames_.clear();
}

// ---------------------------------------------------------------- timers, deactivation

TimerId Activation::add_timer(Clock::duration due, Clock::duration period, std::function<Task<void>()> callback) {
  if (state_ != ActivationState::activating && state_ != ActivationState::valid) {
    throw ErrorException(Error(ErrorCode::failed_precondition,
                               "register_timer on " + id_.to_string() + " while it is " +
                                   std::string(to_string(state_))));
  }
  if (!callback) throw ErrorException(Error(ErrorCode::invalid_argument, "register_timer: empty callback"));
  auto t = std::make_shared<Timer>();
  t->id = next_timer_++;
  t->activation = this;
  t->callback = std::move(callback);
  t->period = period;
  t->tick.kind = MessageKind::tick;
  t->tick.target = &id_;
  t->tick.receiver = this;
  t->tick.owner = t.get();
  timers_.push_back(t);
  core_.timers->arm(t, core_.clock->now() + std::max(due, Clock::duration::zero()));
  return t->id;
}

bool Activation::cancel_timer(TimerId id) {
  auto it = std::find_if(timers_.begin(), timers_.end(), [&](const auto& t) { return t->id == id; });
  if (it == timers_.end() || (*it)->cancelled) return false;
  // A tick in flight (queued or running) keeps the timer until that tick's turn ends.
  if (!core_.timers->cancel(**it)) timers_.erase(it);
  return true;
}

void Activation::cancel_all_timers() noexcept {
  for (auto& t : timers_) core_.timers->cancel(*t);
  {
    std::lock_guard lock(mu_);
    Message* prev = nullptr;
    for (Message* m = inbox_head_; m != nullptr;) {
      Message* next = m->next;
      if (m->kind == MessageKind::tick) {
        (prev != nullptr ? prev->next : inbox_head_) = next;
        if (inbox_tail_ == m) inbox_tail_ = prev;
        m->next = nullptr;
      } else {
        prev = m;
      }
      m = next;
    }
  }
  timers_.clear();
}

void Activation::request_deactivation() noexcept {
  std::lock_guard lock(mu_);
  deactivation_requested_ = true;
  accepting_.store(false, std::memory_order_relaxed);
}

void Activation::notify_waiters() noexcept {
  std::vector<std::shared_ptr<DeactivationWaiter>> waiters;
  {
    std::lock_guard lock(mu_);
    waiters.swap(waiters_);
  }
  for (auto& w : waiters) w->done();
}

}  // namespace gpubridge::runtime::internal
