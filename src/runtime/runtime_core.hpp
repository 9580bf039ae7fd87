#pragma once
// Runtime::Core: the components of one runtime and the operations they share (routing,
// completing calls, reporting). Internal to src/runtime.
#include <atomic>
#include <condition_variable>
#include <coroutine>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "directory/activation_directory.hpp"
#include "gpubridge/runtime/runtime.hpp"
#include "scheduling/scheduler.hpp"
#include "timers/timer_service.hpp"

namespace gpubridge::runtime {

namespace internal {

struct GrainType {
  const void* key = nullptr;  // type_key of the registered class
  std::string name;
  GrainOptions options;
  std::function<std::unique_ptr<Grain>()> factory;
  std::size_t max_activations = 1;  // stateless workers: resolved max_local_activations
};

using FilterList = std::vector<std::shared_ptr<CallFilter>>;

// Lifecycle of the runtime itself.
enum class Phase : int {
  running,   // serving calls
  draining,  // stop(): top-level calls refused, calls in flight finish
  closing,   // stop(): every call refused, activations deactivating
  stopped,   // workers joined
};

// A detached root (Runtime::spawn): tracked so that frames still suspended at the end are freed.
struct DetachedRoot;

// Answered calls, counted per worker (slot 0: threads outside the pool) so that workers do not
// share a cache line on every call.
struct alignas(64) CallCounters {
  std::atomic<std::uint64_t> completed{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> replies_in_place{0};  // RuntimeStats::replies_resumed_in_place
};

}  // namespace internal

struct Runtime::Core {
  explicit Core(RuntimeOptions opts);
  ~Core();

  Runtime* self = nullptr;
  RuntimeOptions options;
  std::shared_ptr<Clock> clock;
  std::unique_ptr<internal::Scheduler> scheduler;
  internal::ActivationDirectory directory;
  std::unique_ptr<internal::TimerService> timers;

  mutable std::shared_mutex types_mu;
  std::unordered_map<std::string, std::unique_ptr<internal::GrainType>> types_by_name;
  std::unordered_map<const void*, internal::GrainType*> types_by_key;

  // Read on every call, written almost never: on a cache line of their own, away from the
  // mutexes and counters that workers write.
  alignas(64) std::atomic<internal::Phase> phase{internal::Phase::running};
  // Filters: immutable snapshots, replaced as a whole; old ones live until the runtime dies.
  std::atomic<const internal::FilterList*> filters{nullptr};
  alignas(64) std::mutex filters_mu;
  std::vector<std::unique_ptr<internal::FilterList>> filter_snapshots;

  std::mutex stop_mu;                     // with stop_cv: wakes stop() on progress
  std::condition_variable stop_cv;
  std::mutex stop_call_mu;                // serialises stop()

  std::mutex roots_mu;
  internal::DetachedRoot* roots = nullptr;  // intrusive list of live spawned roots

  // Statistics (Runtime::stats()).
  std::unique_ptr<internal::CallCounters[]> call_counters;  // worker_threads + 1 slots
  std::size_t call_counter_slots = 0;
  alignas(64) std::atomic<std::uint64_t> activations_created{0};
  std::atomic<std::uint64_t> activations_removed{0};  // left the directory
  std::atomic<std::uint64_t> deactivations{0};
  std::atomic<std::uint64_t> activation_failures{0};
  // Counts one answered (or refused) call on the calling thread's slot.
  void count_call(bool failed) noexcept;
  // Adds one to `counter` of the calling thread's slot of call_counters.
  void count(std::atomic<std::uint64_t> internal::CallCounters::*counter) noexcept;

  std::mutex graveyard_mu;
  std::vector<internal::Activation*> graveyard;  // abandoned at stop(), freed after the join

  // Routes a call to an activation (creating one if needed). False with m.error set on failure.
  bool route(Message& m) noexcept;
  // route() for a stateless worker type (shard locked; may create an activation when may_create,
  // else sets needs_writer; may throw bad_alloc). Null with m.error set on a deadlock.
  internal::Activation* pick_stateless(internal::ActivationTable::Slot& listing, const internal::GrainType& type,
                                       Message& m, const internal::Activation* home_candidate, bool may_create,
                                       bool& needs_writer);
  // True when no activation has a call queued or running (stop(), phase 1).
  bool calls_idle();
  // Answers a call: resumes the caller in its activation, or returns its handle when it may run
  // inline on this thread (allow_inline), or posts it to the workers. With allow_inline, a
  // grain's turn waiting for the answer continues here when its activation is idle
  // (Activation::resume_here).
  std::coroutine_handle<> complete_call(Message& m, bool allow_inline) noexcept;
  // Completes a call with `error` without inline resumption.
  void fail_call(Message& m, std::exception_ptr error) noexcept;
  const internal::GrainType* find_type(std::string_view name) const;
  void report(std::string_view what) const noexcept;
  void report(std::string_view what, const std::exception_ptr& error) const noexcept;
  void notify_progress() noexcept;
  void start_collection_job();
};

namespace internal {
std::exception_ptr make_error(ErrorCode code, std::string message);
std::string describe(const std::exception_ptr& error);
// The thunk that resumes a caller outside any activation (Resumption::run).
void resume_outside(WorkItem* item) noexcept;
}  // namespace internal

}  // namespace gpubridge::runtime
