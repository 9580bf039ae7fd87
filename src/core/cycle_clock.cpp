// CycleClock: TSC detection and the one-time calibration against steady_clock.
#include "gpubridge/core/cycle_clock.hpp"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace gpubridge {

bool CycleClock::detect_invariant_tsc() noexcept {
#if defined(__x86_64__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0x80000000u, &eax, &ebx, &ecx, &edx) == 0 || eax < 0x80000007u) return false;
  if (__get_cpuid(0x80000007u, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (edx & (1u << 8)) != 0;
#else
  return false;
#endif
}

namespace {

struct Pair {
  std::int64_t steady_ns = 0;
  std::uint64_t ticks = 0;
};

std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A (steady, tick) pair whose tick read lies between two steady reads as close together as
// several tries allow; the steady time is their midpoint.
Pair bracketed_pair() noexcept {
  Pair best;
  std::int64_t best_width = -1;
  for (int i = 0; i < 16; ++i) {
    const std::int64_t before = steady_ns();
    const std::uint64_t ticks = CycleClock::now();
    const std::int64_t after = steady_ns();
    const std::int64_t width = after - before;
    if (best_width < 0 || width < best_width) {
      best_width = width;
      best = Pair{before + width / 2, ticks};
    }
  }
  return best;
}

double calibrate_ns_per_tick() noexcept {
  if (!CycleClock::uses_tsc()) return 1.0;
  constexpr std::int64_t kWindowNs = 2'000'000;
  const Pair first = bracketed_pair();
  Pair last = first;
  while (last.steady_ns - first.steady_ns < kWindowNs || last.ticks <= first.ticks) last = bracketed_pair();
  return static_cast<double>(last.steady_ns - first.steady_ns) / static_cast<double>(last.ticks - first.ticks);
}

}  // namespace

double CycleClock::ns_per_tick() noexcept {
  static const double rate = calibrate_ns_per_tick();
  return rate;
}

}  // namespace gpubridge
