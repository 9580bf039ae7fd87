#pragma once
// CycleClock: a cheap monotonic tick counter for timing short spans on hot paths (a grain call's
// duration, measured by the call filters on every call).
//
// On x86-64 with an invariant TSC (CPUID 0x80000007 EDX bit 8: constant rate, never stops) a tick
// is one TSC increment, read with RDTSC (about half the cost of clock_gettime through the vDSO);
// elsewhere a tick is one nanosecond of std::chrono::steady_clock. Which one is used is fixed for
// the process (uses_tsc()).
//
// Ticks become time through a rate calibrated once per process against steady_clock: two
// bracketed (steady, tsc) pairs about 2 ms apart, each the tightest of several reads, so a
// preempted read does not skew it (relative error well under 1e-3). calibrate() does that and
// blocks the caller for those 2 ms the first time; later calls return at once. Call it off the
// hot path (the runtime does when a call filter is added); to_duration() calibrates on first use
// if nobody did.
//
// Thread-safety: all members may be called from any thread.
#include <chrono>
#include <cstdint>

namespace gpubridge {

class CycleClock {
 public:
  // Current tick count (monotonic while uses_tsc() or on steady_clock).
  static std::uint64_t now() noexcept {
#if defined(__x86_64__)
    if (uses_tsc()) return __builtin_ia32_rdtsc();
#endif
    return static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  // Ticks between two now() readings as a duration (0 if `end` is before `start`).
  static std::chrono::nanoseconds to_duration(std::uint64_t start, std::uint64_t end) noexcept {
    if (end <= start) return std::chrono::nanoseconds(0);
    return std::chrono::nanoseconds(static_cast<std::int64_t>(static_cast<double>(end - start) * ns_per_tick()));
  }
  static bool uses_tsc() noexcept {
    static const bool tsc = detect_invariant_tsc();
    return tsc;
  }
  // Nanoseconds per tick (1 without TSC); calibrates on first use.
  static double ns_per_tick() noexcept;
  // Calibrates now if not done yet (see the file comment).
  static void calibrate() noexcept { (void)ns_per_tick(); }

 private:
  static bool detect_invariant_tsc() noexcept;
};

}  // namespace gpubridge
