#pragma once
// Runtime: the virtual-actor runtime of one process (a silo's core). It owns a fixed pool of
// worker threads, the activation directory, the timer service and idle collection.
//
//   auto runtime = Runtime::create({.worker_threads = 4}).value();
//   runtime->register_grain<Counter>().value();
//   auto counter = runtime->get<Counter>("c1");
//   int v = runtime->run(counter.call<&Counter::add>(5));   // from non-coroutine code
//
// Execution model: an activation has a mailbox; the scheduler runs one activation at a time per
// worker, one turn at a time per activation (see activation_state.hpp and grain.hpp). No thread
// is ever dedicated to a grain and nothing in the runtime blocks a worker.
//
// Thread-safety: every member is thread-safe unless noted. run(), collect_idle_now() and stop()
// block the calling thread and refuse to run on a worker thread (failed_precondition).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

#include "gpubridge/core/result.hpp"
#include "gpubridge/runtime/activation/activation_state.hpp"
#include "gpubridge/runtime/async_event.hpp"
#include "gpubridge/runtime/clock.hpp"
#include "gpubridge/runtime/filters/call_filter.hpp"
#include "gpubridge/runtime/grain.hpp"
#include "gpubridge/runtime/grain_ref.hpp"
#include "gpubridge/runtime/messaging/message.hpp"
#include "gpubridge/runtime/observers/observer_set.hpp"
#include "gpubridge/runtime/request_context.hpp"
#include "gpubridge/runtime/serialization/codec.hpp"
#include "gpubridge/runtime/sync_wait.hpp"
#include "gpubridge/runtime/task.hpp"

namespace gpubridge::runtime {

struct RuntimeOptions {
  std::size_t worker_threads = 0;  // 0: std::thread::hardware_concurrency()
  // Activations idle (no call, no tick) for longer than this are deactivated by collection.
  Clock::duration collection_age = std::chrono::minutes(15);
  // How often collection runs on its own; 0 disables it (collect_idle_now() still works).
  Clock::duration collection_period = std::chrono::minutes(1);
  // stop(): how long in-flight calls may take to finish, then how long deactivation may take.
  std::chrono::milliseconds stop_timeout{5000};
  // collect_idle_now(): how long to wait for the deactivations it started.
  std::chrono::milliseconds deactivation_timeout{5000};
  // Time source for timers and collection; null: SteadyClock. Tests pass a ManualClock.
  std::shared_ptr<Clock> clock;
  // Receives errors nobody awaits (one-way calls, spawned tasks, timer ticks, on_deactivate);
  // null: printed to stderr. Called on any thread; must be thread-safe.
  std::function<void(std::string_view what)> on_unhandled_error;
};

// How the runtime treats one grain class (a declarative strategy; the activation carries it out).
struct GrainOptions {
  std::string type_name;  // empty: the class name without namespaces
  // Turns of one activation interleave at co_await points (never run at the same instant).
  bool reentrant = false;
  // Calls go to any of up to max_local_activations activations of the same id; no state shared.
  // A call stays with the activation running on the calling thread when that one is idle (for a
  // reentrant type on 7 of 8 calls); otherwise it goes to the idler of that one and one at
  // random, and when both are busy a new one is created, up to the maximum.
  bool stateless_worker = false;
  std::size_t max_local_activations = 0;  // stateless workers; 0: one per worker thread
};

// Counters of one runtime since it was created (for metrics). Each field is read on its own with
// relaxed ordering: a snapshot is not atomic as a whole.
struct RuntimeStats {
  std::uint64_t activations_current = 0;  // in the directory: activating, valid or deactivating
  std::uint64_t activations_created = 0;
  std::uint64_t deactivations = 0;        // activations that ran on_deactivate and left
  std::uint64_t activation_failures = 0;  // the factory or on_activate failed
  std::uint64_t calls_completed = 0;      // answered with a value
  std::uint64_t calls_failed = 0;         // answered with an error, including calls refused at dispatch
  // Answers to a grain's call that resumed the calling turn on the worker that completed the
  // call, at once, because the caller's activation was idle (no trip through the scheduler).
  std::uint64_t replies_resumed_in_place = 0;
};

class Runtime {
 public:
  static Result<std::unique_ptr<Runtime>> create(RuntimeOptions options = {});
  // stop(), then frees everything. Must not run on one of the runtime's own workers (that is a
  // bug the destructor cannot recover from: it reports it and terminates).
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Registers grain class G (default-constructed by the runtime, or made by `factory`).
  // already_exists when the type name is taken by another class.
  template <typename G>
  Status register_grain(GrainOptions options = {}) {
    return register_grain<G>(std::move(options), [] { return std::make_unique<G>(); });
  }
  template <typename G, typename F>
  Status register_grain(GrainOptions options, F factory) {
    static_assert(std::is_base_of_v<Grain, G>, "grain classes derive from gpubridge::runtime::Grain");
    if constexpr (requires { typename G::remote_methods; }) {
      static_assert(internal::check_methods<G>(static_cast<typename G::remote_methods*>(nullptr)));
    }
    if (options.type_name.empty()) options.type_name = std::string(internal::class_name<G>());
    return register_type(internal::type_key<G>(), std::move(options),
                         [f = std::move(factory)]() -> std::unique_ptr<Grain> { return f(); });
  }

  // A reference to grain (G, key). Never fails: calls to an unregistered type fail (not_found).
  template <typename G>
  GrainRef<G> get(GrainKey key) {
    return GrainRef<G>(this, GrainId(type_name(internal::type_key<G>(), internal::class_name<G>()), std::move(key)));
  }

  // Adds a filter run around every later call (see call_filter.hpp). Throws ErrorException
  // (resource_exhausted) beyond kMaxCallFilters filters.
  void add_call_filter(std::shared_ptr<CallFilter> filter);

  // Runs `task` on a worker and blocks until it completes; returns its value or rethrows.
  // unavailable once stopped; failed_precondition on a worker thread.
  template <typename T>
  T run(Task<T> task) {
    check_may_block("run()");
    internal::SyncState<T> state;
    post_root(internal::sync_root(std::move(task), state).handle);
    state.wait();
    return state.take();
  }

  // Starts `task` on a worker and returns at once; its exception goes to on_unhandled_error.
  // False (and the task is dropped unstarted) once the runtime is stopping.
  bool spawn(Task<void> task);

  // The single entry point of every grain call. Routes `message` to an activation of its target
  // (activating one if needed); the cluster layer will route calls for other silos here. Returns
  // true when the call was accepted: the runtime will complete it by resuming message.reply,
  // possibly on another thread before dispatch() returns. Returns false with message.error set
  // when it failed at once (unknown grain type, deadlock, runtime stopped).
  bool dispatch(Message& message) noexcept;

  // Deactivates every activation idle for at least options.collection_age and waits (up to
  // options.deactivation_timeout) until they are gone. Returns how many it deactivated.
  std::size_t collect_idle_now();

  // Stops the runtime: new top-level calls fail with "unavailable: runtime stopped"; calls in
  // flight get options.stop_timeout to finish (calls they make still run); then queued calls fail
  // with unavailable, every activation deactivates (on_deactivate runs) within another
  // stop_timeout; calls still running after that are answered with "cancelled" and their
  // activations are dropped without on_deactivate. Idempotent; workers are joined on return.
  void stop();
  bool stopped() const noexcept;

  // Cheap (relaxed atomic loads, one per worker for the call counters).
  RuntimeStats stats() const noexcept;
  std::size_t activation_count() const;
  std::size_t activation_count(std::string_view type_name) const;
  std::size_t worker_count() const noexcept;
  Clock& clock() const noexcept;
  const RuntimeOptions& options() const noexcept;

  // The runtime's components; defined and used only by the implementation in src/runtime.
  struct Core;

 private:
  explicit Runtime(std::unique_ptr<Core> core);
  Status register_type(const void* key, GrainOptions options, std::function<std::unique_ptr<Grain>()> factory);
  std::string type_name(const void* key, std::string_view fallback) const;
  void check_may_block(const char* what) const;
  void post_root(std::coroutine_handle<internal::RootTask::promise_type> root);

  friend std::string internal::registered_type_name(Runtime&, const void*, std::string_view);
  friend void internal::report_failed_send(Runtime&, const Message&) noexcept;
  std::unique_ptr<Core> core_;
};

}  // namespace gpubridge::runtime
