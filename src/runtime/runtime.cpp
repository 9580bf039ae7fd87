#include "gpubridge/runtime/runtime.hpp"

#include <cstdio>
#include <thread>

#include "gpubridge/core/cycle_clock.hpp"
#include "activation/activation.hpp"
#include "collection/activation_collector.hpp"
#include "execution_context.hpp"

namespace gpubridge::runtime {

using internal::Phase;

namespace internal {

std::exception_ptr make_error(ErrorCode code, std::string message) {
  return std::make_exception_ptr(ErrorException(Error(code, std::move(message))));
}

std::string describe(const std::exception_ptr& error) {
  if (!error) return "no error";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "non-standard exception";
  }
}

void resume_outside(WorkItem* item) noexcept {
  auto* r = static_cast<Resumption*>(item);
  t_context.activation = nullptr;
  t_context.turn = nullptr;
  t_context.request = r->context;
  resume(r->handle);
  t_context.request = nullptr;
}

// A spawned task's root: tracked in Core::roots so frames still suspended when the runtime is
// destroyed are freed.
struct DetachedRoot {
  DetachedRoot* prev = nullptr;
  DetachedRoot* next = nullptr;
  Runtime::Core* core = nullptr;
  std::coroutine_handle<> frame;
};

namespace {

struct DetachedTask {
  struct promise_type : PooledFrame, DetachedRoot {
    Resumption start;
    RequestContext context;  // the spawning code's context, copied at spawn
    promise_type(Runtime::Core& c, Task<void>&) {
      core = &c;
      frame = std::coroutine_handle<promise_type>::from_promise(*this);
      std::lock_guard lock(c.roots_mu);
      next = c.roots;
      if (next != nullptr) next->prev = this;
      c.roots = this;
    }
    ~promise_type() {
      if (core == nullptr) return;  // the runtime is freeing it
      std::lock_guard lock(core->roots_mu);
      (prev != nullptr ? prev->next : core->roots) = next;
      if (next != nullptr) next->prev = prev;
    }
    DetachedTask get_return_object() noexcept {
      return DetachedTask{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    std::suspend_never final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> handle;
};

DetachedTask detached(Runtime::Core& core, Task<void> task) {
  try {
    co_await std::move(task);
  } catch (...) {
    core.report("spawned task failed", std::current_exception());
  }
}

void worker_start(void* arg, std::size_t index) {
  auto* core = static_cast<Runtime::Core*>(arg);
  t_context.core = core;
  t_context.counter_slot = index + 1 < core->call_counter_slots ? index + 1 : 0;
}

}  // namespace

bool dispatch(Runtime& runtime, Message& message) noexcept { return runtime.dispatch(message); }
bool spawn(Runtime& runtime, Task<void> task) { return runtime.spawn(std::move(task)); }
void report_failed_send(Runtime& runtime, const Message& message) noexcept {
  const Runtime::Core& core = *runtime.core_;
  try {
    core.report("one-way call " + std::string(message.method->name) + " to " + message.target->to_string() + " failed",
                message.error);
  } catch (...) {  // out of memory building the text
    core.report("one-way call failed", message.error);
  }
}
void throw_unbound_ref() {
  throw ErrorException(Error(ErrorCode::failed_precondition, "call through an unbound GrainRef"));
}
std::string registered_type_name(Runtime& runtime, const void* type_key, std::string_view fallback) {
  return runtime.type_name(type_key, fallback);
}

}  // namespace internal

// ---------------------------------------------------------------- Core

Runtime::Core::Core(RuntimeOptions opts) : options(std::move(opts)), directory(options.worker_threads + 1) {
  clock = options.clock ? options.clock : std::make_shared<SteadyClock>();
  timers = std::make_unique<internal::TimerService>(*clock);
  call_counter_slots = options.worker_threads + 1;
  call_counters = std::make_unique<internal::CallCounters[]>(call_counter_slots);
  scheduler = std::make_unique<internal::Scheduler>(options.worker_threads, &internal::worker_start, this);
}

Runtime::Core::~Core() = default;

void Runtime::Core::count_call(bool failed) noexcept {
  count(failed ? &internal::CallCounters::failed : &internal::CallCounters::completed);
}

void Runtime::Core::count(std::atomic<std::uint64_t> internal::CallCounters::*counter) noexcept {
  const internal::ExecutionContext& ctx = internal::t_context;
  const std::size_t index = ctx.core == this ? ctx.counter_slot : 0;
  std::atomic<std::uint64_t>& value = call_counters[index].*counter;
  if (index == 0) {
    value.fetch_add(1, std::memory_order_relaxed);  // shared by every thread outside the pool
  } else {
    value.store(value.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // this worker's own
  }
}

const internal::GrainType* Runtime::Core::find_type(std::string_view name) const {
  std::shared_lock lock(types_mu);
  auto it = types_by_name.find(std::string(name));
  return it == types_by_name.end() ? nullptr : it->second.get();
}

void Runtime::Core::report(std::string_view what) const noexcept {
  try {
    if (options.on_unhandled_error) {
      options.on_unhandled_error(what);
      return;
    }
  } catch (...) {  // the handler failed: fall back to stderr
  }
  std::fprintf(stderr, "gpubridge runtime: %.*s\n", static_cast<int>(what.size()), what.data());
}

void Runtime::Core::report(std::string_view what, const std::exception_ptr& error) const noexcept {
  try {
    report(std::string(what) + ": " + internal::describe(error));
  } catch (...) {  // out of memory building the text
    report(what);
  }
}

bool Runtime::Core::calls_idle() {
  bool idle = true;
  directory.for_each([&](internal::Activation* a) { idle = idle && !a->has_calls(); });
  return idle;
}

void Runtime::Core::start_collection_job() {
  if (options.collection_period.count() <= 0) return;
  auto job = std::make_shared<internal::Timer>();
  job->period = options.collection_period;
  job->job = [this] { internal::collect_idle(*this, options.collection_age, nullptr); };
  timers->arm(job, clock->now() + options.collection_period);
}

// ---------------------------------------------------------------- Runtime

Result<std::unique_ptr<Runtime>> Runtime::create(RuntimeOptions options) {
  if (options.worker_threads == 0) options.worker_threads = std::max(1u, std::thread::hardware_concurrency());
  if (options.worker_threads > 1024) {
    return Error(ErrorCode::invalid_argument, "worker_threads must be at most 1024");
  }
  if (options.collection_age.count() < 0 || options.collection_period.count() < 0 ||
      options.stop_timeout.count() < 0 || options.deactivation_timeout.count() < 0) {
    return Error(ErrorCode::invalid_argument, "runtime durations must not be negative");
  }
  try {
    auto core = std::make_unique<Core>(std::move(options));
    std::unique_ptr<Runtime> runtime(new Runtime(std::move(core)));
    return runtime;
  } catch (const std::system_error& e) {
    return Error(ErrorCode::resource_exhausted, std::string("cannot start runtime threads: ") + e.what());
  }
}

Runtime::Runtime(std::unique_ptr<Core> core) : core_(std::move(core)) {
  core_->self = this;
  core_->start_collection_job();
}

Runtime::~Runtime() {
  Core& c = *core_;
  if (c.scheduler->on_worker()) {
    c.report("Runtime destroyed on one of its own worker threads; it cannot join itself");
    std::terminate();
  }
  stop();
  // Everything below runs with no worker left: abandoned turns and spawned roots still
  // suspended are freed (their awaiters unregister from whatever they waited on).
  std::vector<internal::Activation*> dead;
  {
    std::lock_guard lock(c.graveyard_mu);
    dead.swap(c.graveyard);
  }
  for (auto* a : dead) a->destroy_abandoned_turns();
  internal::DetachedRoot* roots = nullptr;
  {
    std::lock_guard lock(c.roots_mu);
    roots = std::exchange(c.roots, nullptr);
  }
  while (roots != nullptr) {
    internal::DetachedRoot* next = roots->next;
    roots->core = nullptr;
    roots->frame.destroy();
    roots = next;
  }
  for (auto* a : dead) delete a;
}

Status Runtime::register_type(const void* key, GrainOptions options, std::function<std::unique_ptr<Grain>()> factory) {
  Core& c = *core_;
  if (options.max_local_activations > 0 && !options.stateless_worker) {
    return Error(ErrorCode::invalid_argument, "max_local_activations applies to stateless workers only",
                 options.type_name);
  }
  auto type = std::make_unique<internal::GrainType>();
  type->max_activations = !options.stateless_worker ? 1
                          : options.max_local_activations > 0 ? options.max_local_activations
                                                              : c.scheduler->size();
  type->key = key;
  type->name = options.type_name;
  type->options = std::move(options);
  type->factory = std::move(factory);
  std::unique_lock lock(c.types_mu);
  if (auto it = c.types_by_key.find(key); it != c.types_by_key.end()) {
    return Error(ErrorCode::already_exists, "grain class already registered as '" + it->second->name + "'");
  }
  if (c.types_by_name.count(type->name) != 0) {
    return Error(ErrorCode::already_exists,
                 "grain type name '" + type->name + "' is taken by another class; set GrainOptions::type_name");
  }
  internal::GrainType* raw = type.get();
  c.types_by_name.emplace(raw->name, std::move(type));
  c.types_by_key.emplace(key, raw);
  return Status();
}

std::string Runtime::type_name(const void* key, std::string_view fallback) const {
  std::shared_lock lock(core_->types_mu);
  auto it = core_->types_by_key.find(key);
  return it != core_->types_by_key.end() ? it->second->name : std::string(fallback);
}

void Runtime::add_call_filter(std::shared_ptr<CallFilter> filter) {
  if (!filter) return;
  CycleClock::calibrate();  // once per process, here rather than in the first filtered call
  Core& c = *core_;
  std::lock_guard lock(c.filters_mu);
  const internal::FilterList* current = c.filters.load(std::memory_order_acquire);
  if (current != nullptr && current->size() >= kMaxCallFilters) {
    throw ErrorException(Error(ErrorCode::resource_exhausted,
                               "add_call_filter: at most " + std::to_string(kMaxCallFilters) + " call filters"));
  }
  auto next = std::make_unique<internal::FilterList>(current != nullptr ? *current : internal::FilterList{});
  next->push_back(std::move(filter));
  c.filters.store(next.get(), std::memory_order_release);
  c.filter_snapshots.push_back(std::move(next));  // readers may still use the older ones
}

void Runtime::check_may_block(const char* what) const {
  if (core_->scheduler->on_worker()) {
    throw ErrorException(Error(ErrorCode::failed_precondition,
                               std::string(what) + " would block a runtime worker; co_await instead"));
  }
  if (core_->phase.load(std::memory_order_acquire) >= Phase::closing) {
    throw ErrorException(Error(ErrorCode::unavailable, "runtime stopped"));
  }
}

void Runtime::post_root(std::coroutine_handle<internal::RootTask::promise_type> root) {
  root.promise().context = RequestContext::current();
  root.promise().start.handle = root;
  root.promise().start.run = &internal::resume_outside;
  root.promise().start.context = &root.promise().context;
  core_->scheduler->post(&root.promise().start);
}

bool Runtime::spawn(Task<void> task) {
  Core& c = *core_;
  if (!task.valid() || c.phase.load(std::memory_order_acquire) == Phase::stopped) return false;
  auto root = internal::detached(c, std::move(task)).handle;
  root.promise().context = RequestContext::current();
  root.promise().start.handle = root;
  root.promise().start.run = &internal::resume_outside;
  root.promise().start.context = &root.promise().context;
  c.scheduler->post(&root.promise().start);  // dropped if the workers are gone; freed at the end
  return true;
}

std::size_t Runtime::collect_idle_now() {
  check_may_block("collect_idle_now()");
  auto waiter = std::make_shared<internal::DeactivationWaiter>();
  const std::size_t n = internal::collect_idle(*core_, core_->options.collection_age, waiter);
  std::unique_lock lock(waiter->mu);
  waiter->cv.wait_for(lock, core_->options.deactivation_timeout, [&] { return waiter->pending == 0; });
  return n;
}

void Runtime::stop() {
  Core& c = *core_;
  if (c.scheduler->on_worker()) {
    throw ErrorException(Error(ErrorCode::failed_precondition, "stop() would block a runtime worker"));
  }
  std::lock_guard serial(c.stop_call_mu);
  if (c.phase.load(std::memory_order_acquire) == Phase::stopped) return;
  using Clk = std::chrono::steady_clock;
  auto wait_for = [&](auto done) {
    const auto deadline = Clk::now() + c.options.stop_timeout;
    std::unique_lock lock(c.stop_mu);
    return c.stop_cv.wait_until(lock, deadline, done);
  };
  // 1. Drain: top-level calls are refused; calls in flight finish (and may call other grains).
  c.phase.store(Phase::draining, std::memory_order_seq_cst);
  c.timers->pause();
  wait_for([&] { return c.calls_idle(); });
  // 2. Close: every call is refused; queued calls fail; every activation deactivates.
  c.phase.store(Phase::closing, std::memory_order_seq_cst);
  // No activation is created from here on, so all have left the directory once as many have
  // been unlisted as were listed (each counted once, when it happens; one comparison per
  // wake-up: every removal wakes this thread, and counting the directory's entries each time
  // would make stopping quadratic in activations).
  const auto none_listed = [&] {
    return c.activations_removed.load(std::memory_order_relaxed) ==
           c.activations_created.load(std::memory_order_relaxed);
  };
  c.directory.for_each([](internal::Activation* a) { a->shutdown(); });
  if (!wait_for(none_listed)) {
    // 3. Abandon what is still stuck: running calls are answered with `cancelled`.
    c.directory.for_each([](internal::Activation* a) { a->abandon(); });
    if (!wait_for(none_listed)) {
      c.report("stop(): some activations did not stop in time (a grain blocks a worker thread?)");
    }
  }
  c.timers->stop();
  c.scheduler->stop();
  c.phase.store(Phase::stopped, std::memory_order_release);
}

bool Runtime::stopped() const noexcept { return core_->phase.load(std::memory_order_acquire) != Phase::running; }

RuntimeStats Runtime::stats() const noexcept {
  const Core& c = *core_;
  RuntimeStats s;
  s.activations_created = c.activations_created.load(std::memory_order_relaxed);
  const std::uint64_t removed = c.activations_removed.load(std::memory_order_relaxed);
  s.activations_current = s.activations_created >= removed ? s.activations_created - removed : 0;
  s.deactivations = c.deactivations.load(std::memory_order_relaxed);
  s.activation_failures = c.activation_failures.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < c.call_counter_slots; ++i) {
    s.calls_completed += c.call_counters[i].completed.load(std::memory_order_relaxed);
    s.calls_failed += c.call_counters[i].failed.load(std::memory_order_relaxed);
    s.replies_resumed_in_place += c.call_counters[i].replies_in_place.load(std::memory_order_relaxed);
  }
  return s;
}

std::size_t Runtime::activation_count() const { return core_->directory.count(); }
std::size_t Runtime::activation_count(std::string_view type_name) const { return core_->directory.count(type_name); }
std::size_t Runtime::worker_count() const noexcept { return core_->scheduler->size(); }
Clock& Runtime::clock() const noexcept { return *core_->clock; }
const RuntimeOptions& Runtime::options() const noexcept { return core_->options; }

}  // namespace gpubridge::runtime
