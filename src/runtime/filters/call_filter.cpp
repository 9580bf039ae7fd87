// CallScope: runs the call filters around a method (see filters/call_filter.hpp).
#include <algorithm>
#include <chrono>
#include <cstdint>

#include "activation/activation.hpp"
#include "gpubridge/core/cycle_clock.hpp"
#include "gpubridge/runtime/internal/turn.hpp"
#include "runtime_core.hpp"

namespace gpubridge::runtime::internal {

namespace {
const FilterList* as_list(const void* p) { return static_cast<const FilterList*>(p); }

// Which calls this thread times (see CallContext::timed). Each timed call measures the rate of
// calls since the previous timed one and sets how many calls to skip before the next, so that
// timed calls are about kTimedCallGap apart (none skipped while calls are slower than that); the
// skip is drawn at random around that mean so periodic call patterns are not sampled in step.
class CallTiming {
 public:
  // Whether the call starting now is timed.
  bool start_call() noexcept {
    ++calls_since_timed_;
    if (skip_ == 0) return true;
    --skip_;
    return false;
  }
  // A timed call ended at `end_ticks`.
  void timed_call_ended(std::uint64_t end_ticks) noexcept {
    if (last_timed_end_ != 0 && end_ticks > last_timed_end_) {
      const double elapsed = static_cast<double>(end_ticks - last_timed_end_);
      const double mean_period = static_cast<double>(calls_since_timed_) * gap_ticks() / elapsed;
      if (mean_period >= 2.0) {
        const auto period = static_cast<std::uint64_t>(std::min(mean_period, 1024.0));
        skip_ = static_cast<std::uint32_t>(next_random() % (2 * period - 1));  // mean: period - 1
      } else {
        skip_ = 0;
      }
    }
    last_timed_end_ = end_ticks;
    calls_since_timed_ = 0;
  }

 private:
  static double gap_ticks() noexcept {
    static const double ticks =
        static_cast<double>(std::chrono::nanoseconds(kTimedCallGap).count()) / CycleClock::ns_per_tick();
    return ticks;
  }
  std::uint64_t next_random() noexcept {  // xorshift64
    random_ ^= random_ << 13;
    random_ ^= random_ >> 7;
    random_ ^= random_ << 17;
    return random_;
  }
  std::uint64_t last_timed_end_ = 0;
  std::uint64_t calls_since_timed_ = 0;
  std::uint32_t skip_ = 0;
  std::uint64_t random_ = 0x9E3779B97F4A7C15ull;
};

thread_local CallTiming call_timing;
}  // namespace

bool CallScope::before() noexcept {
  const FilterList* list = m_.receiver->core().filters.load(std::memory_order_acquire);
  if (list == nullptr || list->empty()) return true;
  filters_ = list;
  start_ticks_ = call_timing.start_call() ? CycleClock::now() : 0;
  CallContext context{*m_.target, m_.method->name, m_.method->arity};
  for (const auto& f : *list) {
    try {
      context.state = nullptr;
      f->before(context);
      states_[entered_] = context.state;
      ++entered_;
    } catch (...) {
      m_.error = std::current_exception();
      after();
      return false;
    }
  }
  return true;
}

void CallScope::after() noexcept {
  if (filters_ == nullptr || entered_ == 0) return;
  const FilterList& list = *as_list(filters_);
  CallContext context{*m_.target, m_.method->name, m_.method->arity};
  if (start_ticks_ != 0) {
    const std::uint64_t end = CycleClock::now();
    context.timed = true;
    context.duration = CycleClock::to_duration(start_ticks_, end);
    call_timing.timed_call_ended(end);
  }
  context.exception = m_.error;
  for (std::size_t i = entered_; i-- > 0;) {
    try {
      context.state = states_[i];
      list[i]->after(context);
    } catch (...) {
      m_.error = std::current_exception();
      context.exception = m_.error;
    }
  }
  entered_ = 0;
}

}  // namespace gpubridge::runtime::internal
