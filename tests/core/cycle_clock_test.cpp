// CycleClock: monotonic ticks and a calibrated rate that agrees with steady_clock.
#include "gpubridge/core/cycle_clock.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace gpubridge {
namespace {

TEST(CycleClock, TicksNeverGoBackwardsOnOneThread) {
  std::uint64_t last = CycleClock::now();
  for (int i = 0; i < 100000; ++i) {
    const std::uint64_t t = CycleClock::now();
    ASSERT_GE(t, last);
    last = t;
  }
}

TEST(CycleClock, RateIsPositiveAndOneNanosecondWithoutTsc) {
  const double rate = CycleClock::ns_per_tick();
  EXPECT_GT(rate, 0.0);
  if (CycleClock::uses_tsc()) {
    // Any TSC in service runs between 100 MHz and 10 GHz.
    EXPECT_GT(rate, 0.1);
    EXPECT_LT(rate, 10.0);
  } else {
    EXPECT_EQ(rate, 1.0);
  }
}

// A span measured in ticks matches the same span measured with steady_clock. The span is long
// (50 ms) so scheduling noise at its ends is small against it; the bound is loose on purpose.
TEST(CycleClock, DurationsAgreeWithSteadyClock) {
  CycleClock::calibrate();
  const auto steady_start = std::chrono::steady_clock::now();
  const std::uint64_t tick_start = CycleClock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const std::uint64_t tick_end = CycleClock::now();
  const auto steady_end = std::chrono::steady_clock::now();
  const double by_ticks = std::chrono::duration<double>(CycleClock::to_duration(tick_start, tick_end)).count();
  const double by_steady = std::chrono::duration<double>(steady_end - steady_start).count();
  EXPECT_NEAR(by_ticks, by_steady, 0.02 * by_steady);
}

TEST(CycleClock, ReversedReadingsGiveZero) {
  EXPECT_EQ(CycleClock::to_duration(100, 50).count(), 0);
  EXPECT_EQ(CycleClock::to_duration(7, 7).count(), 0);
}

}  // namespace
}  // namespace gpubridge
