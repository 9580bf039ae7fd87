// The dynamic batcher (see gpubridge/compute/batcher.hpp).
//
// One batcher serves one (kernel, dtype, device) queue:
// - submit() validates the request, takes a place in the bounded queue, pushes the request onto
//   the lock-free intake ring (intake_ring.hpp) and, only when that changes what the dispatcher
//   waits for, wakes it.
// - One dispatcher thread takes what the intake holds at once into its own priority queue
//   (batch_queue.hpp, oldest first), waits on a condition variable until a batch closes
//   (max_batch requests or the oldest waited max_delay, by steady_clock), drops expired requests
//   (deadline_exceeded, not run), fills a free batch slot without holding the mutex and hands it
//   to the backend's execute_batch(). At most max_inflight_batches slots exist; each keeps its
//   request and offsets vectors (capacity max_batch), so a batch allocates nothing per request.
// - The backend's completion (any thread) retries a failed batch on the CPU when the fallback
//   policy says so, fills each request's report, updates statistics and the adaptive limit,
//   calls every on_done, then frees the slot.
// Requests are caller-owned throughout; the batcher only links them.
// - run_inline(): on the host a small request runs on the submitting thread instead (the CPU
//   backend's run_request_here); it is counted in striped counters, not under the mutex.
// - Resilience: before a batch goes to a non-CPU device, the device's bulkhead and the (device,
//   kernel) breaker shared with the executor are asked; a refusal runs the batch on the CPU
//   (bulkhead_full / breaker_open) or fails it when fallback is off. Device results feed the
//   breaker.
// - Late batches: a batch in flight whose earliest request deadline passed is abandoned by the
//   dispatcher (BatchCall::access: it takes the requests away from the backend, which then never
//   touches them again) and its requests fail with deadline_exceeded; the slot comes back when
//   the device finally completes. stop() gives in-flight batches kStopGrace to finish, then
//   abandons them too (cancelled), so that an injected hang cannot hold it.
#include "gpubridge/compute/batcher.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "compute/backend.hpp"
#include "compute/batch_queue.hpp"
#include "compute/executor_access.hpp"
#include "compute/fallback_policy.hpp"
#include "compute/gpu/gpu_recipe.hpp"
#include "compute/intake_ring.hpp"
#include "gpubridge/resilience/breaker.hpp"
#include "gpubridge/resilience/bulkhead.hpp"
#include "gpubridge/core/cache_line.hpp"
#include "gpubridge/core/cpu_relax.hpp"
#include "gpubridge/core/thread_name.hpp"

namespace gpubridge::compute {

namespace {

using Clock = std::chrono::steady_clock;
using detail::ExecutorAccess;

// A batch closes early rather than exceed this many elements per input (and a single request
// longer than this is refused): bounds the staging and device memory one batch needs.
constexpr std::size_t kMaxBatchElements = std::size_t{1} << 22;
// Requests of normal priority the dispatcher's queue holds before it first grows (8 bytes each).
constexpr std::size_t kPendingReserve = 4096;
// How long stop() lets in-flight batches finish before it abandons them.
constexpr std::chrono::milliseconds kStopGrace{1000};
// How soon the dispatcher looks again at a late batch a backend was touching.
constexpr std::chrono::milliseconds kAbandonRetry{1};

class Batcher;

// One batch slot, reused by every batch it carries.
struct InflightBatch {
  Batcher* owner = nullptr;
  std::vector<BatchRequest*> requests;  // capacity policy.max_batch, reserved once
  std::vector<std::uint64_t> offsets;   // segment starts, capacity policy.max_batch + 1
  BatchCall call;
  const DeviceSlot* slot = nullptr;  // where the batch runs now (the CPU after a fallback)
  FallbackReason fallback = FallbackReason::none;
  SteadyTime dispatched{};
  SteadyTime oldest{};  // enqueue time of the batch's oldest request
  SteadyTime earliest_deadline = SteadyTime::max();  // of its requests
  SteadyTime exec_start{};                           // on the current device
  InflightBatch* next_free = nullptr;
  // Who may touch the requests (see BatchCall::access); reset for every batch.
  std::atomic<std::uint8_t> access{BatchCall::kFree};
  // Guarded by the batcher's mutex:
  bool in_flight = false;    // handed to a backend, completion not yet processed
  bool abandoning = false;   // the dispatcher is failing the requests of this abandoned batch
  bool device_done = false;  // the backend completed while `abandoning`
  std::atomic<bool> breaker_pending{false};  // an allow() of the breaker awaits its record_*()
  std::optional<resilience::Bulkhead::Permit> permit;  // held while the device runs it
  std::vector<std::chrono::nanoseconds> queued;  // per request, for the observer (capacity max_batch)
};

Error invalid(std::string message) { return Error(ErrorCode::invalid_argument, std::move(message)); }

// Takes `mu`, first retrying briefly without sleeping: submit() and a batch's completion hold
// the lock for a few dozen instructions, so under contention a short spin is cheaper than
// parking in the kernel (and spares the holder a futex wake on unlock).
std::unique_lock<std::mutex> lock_briefly(std::mutex& mu) noexcept {
  constexpr int kTries = 64;
  for (int i = 0; i < kTries; ++i) {
    if (mu.try_lock()) return std::unique_lock<std::mutex>(mu, std::adopt_lock);
    cpu_relax();
  }
  return std::unique_lock<std::mutex>(mu);
}

// Calls the request's hook; a throwing hook is a bug in the caller, reported and contained so
// that the other requests of the batch still complete.
void notify(BatchRequest& r) noexcept {
  try {
    r.on_done(r);
  } catch (...) {
    std::fputs("gpubridge: a BatchRequest on_done hook threw; exception ignored\n", stderr);
  }
}

// A CompletionScope held open for the lifetime of this object.
class OpenScope {
 public:
  explicit OpenScope(const CompletionScope& scope) noexcept : scope_(scope) {
    if (scope_.open != nullptr) scope_.open();
  }
  ~OpenScope() {
    if (scope_.close != nullptr) scope_.close();
  }
  OpenScope(const OpenScope&) = delete;
  OpenScope& operator=(const OpenScope&) = delete;

 private:
  const CompletionScope& scope_;
};

class Batcher final : public DynamicBatcher {
 public:
  Batcher(Executor& executor, const KernelDef& def, DType dtype, const BatchPolicy& policy, const DeviceSlot& slot,
          FallbackReason placement_fallback, bool allow_fallback, CompletionScope scope)
      : executor_(executor),
        def_(def),
        dtype_(dtype),
        policy_(policy),
        slot_(slot),
        cpu_(ExecutorAccess::policy(executor).cpu()),
        placement_fallback_(placement_fallback),
        allow_fallback_(allow_fallback),
        scope_(scope),
        observer_(ExecutorAccess::observer(executor)),
        breaker_(ExecutorAccess::breaker(executor, slot, def.id)),
        bulkhead_(ExecutorAccess::bulkhead(executor, slot)),
        inputs_(def.signature.inputs.size()),
        intake_(policy.queue_capacity),
        limit_(detail::initial_batch_limit(policy)),
        batches_(std::make_unique<InflightBatch[]>(policy.max_inflight_batches)),
        pending_(std::min(policy.queue_capacity, kPendingReserve)) {
    for (std::size_t i = 0; i < policy_.max_inflight_batches; ++i) {
      InflightBatch& b = batches_[i];
      b.owner = this;
      b.requests.reserve(policy_.max_batch);
      b.offsets.reserve(policy_.max_batch + 1);
      if (observer_ != nullptr) b.queued.reserve(policy_.max_batch);
      b.call.def = &def_;
      b.call.dtype = dtype_;
      b.call.access = &b.access;
      b.next_free = free_;
      free_ = &b;
    }
    // Named after the kernel, as far as 15 characters go.
    dispatcher_ = named_thread("gb-b:" + def_.id, [this] { dispatch_loop(); });
  }

  ~Batcher() override { stop(); }

  Status submit(BatchRequest& r) override {
    if (r.on_done == nullptr || !plainly_valid(r)) {
      if (Status s = validate(r); !s) return s;
    }
    // Reserve a place in the bounded queue first, so that the queue never holds more than its
    // capacity even for a moment.
    const std::size_t place = queued_.fetch_add(1, std::memory_order_relaxed);
    if (place >= policy_.queue_capacity) {
      queued_.fetch_sub(1, std::memory_order_relaxed);
      if (intake_.closed()) return stopped_error();
      rejected_queue_full_.fetch_add(1, std::memory_order_relaxed);
      if (observer_ != nullptr) observer_->on_batch_requests_done(def_.id, BatchOutcome::rejected_queue_full, 1);
      return Error(ErrorCode::resource_exhausted,
                   "queue full (capacity " + std::to_string(policy_.queue_capacity) + ") for " + def_.id + " on " +
                       slot_.device.id);
    }
    // status and report are written when the request completes (every path sets them).
    const SteadyTime enqueued = Clock::now();
    r.enqueued_ = enqueued;
    r.elements_ = r.inputs[0].count;
    // Read before the push: once pushed, the request may complete and be reused or freed.
    const SteadyTime::rep deadline = r.deadline.time_since_epoch().count();
    const SteadyTime::rep close = (enqueued + policy_.max_delay).time_since_epoch().count();
    // Into the intake (seq_cst: ordered before the read of waiting_ below; the dispatcher stores
    // waiting_ before it looks at the intake one last time).
    if (!intake_.push(r)) {
      refused_closed_.fetch_add(1, std::memory_order_relaxed);
      queued_.fetch_sub(1, std::memory_order_relaxed);
      return stopped_error();
    }
    // Wake the dispatcher only when this request changes what it waits for: its batch would
    // close (now + max_delay) before the planned wake-up, the batch is full, or its deadline is
    // before the planned wake-up. Once woken it takes every request published so far and looks
    // at the intake again before it sleeps, so later submits need not signal again (the first to
    // clear waiting_ does). `place` may count requests the dispatcher has just taken into a
    // batch: a stale count only delays a full batch to the planned wake-up (at most max_delay).
    Waiting waiting = waiting_.load(std::memory_order_seq_cst);
    if (waiting == Waiting::none) return {};
    const SteadyTime::rep wake_at = wake_at_.load(std::memory_order_relaxed);
    const bool changes =
        deadline < wake_at ||
        (waiting == Waiting::requests && (close < wake_at || place + 1 >= limit_.load(std::memory_order_relaxed)));
    if (!changes) return {};
    if (!waiting_.compare_exchange_strong(waiting, Waiting::none, std::memory_order_seq_cst)) return {};
    // Under the mutex: the dispatcher is either before its last look at the intake (and sees
    // this request) or already waiting on cv_ (and gets this notification).
    { std::lock_guard lock(mu_); }
    cv_.notify_one();
    return {};
  }

  bool run_inline(BatchRequest& r) noexcept override {
    if (!on_host_ || !plainly_valid(r) || intake_.closed()) return false;
    const SteadyTime start = Clock::now();
    if (r.deadline <= start) return false;  // the queue fails it (deadline_exceeded), counted there
    r.elements_ = r.inputs[0].count;
    if (!slot_.backend->run_request_here(slot_.device.ordinal, def_, dtype_, r)) return false;
    const SteadyTime end = Clock::now();
    const bool ok = r.status.ok();
    r.report = BatchReport{.device_id = slot_.device.id.c_str(),
                           .backend = slot_.device.backend,
                           .fallback = placement_fallback_,
                           .batch_size = 1,
                           .queued = std::chrono::nanoseconds{0},
                           .executed = end - start};
    (ok ? inline_ok_ : inline_failed_).add();
    ExecutorAccess::count_call(executor_, slot_, !ok);
    if (placement_fallback_ != FallbackReason::none) ExecutorAccess::count_fallback(executor_, placement_fallback_, 1);
    if (observer_ != nullptr) {
      observer_->on_request_ran_inline({def_.id, slot_.device.id, slot_.device.backend, 1, start, end - start,
                                        ok ? ErrorCode::ok : r.status.error().code()});
    }
    return true;
  }

  std::size_t inflight() const override {
    std::lock_guard lock(mu_);
    return queued_.load(std::memory_order_relaxed) + running_;
  }

  void stop() override {
    std::unique_lock lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      lock.unlock();
      cv_.notify_all();
      if (dispatcher_.joinable()) dispatcher_.join();  // it finishes handing over its current batch
      // The dispatcher is gone: the intake (closed now: submit() refuses from here on) and the
      // pending queue are ours.
      lock.lock();
      BatchRequest* cancelled = pending_.take_all();  // the older ones first, then the intake's
      BatchRequest** tail = &cancelled;
      while (*tail != nullptr) tail = &(*tail)->next_;
      intake_.drain(intake_.close(), [&tail](BatchRequest& r) {
        r.next_ = nullptr;
        *tail = &r;
        tail = &r.next_;
        return true;
      });
      const std::size_t count = list_size(cancelled);
      queued_.fetch_sub(count, std::memory_order_relaxed);
      running_ += count;
      stats_.failed += count;
      deadline_bound_ = SteadyTime::max();
      lock.unlock();
      fail_all(cancelled, ErrorCode::cancelled, "the batcher of " + def_.id + " stopped before the request ran");
      lock.lock();
      running_ -= count;
      stopped_ = true;
      idle_cv_.notify_all();
      const auto idle = [this] { return stopped_ && running_ == 0 && inflight_batches_ == 0; };
      while (!idle_cv_.wait_for(lock, kStopGrace, idle)) {
        // Batches still held by their device (e.g. an injected hang): their requests are cancelled
        // now; the slots come back when the devices complete (a hang sees the abandonment).
        abandon_late(lock, SteadyTime::max(), ErrorCode::cancelled);
      }
    }
    idle_cv_.wait(lock, [this] { return stopped_ && running_ == 0 && inflight_batches_ == 0; });
  }

  BatcherStats stats() const override {
    std::lock_guard lock(mu_);
    BatcherStats s = stats_;
    s.submitted = intake_.tickets() - refused_closed_.load(std::memory_order_relaxed);
    s.rejected_queue_full = rejected_queue_full_.load(std::memory_order_relaxed);
    const std::uint64_t inline_ok = inline_ok_.value(), inline_failed = inline_failed_.value();
    s.completed += inline_ok;
    s.failed += inline_failed;
    s.ran_inline = inline_ok + inline_failed;
    s.current_max_batch = limit_.load(std::memory_order_relaxed);
    s.queue_depth = queued_.load(std::memory_order_relaxed);
    return s;
  }

  const Device& device() const override { return slot_.device; }

 private:
  enum class Waiting : std::uint8_t {
    none,      // the dispatcher is working
    requests,  // for a batch to close (size, max_delay or a deadline)
    slot,      // for a batch slot to come back (max_inflight_batches in flight)
  };

  Error stopped_error() const {
    return Error(ErrorCode::failed_precondition, "the batcher of " + def_.id + " is stopped");
  }

  static std::size_t list_size(const BatchRequest* r) {
    std::size_t n = 0;
    for (; r != nullptr; r = r->next_) ++n;
    return n;
  }

  // The common case of validate() as one predicate, without the error paths' string building:
  // true only when validate() accepts the request. A false means "ask validate()", which stays
  // the authority and explains a refusal; it is never itself a refusal.
  // on_done is submit()'s own check (run_inline() does not call it).
  bool plainly_valid(const BatchRequest& r) const noexcept {
    const std::size_t n = r.inputs[0].count;
    if (static_cast<std::size_t>(r.priority) >= kPriorityCount || r.output == nullptr ||
        inputs_ == 0 || n == 0 || n > kMaxBatchElements) {
      return false;
    }
    bool ok = true;
    for (std::size_t i = 0; i < BatchRequest::kMaxInputs; ++i) {
      const TensorView& in = r.inputs[i];
      ok &= i < inputs_ ? in.dtype == dtype_ && in.data != nullptr && in.count == n
                        : in.data == nullptr && in.count == 0;
    }
    return ok && r.output_capacity >= KernelCatalog::output_count(def_, n);
  }

  Status validate(const BatchRequest& r) const {
    if (r.on_done == nullptr) return invalid(def_.id + ": the request has no on_done hook");
    if (static_cast<std::size_t>(r.priority) >= kPriorityCount) return invalid(def_.id + ": unknown priority");
    const std::size_t n = r.inputs[0].count;
    // Messages are built on the error paths only: a valid request allocates nothing.
    const auto name = [this](std::size_t i) { return "input '" + def_.signature.inputs[i] + "'"; };
    for (std::size_t i = 0; i < BatchRequest::kMaxInputs; ++i) {
      const TensorView& in = r.inputs[i];
      if (i >= inputs_) {
        if (in.data != nullptr || in.count != 0) {
          return invalid(def_.id + " takes " + std::to_string(inputs_) + " input(s); inputs[" + std::to_string(i) +
                         "] is set");
        }
        continue;
      }
      if (in.dtype != dtype_) {
        return invalid(def_.id + ": " + name(i) + " has element type " + std::string(to_string(in.dtype)) +
                       ", the batcher runs " + std::string(to_string(dtype_)));
      }
      if (in.count == 0) return invalid(def_.id + ": " + name(i) + " is empty");
      if (in.data == nullptr) return invalid(def_.id + ": " + name(i) + " has no data");
      if (in.count > kMaxBatchElements) {
        return Error(ErrorCode::out_of_range, def_.id + ": " + name(i) + " has " + std::to_string(in.count) +
                                                  " elements, more than a batched request may hold (" +
                                                  std::to_string(kMaxBatchElements) + "); use Executor::submit");
      }
      if (in.count != n) {
        return invalid(def_.id + ": input lengths differ (" + std::to_string(n) + " and " + std::to_string(in.count) +
                       ")");
      }
    }
    const std::size_t needed = KernelCatalog::output_count(def_, n);
    if (r.output == nullptr) return invalid(def_.id + ": the request has no output");
    if (r.output_capacity < needed) {
      return invalid(def_.id + ": the output holds " + std::to_string(r.output_capacity) + " elements, " +
                     std::to_string(needed) + " needed");
    }
    return {};
  }

  // Fails a list of requests (linked through next_) that never ran.
  void fail_all(BatchRequest* list, ErrorCode code, const std::string& message) {
    const SteadyTime now = Clock::now();
    const OpenScope scope(scope_);
    while (BatchRequest* r = list) {
      list = r->next_;
      r->next_ = nullptr;
      r->status = Error(code, message);
      r->report = BatchReport{};
      r->report.device_id = slot_.device.id.c_str();
      r->report.backend = slot_.device.backend;
      r->report.queued = now - r->enqueued_;
      if (observer_ != nullptr) {
        observer_->on_batch_requests_done(
            def_.id, code == ErrorCode::deadline_exceeded ? BatchOutcome::expired : BatchOutcome::error, 1);
        if (code == ErrorCode::deadline_exceeded) observer_->on_deadline_exceeded(def_.id, {});
      }
      notify(*r);
    }
  }

  // Queues a request taken from the intake and lowers deadline_bound_ to its deadline. False
  // when pending_ cannot grow (out of memory): the request stays in the intake until there is
  // room. Dispatcher only.
  bool admit(BatchRequest& r) noexcept {
    if (!pending_.push(r)) return false;
    deadline_bound_ = std::min(deadline_bound_, r.deadline);
    return true;
  }

  // The dispatcher. Submitted requests land in the intake ring without a lock; the dispatcher
  // takes all it holds at once into pending_, which only it touches, and forms batches from
  // pending_ without holding the lock, so producers are never held up by batch formation.
  void dispatch_loop() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      intake_.take([this](BatchRequest& r) { return admit(r); });
      const SteadyTime now = Clock::now();
      // Batches in flight past a deadline of theirs: abandoned, their requests fail.
      const SteadyTime watch =
          inflight_deadlines_ > 0 ? abandon_late(lock, now, ErrorCode::deadline_exceeded) : SteadyTime::max();
      if (deadline_bound_ <= now) {
        BatchRequest* expired = pending_.remove_expired(now, deadline_bound_);
        if (expired != nullptr) {
          expire(lock, expired);
          continue;
        }
      }
      const detail::BatchDecision d = detail::decide_batch(
          pending_.size(), limit_.load(std::memory_order_relaxed), pending_.empty() ? now : pending_.oldest_enqueued(),
          now, policy_.max_delay);
      if (!d.send) {
        wait(lock, Waiting::requests, std::min({d.wake, deadline_bound_, watch}));
        continue;
      }
      if (free_ == nullptr) {  // every slot is in flight: a completion wakes us
        wait(lock, Waiting::slot, std::min(deadline_bound_, watch));
        continue;
      }
      InflightBatch& b = *free_;
      free_ = b.next_free;
      ++inflight_batches_;
      const std::size_t limit = limit_.load(std::memory_order_relaxed);
      lock.unlock();
      BatchRequest* expired = form(b, limit, now);
      if (pending_.empty()) deadline_bound_ = SteadyTime::max();
      lock.lock();
      queued_.fetch_sub(b.requests.size(), std::memory_order_relaxed);
      running_ += b.requests.size();
      if (b.requests.empty()) {
        --inflight_batches_;
        b.next_free = free_;
        free_ = &b;
      }
      if (!b.requests.empty()) {
        b.in_flight = true;
        if (b.earliest_deadline != SteadyTime::max()) ++inflight_deadlines_;
      }
      if (expired != nullptr) expire(lock, expired);
      if (b.requests.empty()) continue;
      lock.unlock();
      launch(b);
      lock.lock();
    }
  }

  // Sends a formed batch to its device, after the bulkhead and breaker said yes (non-CPU only).
  void launch(InflightBatch& b) {
    if (observer_ != nullptr) observer_->on_batch_dispatched(def_.id, b.slot->device.id, b.queued);
    if (b.slot != &cpu_) {
      if (bulkhead_ != nullptr) {
        b.permit = bulkhead_->try_acquire();
        if (!b.permit) {
          if (observer_ != nullptr) observer_->on_bulkhead_rejected(b.slot->device.id);
          return divert(b, FallbackReason::bulkhead_full, ErrorCode::resource_exhausted, "bulkhead full on ");
        }
      }
      if (breaker_ != nullptr) {
        if (!breaker_->allow()) {
          b.permit.reset();
          return divert(b, FallbackReason::breaker_open, ErrorCode::unavailable, "circuit breaker open for ");
        }
        b.breaker_pending.store(true, std::memory_order_release);
      }
    }
    b.exec_start = Clock::now();
    b.slot->backend->execute_batch(b.slot->device.ordinal, b.call, {&Batcher::batch_done, &b});
  }

  // The device refused the batch before running it: the CPU runs it, or its requests fail.
  void divert(InflightBatch& b, FallbackReason reason, ErrorCode code, const char* why) {
    if (allow_fallback_) {
      ExecutorAccess::count_fallback(executor_, reason, b.requests.size());
      if (observer_ != nullptr) {
        observer_->on_fallback(reason, def_.id, b.slot->device.id, cpu_.device.id,
                               static_cast<std::uint32_t>(b.requests.size()));
      }
      b.fallback = reason;
      b.slot = &cpu_;
      b.exec_start = Clock::now();
      cpu_.backend->execute_batch(cpu_.device.ordinal, b.call, {&Batcher::batch_done, &b});
      return;
    }
    b.call.claim_requests();  // not yet handed to any backend: always ours
    const Error error(code, why + b.slot->device.id + "/" + def_.id, "batcher of " + def_.id + ", fallback disabled");
    for (BatchRequest* r : b.requests) r->status = error;
    finish(b);
  }

  // Abandons the in-flight batches whose earliest deadline is at or before `now` (all of them
  // for SteadyTime::max()) and fails their requests with `code`, outside the lock. Returns when
  // to look again (the next such deadline). Dispatcher or stop() only, with the lock held.
  SteadyTime abandon_late(std::unique_lock<std::mutex>& lock, SteadyTime now, ErrorCode code) {
    std::array<InflightBatch*, kMaxInflightBatches> late{};
    std::size_t count = 0;
    SteadyTime next = SteadyTime::max();
    for (std::size_t i = 0; i < policy_.max_inflight_batches; ++i) {
      InflightBatch& b = batches_[i];
      if (!b.in_flight || b.abandoning || b.access.load(std::memory_order_acquire) == BatchCall::kAbandoned) continue;
      if (b.earliest_deadline > now) {
        next = std::min(next, b.earliest_deadline);
        continue;
      }
      std::uint8_t expected = BatchCall::kFree;
      if (!b.access.compare_exchange_strong(expected, BatchCall::kAbandoned, std::memory_order_acq_rel)) {
        // A backend is touching the requests right now (or writing results): look again soon,
        // unless it holds them for good (it then completes the batch itself).
        next = std::min(next, Clock::now() + kAbandonRetry);
        continue;
      }
      b.abandoning = true;
      if (b.earliest_deadline != SteadyTime::max()) --inflight_deadlines_;
      late[count++] = &b;
    }
    if (count == 0) return next;
    lock.unlock();
    const SteadyTime t = Clock::now();
    std::size_t failed = 0;
    for (std::size_t i = 0; i < count; ++i) {
      InflightBatch& b = *late[i];
      if (b.breaker_pending.exchange(false, std::memory_order_acq_rel)) breaker_->record_failure();
      for (BatchRequest* r : b.requests) {
        r->status = code == ErrorCode::deadline_exceeded
                        ? Error(code, "the batch on " + b.slot->device.id + " did not complete before the deadline",
                                def_.id)
                        : Error(code, "the batcher of " + def_.id + " stopped while the batch ran on " +
                                          b.slot->device.id);
        r->report = BatchReport{};
        r->report.device_id = b.slot->device.id.c_str();
        r->report.backend = b.slot->device.backend;
        r->report.fallback = b.fallback;
        r->report.batch_size = static_cast<std::uint32_t>(b.requests.size());
        r->report.queued = b.dispatched - r->enqueued_;
        r->report.executed = t - b.dispatched;
        if (observer_ != nullptr) {
          observer_->on_batch_requests_done(
              def_.id, code == ErrorCode::deadline_exceeded ? BatchOutcome::expired : BatchOutcome::error, 1);
          if (code == ErrorCode::deadline_exceeded) observer_->on_deadline_exceeded(def_.id, b.slot->device.id);
        }
        ++failed;
      }
      if (code == ErrorCode::deadline_exceeded) ExecutorAccess::count_deadlines(executor_, b.requests.size());
    }
    // Counted before the callers hear of it, so that statistics read after completion include it.
    lock.lock();
    stats_.failed += failed;
    if (code == ErrorCode::deadline_exceeded) stats_.expired += failed;
    lock.unlock();
    {
      const OpenScope scope(scope_);
      for (std::size_t i = 0; i < count; ++i) {
        for (BatchRequest* r : late[i]->requests) notify(*r);  // the caller owns each request again
      }
    }
    lock.lock();
    running_ -= failed;
    for (std::size_t i = 0; i < count; ++i) {
      InflightBatch& b = *late[i];
      b.abandoning = false;
      if (b.device_done) release_slot(b);
    }
    if (running_ == 0 && inflight_batches_ == 0) idle_cv_.notify_all();
    return next;
  }

  // Moves up to `limit` requests from pending_ into `b` (highest priority first), without
  // exceeding kMaxBatchElements; expired ones go to the returned list instead. Dispatcher only.
  BatchRequest* form(InflightBatch& b, std::size_t limit, SteadyTime now) {
    BatchRequest* expired = nullptr;
    std::size_t elements = 0;
    b.requests.clear();
    b.offsets.clear();
    b.queued.clear();
    b.oldest = SteadyTime::max();
    b.earliest_deadline = SteadyTime::max();
    b.access.store(BatchCall::kFree, std::memory_order_relaxed);
    b.device_done = false;
    while (b.requests.size() < limit) {
      // One scan of the priority FIFOs per request: pop, and put back at the front the request
      // that would make the batch too large (it opens the next batch).
      BatchRequest* r = pending_.pop();
      if (r == nullptr) break;
      const std::size_t n = r->elements_;
      if (r->deadline > now && !b.requests.empty() && elements + n > kMaxBatchElements) {
        pending_.push_front(*r);
        break;
      }
      if (r->deadline <= now) {
        r->next_ = expired;
        expired = r;
        continue;
      }
      b.offsets.push_back(elements);
      elements += n;
      b.oldest = std::min(b.oldest, r->enqueued_);
      b.earliest_deadline = std::min(b.earliest_deadline, r->deadline);
      if (observer_ != nullptr) b.queued.push_back(now - r->enqueued_);
      b.requests.push_back(r);
    }
    b.offsets.push_back(elements);
    b.call.requests = std::span<BatchRequest* const>(b.requests.data(), b.requests.size());
    b.call.offsets = std::span<const std::uint64_t>(b.offsets.data(), b.offsets.size());
    b.call.total_elements = elements;
    b.slot = &slot_;
    b.fallback = placement_fallback_;
    b.dispatched = now;
    return expired;
  }

  // Fails expired requests (already out of pending_) outside the lock; they count as running
  // meanwhile.
  void expire(std::unique_lock<std::mutex>& lock, BatchRequest* expired) {
    const std::size_t count = list_size(expired);
    queued_.fetch_sub(count, std::memory_order_relaxed);
    stats_.expired += count;
    stats_.failed += count;
    running_ += count;
    lock.unlock();
    fail_all(expired, ErrorCode::deadline_exceeded, "the deadline passed before " + def_.id + " ran");
    lock.lock();
    running_ -= count;
    if (running_ == 0 && inflight_batches_ == 0) idle_cv_.notify_all();
  }

  // Sleeps until `until`, a notification, or a submit that changes the decision (see submit()).
  // Lock held. The order (wake_at_, then waiting_, then a last look at the intake, all seq_cst)
  // pairs with submit(): a request pushed before the look is seen here (no sleep: the caller
  // takes it and decides again), one pushed after sees waiting_ and notifies under the lock.
  void wait(std::unique_lock<std::mutex>& lock, Waiting why, SteadyTime until) {
    wake_at_.store(until.time_since_epoch().count(), std::memory_order_relaxed);
    waiting_.store(why, std::memory_order_seq_cst);
    if (!intake_.ready()) {
      if (until == SteadyTime::max()) {
        cv_.wait(lock);
      } else {
        cv_.wait_until(lock, until);
      }
    }
    waiting_.store(Waiting::none, std::memory_order_relaxed);
  }

  static void batch_done(void* context, Status status) {
    auto& b = *static_cast<InflightBatch*>(context);
    b.owner->on_batch_done(b, std::move(status));
  }

  void on_batch_done(InflightBatch& b, Status status) {
    ExecutorAccess::count_call(executor_, *b.slot, !status.ok());
    if (observer_ != nullptr) {
      const SteadyTime now = Clock::now();
      observer_->on_kernel_executed({def_.id, b.slot->device.id, b.slot->device.backend,
                                     static_cast<std::uint32_t>(b.requests.size()), b.exec_start, now - b.exec_start,
                                     status.ok() ? ErrorCode::ok : status.error().code()});
    }
    b.permit.reset();
    if (b.breaker_pending.exchange(false, std::memory_order_acq_rel)) {
      if (status.ok()) {
        breaker_->record_success();
      } else if (FallbackPolicy::reason_for(status.error()) == FallbackReason::device_error) {
        breaker_->record_failure();
      } else if (breaker_->state() == resilience::BreakerState::half_open) {
        breaker_->record_success();  // the probe was answered: frees it (not a device failure)
      }
    }
    if (b.access.load(std::memory_order_acquire) == BatchCall::kAbandoned) return release_abandoned(b);
    if (!status.ok()) {
      const FallbackReason reason = FallbackPolicy::reason_for(status.error());
      if (reason != FallbackReason::none && b.slot->device.backend != BackendKind::cpu && allow_fallback_) {
        // Held while slot and fallback change, so that abandon_late() reads them consistently.
        if (!b.call.acquire_requests()) return release_abandoned(b);
        ExecutorAccess::count_fallback(executor_, reason, b.requests.size());
        if (observer_ != nullptr) {
          observer_->on_fallback(reason, def_.id, b.slot->device.id, cpu_.device.id,
                                 static_cast<std::uint32_t>(b.requests.size()));
        }
        b.fallback = reason;
        b.slot = &cpu_;
        b.exec_start = Clock::now();
        b.call.release_requests();
        cpu_.backend->execute_batch(cpu_.device.ordinal, b.call, {&Batcher::batch_done, &b});
        return;
      }
      if (!b.call.claim_requests()) return release_abandoned(b);
      const Error error = status.error().with_context(def_.id + " on " + b.slot->device.id);
      for (BatchRequest* r : b.requests) r->status = error;
    }
    finish(b);
  }

  // The device completed a batch the dispatcher abandoned: its requests are (being) failed
  // elsewhere; only the slot comes back.
  void release_abandoned(InflightBatch& b) {
    std::lock_guard lock(mu_);
    if (b.abandoning) {
      b.device_done = true;  // abandon_late() releases it once its requests are failed
      return;
    }
    release_slot(b);
    if (running_ == 0 && inflight_batches_ == 0) idle_cv_.notify_all();
  }

  // Returns a batch slot to the free list. Lock held.
  void release_slot(InflightBatch& b) {
    --inflight_batches_;
    if (b.in_flight && b.earliest_deadline != SteadyTime::max() && !b.abandoning &&
        b.access.load(std::memory_order_acquire) != BatchCall::kAbandoned) {
      --inflight_deadlines_;
    }
    b.in_flight = false;
    b.device_done = false;
    b.requests.clear();
    b.next_free = free_;
    free_ = &b;
    const Waiting waiting = waiting_.load(std::memory_order_relaxed);
    if (waiting == Waiting::slot ||
        (waiting == Waiting::requests &&
         queued_.load(std::memory_order_relaxed) >= limit_.load(std::memory_order_relaxed))) {
      waiting_.store(Waiting::none, std::memory_order_relaxed);
      cv_.notify_one();
    }
  }

  void finish(InflightBatch& b) {
    const SteadyTime now = Clock::now();
    const std::size_t size = b.requests.size();
    std::size_t ok = 0;
    for (BatchRequest* r : b.requests) {
      r->report.device_id = b.slot->device.id.c_str();
      r->report.backend = b.slot->device.backend;
      r->report.fallback = b.fallback;
      r->report.batch_size = static_cast<std::uint32_t>(size);
      r->report.queued = b.dispatched - r->enqueued_;
      r->report.executed = now - b.dispatched;
      if (r->status.ok()) ++ok;
    }
    if (b.fallback != FallbackReason::none && b.slot == &slot_) {
      // Placed elsewhere than asked (e.g. kernel missing on the GPU): counted per request.
      ExecutorAccess::count_fallback(executor_, b.fallback, size);
    }
    {
      const auto lock = lock_briefly(mu_);
      stats_.completed += ok;
      stats_.failed += size - ok;
      ++stats_.batches;
      stats_.batched_requests += size;
      if (policy_.adaptive) {
        limit_.store(detail::next_batch_limit(limit_.load(std::memory_order_relaxed), now - b.oldest, policy_),
                     std::memory_order_relaxed);
      }
      // No longer in flight for the caller: inflight() may read 0 once every hook has run.
      running_ -= size;
    }
    if (observer_ != nullptr) {
      if (ok > 0) observer_->on_batch_requests_done(def_.id, BatchOutcome::ok, ok);
      if (size > ok) observer_->on_batch_requests_done(def_.id, BatchOutcome::error, size - ok);
    }
    {
      const OpenScope scope(scope_);
      for (BatchRequest* r : b.requests) notify(*r);  // the caller owns each request again
    }
    const auto lock = lock_briefly(mu_);
    // Notified under the lock: once stop() sees the batcher idle it may destroy it.
    release_slot(b);
    if (running_ == 0 && inflight_batches_ == 0) idle_cv_.notify_all();
  }

  Executor& executor_;
  const KernelDef& def_;
  const DType dtype_;
  const BatchPolicy policy_;
  const DeviceSlot& slot_;  // the placed device (stable: the policy's slots never change)
  const DeviceSlot& cpu_;
  const FallbackReason placement_fallback_;
  const bool on_host_ = slot_.device.backend == BackendKind::cpu;  // run_inline() may run requests
  const bool allow_fallback_;
  const CompletionScope scope_;
  ComputeObserver* const observer_;            // null: none
  resilience::CircuitBreaker* const breaker_;  // of (slot_, kernel); null: off or the CPU
  resilience::Bulkhead* const bulkhead_;       // of slot_'s device; null: none
  const std::size_t inputs_;  // vector inputs of the signature

  mutable std::mutex mu_;
  std::condition_variable cv_;       // the dispatcher waits here
  std::condition_variable idle_cv_;  // stop() waits here for running work
  // Lock-free intake (submit() never takes mu_), closed once stop() took it for good.
  detail::IntakeRing intake_;
  // Places taken in the bounded queue (intake + pending_), on the intake tail's line: a submit
  // changes both.
  std::atomic<std::size_t>& queued_ = intake_.tail_line_counter();
  // Rarely written.
  alignas(64) std::atomic<std::uint64_t> refused_closed_{0};  // intake tickets of pushes refused: stopped
  std::atomic<std::uint64_t> rejected_queue_full_{0};
  std::atomic<std::size_t> limit_;  // current max batch (adaptive mode moves it, under mu_)
  // What the dispatcher sleeps for, and until when (a steady_clock count), read by submit().
  alignas(64) std::atomic<Waiting> waiting_{Waiting::none};
  std::atomic<SteadyTime::rep> wake_at_{SteadyTime::max().time_since_epoch().count()};
  std::size_t running_ = 0;                        // taken off the queue, results not yet final
  std::size_t inflight_batches_ = 0;
  std::size_t inflight_deadlines_ = 0;  // in-flight batches with a finite earliest deadline
  bool stopping_ = false;  // stop() began: the dispatcher leaves
  bool stopped_ = false;   // stop() cancelled the queue
  BatcherStats stats_;
  // Outcomes of run_inline(), which many workers run at once (so not under mu_).
  StripedCounter<> inline_ok_;
  StripedCounter<> inline_failed_;
  std::unique_ptr<InflightBatch[]> batches_;
  InflightBatch* free_ = nullptr;
  // The dispatcher's own queue and the earliest deadline in it (stop() takes both after joining
  // the dispatcher).
  alignas(64) detail::BatchQueue pending_;
  SteadyTime deadline_bound_ = SteadyTime::max();  // <= every finite deadline in pending_
  alignas(64) std::thread dispatcher_;  // last: started once everything else is set
};

Status check_policy(const BatchPolicy& p) {
  if (p.max_batch == 0 || p.max_batch > kMaxBatchSize) {
    return invalid("BatchPolicy.max_batch must be in [1, " + std::to_string(kMaxBatchSize) + "]");
  }
  if (p.max_delay.count() < 0) return invalid("BatchPolicy.max_delay must not be negative");
  if (p.queue_capacity == 0 || p.queue_capacity > kMaxQueueCapacity) {
    return invalid("BatchPolicy.queue_capacity must be in [1, " + std::to_string(kMaxQueueCapacity) + "]");
  }
  if (p.max_inflight_batches == 0 || p.max_inflight_batches > kMaxInflightBatches) {
    return invalid("BatchPolicy.max_inflight_batches must be in [1, " + std::to_string(kMaxInflightBatches) + "]");
  }
  if (p.adaptive) {
    if (p.min_batch == 0 || p.min_batch > p.max_batch) {
      return invalid("BatchPolicy.min_batch must be in [1, max_batch]");
    }
    if (p.additive_step == 0) return invalid("BatchPolicy.additive_step must be at least 1");
    if (p.latency_target.count() <= 0) return invalid("BatchPolicy.latency_target must be positive");
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<DynamicBatcher>> DynamicBatcher::create(Executor& executor, std::string kernel, DType dtype,
                                                                BatchPolicy policy, CallOptions placement,
                                                                CompletionScope scope) {
  auto found = executor.catalog().lookup(kernel);
  if (!found) return found.error();
  const KernelDef& def = **found;
  if (def.signature.output == OutputShape::computed) {
    // Segments assume inputs of one common length; kernels with their own shapes run as single calls.
    return Error(ErrorCode::failed_precondition,
                 "kernel '" + def.id + "' is not batchable: its inputs have their own shapes (run it with Executor::submit)");
  }
  const auto& dtypes = def.signature.dtypes;
  if (std::find(dtypes.begin(), dtypes.end(), dtype) == dtypes.end()) {
    return invalid("kernel '" + def.id + "' does not accept element type " + std::string(to_string(dtype)));
  }
  if (def.signature.scalars.size() > BatchRequest::kMaxScalars) {
    return invalid("kernel '" + def.id + "' takes " + std::to_string(def.signature.scalars.size()) +
                   " scalars; a batched request holds at most " + std::to_string(BatchRequest::kMaxScalars));
  }
  if (Status s = check_policy(policy); !s) return s.error();
  if ((scope.open == nullptr) != (scope.close == nullptr)) {
    return invalid("CompletionScope: set both open and close, or neither");
  }

  const FallbackPolicy& fallback = ExecutorAccess::policy(executor);
  auto placed = fallback.place(def, dtype, placement);
  if (!placed) return placed.error().with_context("batcher of " + def.id);
  const DeviceSlot* slot = placed->slot;
  FallbackReason reason = placed->fallback;
  if (slot->device.backend != BackendKind::cpu && (def.gpu == nullptr || def.gpu->batched == nullptr)) {
    // The device runs the kernel, but not in batches.
    if (!placement.allow_fallback) {
      return Error(ErrorCode::failed_precondition, "kernel '" + def.id + "' has no batched GPU implementation",
                   "batcher of " + def.id + ", requested " + describe_request(placement) + ", fallback disabled");
    }
    slot = &fallback.cpu();
    reason = FallbackReason::kernel_missing;
  }
  try {
    return std::unique_ptr<DynamicBatcher>(
        new Batcher(executor, def, dtype, policy, *slot, reason, placement.allow_fallback, scope));
  } catch (const std::exception& e) {  // bad_alloc of the batch slots, or no thread for the dispatcher
    return Error(ErrorCode::resource_exhausted, std::string("cannot start the batcher of ") + def.id + ": " + e.what());
  }
}

}  // namespace gpubridge::compute
