#include "gpubridge/runtime/clock.hpp"

#include <algorithm>
#include <ctime>

namespace gpubridge::runtime {

std::uint64_t Clock::add_listener(std::function<void()>) { return 0; }

Clock::time_point SteadyClock::now_coarse() const noexcept {
#if defined(__linux__) && defined(CLOCK_MONOTONIC_COARSE)
  // libstdc++'s steady_clock is CLOCK_MONOTONIC: the coarse variant has the same origin.
  timespec ts{};
  if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0) {
    return time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
  }
#endif
  return now();
}
void Clock::remove_listener(std::uint64_t) {}

ManualClock::ManualClock() : now_ns_(std::chrono::duration_cast<duration>(std::chrono::hours(1)).count()) {}

Clock::time_point ManualClock::now() const noexcept {
  return time_point(duration(now_ns_.load(std::memory_order_acquire)));
}

void ManualClock::advance(duration d) {
  std::lock_guard lock(mu_);
  now_ns_.fetch_add(std::max<std::int64_t>(d.count(), 0), std::memory_order_acq_rel);
  for (auto& [id, fn] : listeners_) fn();
}

std::uint64_t ManualClock::add_listener(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  const std::uint64_t id = next_id_++;
  listeners_.emplace_back(id, std::move(fn));
  return id;
}

void ManualClock::remove_listener(std::uint64_t id) {
  std::lock_guard lock(mu_);
  std::erase_if(listeners_, [&](const auto& l) { return l.first == id; });
}

}  // namespace gpubridge::runtime
