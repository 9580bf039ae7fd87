// CallScope: runs the call filters around a method (see filters/call_filter.hpp).
#include "activation/activation.hpp"
#include "gpubridge/core/cycle_clock.hpp"
#include "gpubridge/runtime/internal/turn.hpp"
#include "runtime_core.hpp"

namespace gpubridge::runtime::internal {

namespace {
const FilterList* as_list(const void* p) { return static_cast<const FilterList*>(p); }
}  // namespace

bool CallScope::before() noexcept {
  const FilterList* list = m_.receiver->core().filters.load(std::memory_order_acquire);
  if (list == nullptr || list->empty()) return true;
  filters_ = list;
  start_ticks_ = CycleClock::now();
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
  context.duration = CycleClock::to_duration(start_ticks_, CycleClock::now());
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
