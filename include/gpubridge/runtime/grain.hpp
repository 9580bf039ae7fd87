#pragma once
// Grain: the base class of every grain (virtual actor) implementation.
//
//   class Counter : public gpubridge::runtime::Grain {
//    public:
//     Task<int> add(int n) { value_ += n; co_return value_; }
//     Task<int> get() const { co_return value_; }
//     using always_interleave = Methods<&Counter::get>;            // optional, per method
//     using remote_methods = Methods<&Counter::add, &Counter::get>; // optional, needs Codecs
//    private:
//     int value_ = 0;
//   };
//
// The runtime creates and destroys grain objects; user code never does. Methods are coroutines
// returning Task<R>; they run as turns of the activation: a non-reentrant grain runs one call at
// a time from its start to its end, including the time it spends in co_await. Grain state needs
// no locks. Members below (id(), runtime(), timers, deactivate_on_idle()) may be used from
// on_activate() on, inside the grain's own turns only.
//
// Optional in-class declarations:
//   always_interleave: methods that may start while other calls of this activation are
//     suspended in co_await (like Orleans' [AlwaysInterleave]); they still never run at the same
//     instant as another turn.
//   remote_methods: methods callable across silos; their argument and result types must have a
//     Codec (checked at compile time when the grain type is registered).
#include <cstdint>
#include <functional>

#include "gpubridge/runtime/clock.hpp"
#include "gpubridge/runtime/grain_id.hpp"
#include "gpubridge/runtime/grain_ref.hpp"
#include "gpubridge/runtime/internal/method.hpp"
#include "gpubridge/runtime/task.hpp"

namespace gpubridge::runtime {

class Runtime;
namespace internal {
class Activation;
std::string registered_type_name(Runtime& runtime, const void* type_key, std::string_view fallback);
}  // namespace internal

using TimerId = std::uint64_t;

class Grain {
 public:
  Grain() = default;
  virtual ~Grain() = default;
  Grain(const Grain&) = delete;
  Grain& operator=(const Grain&) = delete;

  // Runs as the activation's first turn, before any call. An exception fails the activation:
  // every queued call fails with it and the next call tries a fresh activation.
  virtual Task<void> on_activate();
  // Runs as the activation's last turn, after its timers stopped and its calls finished. An
  // exception is reported to the runtime's unhandled-error handler; the activation goes anyway.
  virtual Task<void> on_deactivate();

  const GrainId& id() const noexcept { return id_; }

 protected:
  Runtime& runtime() const {
    require_activated();
    return *runtime_;
  }

  // The grain factory: a reference to another grain (or this one).
  template <typename G>
  GrainRef<G> get_grain(GrainKey key) const {
    require_activated();
    return GrainRef<G>(runtime_, GrainId(internal::registered_type_name(*runtime_, internal::type_key<G>(),
                                                                        internal::class_name<G>()),
                                         std::move(key)));
  }
  template <typename G>
  GrainRef<G> self() const {
    static_assert(std::is_base_of_v<Grain, G>);
    require_activated();
    return GrainRef<G>(runtime_, id_);
  }

  // Calls `callback` as a turn of this activation `due` from now, then every `period` after the
  // previous tick's turn ended (period 0: once). Ticks follow the grain's turn rules, never
  // overlap one another, and stop when the timer is cancelled or the activation deactivates.
  // An exception from a tick goes to the unhandled-error handler; the timer keeps running.
  TimerId register_timer(Clock::duration due, Clock::duration period, std::function<Task<void>()> callback);
  // False when no such timer is registered (any more).
  bool cancel_timer(TimerId timer);
  // Deactivates this activation once its current calls have finished; later calls go to a new
  // activation.
  void deactivate_on_idle();

 private:
  friend class internal::Activation;
  void require_activated() const;  // failed_precondition before the runtime set the grain up
  internal::Activation* activation_ = nullptr;
  Runtime* runtime_ = nullptr;
  GrainId id_;
};

}  // namespace gpubridge::runtime
