#pragma once
// Activation: one in-memory instance of a grain, with its mailbox and its turn rules.
//
// Mailbox: `inbox_` holds calls and timer ticks not yet started (FIFO); `ready_` holds
// continuations of turns already running (a grain call it awaited has answered, an AsyncEvent
// fired). The activation is a WorkItem: whenever it has something runnable it is queued to the
// scheduler once (`scheduled_`); the worker that runs it owns it for that slice and runs its
// items one after another, up to a budget, then requeues it. So at most one thread executes an
// activation's code at any instant, without a lock held while grain code runs.
//
// Turn rules (next_step): continuations always run first. A new call or tick starts only when
// the activation is valid and no deactivation is pending, and either no turn is running
// (non-reentrant), or the grain type is reentrant, or the call's method is always_interleave.
// A turn spans the whole method, including its co_awaits; it ends in finish_turn().
// Exception for reentrant activations (admit()): a call made by code that runs on the thread
// owning this activation's slice (a caller one of its turns just resumed inline) starts at once
// on that thread, ahead of queued continuations, when nothing waits in the inbox before it.
//
// Lifetime: created by route() under the directory shard lock; destroyed by its own last slice
// after it removed itself from the directory (deactivation, failed activation), or kept until
// the runtime is destroyed when stop() abandons it. Thread-safety: the members marked "any
// thread" lock mu_; the others run on the thread that owns the current slice.
#include <atomic>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "gpubridge/core/cache_line.hpp"
#include "gpubridge/runtime/activation/activation_state.hpp"
#include "gpubridge/runtime/grain.hpp"
#include "gpubridge/runtime/messaging/message.hpp"
#include "runtime_core.hpp"
#include "spin_lock.hpp"

namespace gpubridge::runtime::internal {

struct Timer;

// Lets collect_idle_now() wait for the deactivations it asked for.
struct DeactivationWaiter {
  std::mutex mu;
  std::condition_variable cv;
  std::size_t pending = 0;
  void add() {
    std::lock_guard lock(mu);
    ++pending;
  }
  void done() {
    std::lock_guard lock(mu);
    --pending;
    cv.notify_all();
  }
};

class alignas(kCacheLine) Activation {
 public:
  Activation(Runtime::Core& core, const GrainType& type, GrainId id);
  ~Activation();
  Activation(const Activation&) = delete;
  Activation& operator=(const Activation&) = delete;

  const GrainId& id() const noexcept { return id_; }
  const GrainType& type() const noexcept { return type_; }
  Runtime::Core& core() const noexcept { return core_; }

  // --- any thread ---
  enum class Admission : std::uint8_t {
    queued,       // in the mailbox; the activation is (or will be) scheduled by someone else
    queued_post,  // in the mailbox; the caller must post() the activation
    start_here,   // counted as running: the caller must call start_admitted(m) at once
  };
  // Queues a call (route(), under the shard lock). With `may_start_here` (only when the calling
  // thread runs this activation's slice, see route()) a call to a reentrant activation that
  // could start now and has nobody queued before it is admitted to start on this thread right
  // away, without a trip through the mailbox and the scheduler: the caller's frames are still
  // in this core's cache. Starting it before queued continuations is allowed because turns of a
  // reentrant activation interleave at any co_await anyway.
  Admission admit(Message& m, bool may_start_here) noexcept;
  // Runs an admitted call's turn until its first suspension, on the slice owner's thread,
  // outside the shard lock. The caller is resumed later, never inline from here.
  void start_admitted(Message& m) noexcept;
  // Queues a tick (timer service, under its lock).
  void enqueue_tick(Message& tick) noexcept;
  // Queues a continuation of a running turn.
  void post_ready(Resumption& r) noexcept;
  // post_ready() of a chain first..last (linked through next, in order) under one lock.
  void post_ready_chain(Resumption& first, Resumption& last) noexcept;
  // A reply `r` to a call made by this activation's code, on a worker running a step of a slice
  // (of another activation: this one's own slice means it is scheduled): when nobody runs or has
  // queued this activation (it is idle, its code waiting for the reply), the thread takes it over
  // and returns r's handle to resume at once, in r's context - no trip through the scheduler,
  // with the caller's state still in this core's cache; the slice step releases it when it
  // returns (release_claim). Null otherwise: post_ready(r) then.
  std::coroutine_handle<> resume_here(Resumption& r) noexcept;
  // Ends a take-over: schedules the activation when work arrived meanwhile (or a turn that
  // ended here left calls waiting), else leaves it unscheduled.
  void release_claim() noexcept;
  void post() noexcept;
  // Idle collection: asks for deactivation when idle for at least `age` (under the shard lock).
  bool deactivate_if_idle(Clock::time_point now, Clock::duration age,
                          const std::shared_ptr<DeactivationWaiter>& waiter) noexcept;
  // stop(): fails queued calls with `unavailable` and deactivates once running turns end.
  void shutdown() noexcept;
  // stop(), after the timeout: answers running calls with `cancelled` and freezes the activation.
  void abandon() noexcept;
  // Stateless workers: calls waiting for a turn + calls running, for placement. Approximate.
  std::uint32_t load() const noexcept { return load_.load(std::memory_order_relaxed); }
  bool accepting() const noexcept { return accepting_.load(std::memory_order_relaxed); }
  // A call is queued or running (stop() waits for none to be left before closing).
  bool has_calls() noexcept;

  // --- owner of the current slice ---
  std::coroutine_handle<> end_turn(Message& m) noexcept;
  TimerId add_timer(Clock::duration due, Clock::duration period, std::function<Task<void>()> callback);
  bool cancel_timer(TimerId id);
  void request_deactivation() noexcept;
  // Frees the frames of turns abandoned by stop(); call only after the workers are joined.
  void destroy_abandoned_turns() noexcept;

 private:
  enum class StepKind : std::uint8_t { none, resume, start, activate, deactivate, discard, abandon };
  struct Step {
    StepKind kind = StepKind::none;
    Resumption* resumption = nullptr;
    Message* message = nullptr;
  };

  static void run_thunk(WorkItem* item) noexcept;
  void run_slice() noexcept;
  Step next_step_locked() noexcept;
  Message* pick_locked() noexcept;
  bool can_start(const Message& m) const noexcept;

  void start_turn(Message& m) noexcept;
  void begin_activation() noexcept;
  void begin_deactivation() noexcept;
  void activation_finished(Message& m) noexcept;
  void deactivation_finished(Message& m) noexcept;
  void tick_finished(Message& m) noexcept;
  void do_abandon() noexcept;
  // Leaves the directory and becomes invalid; returns what was still queued.
  Message* retire() noexcept;
  void cancel_all_timers() noexcept;
  // Only the slice owner writes active_turns_ (others read it), so no read-modify-write needed.
  void add_turns(int delta) noexcept {
    active_turns_.store(active_turns_.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
  }
  void notify_waiters() noexcept;
  // The list of running turns: m joins at the head; m leaves (nothing when it is not listed).
  void add_running(Message& m) noexcept;
  void remove_running(Message& m) noexcept;

  struct Item : WorkItem {
    Activation* self = nullptr;
  };
  // Read by every thread that routes a call here; written at activation and deactivation only.
  Runtime::Core& core_;
  const GrainType& type_;
  const GrainId id_;
  std::unique_ptr<Grain> grain_;

  // Written on every call and slice, from the next cache line on.
  alignas(kCacheLine) Item work_;  // the scheduler's handle on this activation

  // Guarded by mu_ (a spin lock: every critical section is a few pointer operations):
  SpinLock mu_;
  Message* inbox_head_ = nullptr;
  Message* inbox_tail_ = nullptr;
  WorkItem* ready_head_ = nullptr;
  WorkItem* ready_tail_ = nullptr;
  bool scheduled_ = false;  // queued to the scheduler or running on a worker
  ActivationState state_ = ActivationState::creating;
  bool deactivation_requested_ = false;
  bool shutdown_ = false;
  bool abandon_requested_ = false;
  bool frozen_ = false;  // abandoned: nothing runs any more
  std::vector<std::shared_ptr<DeactivationWaiter>> waiters_;
  std::size_t interleavable_queued_ = 0;  // queued calls to always_interleave methods

  // Owner thread (read racily by the collector through atomics):
  std::atomic<int> active_turns_{0};
  std::atomic<int> active_calls_{0};  // the call turns among active_turns_
  std::atomic<std::uint32_t> load_{0};
  std::atomic<bool> accepting_{true};
  std::atomic<Clock::duration::rep> last_active_;
  bool destroy_ = false;  // the last slice frees the activation
  Message* running_ = nullptr;  // turns started and not ended (add_running, remove_running)
  std::vector<std::coroutine_handle<>> abandoned_frames_;
  std::vector<std::shared_ptr<Timer>> timers_;
  TimerId next_timer_ = 1;
  Message activate_msg_;
  Message deactivate_msg_;
};

}  // namespace gpubridge::runtime::internal
