// Retry policy: which codes are retried, backoff growth, cap and jitter bounds.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <set>

#include "gpubridge/resilience/retry.hpp"

namespace gpubridge::resilience {
namespace {

using namespace std::chrono_literals;

TEST(RetryTest, RetryableCodes) {
  EXPECT_TRUE(is_retryable(ErrorCode::unavailable));
  EXPECT_TRUE(is_retryable(ErrorCode::aborted));
  EXPECT_TRUE(is_retryable(ErrorCode::resource_exhausted));
  for (ErrorCode code : {ErrorCode::ok, ErrorCode::cancelled, ErrorCode::unknown, ErrorCode::invalid_argument,
                         ErrorCode::deadline_exceeded, ErrorCode::not_found, ErrorCode::already_exists,
                         ErrorCode::permission_denied, ErrorCode::failed_precondition, ErrorCode::out_of_range,
                         ErrorCode::unimplemented, ErrorCode::internal, ErrorCode::data_loss,
                         ErrorCode::unauthenticated}) {
    EXPECT_FALSE(is_retryable(code)) << to_string(code);
  }
}

TEST(RetryTest, ValidatesOptions) {
  EXPECT_TRUE(validate(RetryOptions{}).ok());
  RetryOptions zero_attempts;
  zero_attempts.max_attempts = 0;
  Status s = validate(zero_attempts);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(s.error().message().find("max_attempts"), std::string::npos);

  RetryOptions shrinking;
  shrinking.multiplier = 0.5;
  ASSERT_FALSE(validate(shrinking).ok());
  EXPECT_NE(validate(shrinking).error().message().find("multiplier"), std::string::npos);
  shrinking.multiplier = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(validate(shrinking).ok());

  RetryOptions negative;
  negative.initial_backoff = -1ms;
  ASSERT_FALSE(validate(negative).ok());
  EXPECT_NE(validate(negative).error().message().find("initial_backoff"), std::string::npos);

  RetryOptions inverted;
  inverted.initial_backoff = 100ms;
  inverted.max_backoff = 10ms;
  ASSERT_FALSE(validate(inverted).ok());
  EXPECT_NE(validate(inverted).error().message().find("max_backoff"), std::string::npos);
}

TEST(RetryTest, BackoffGrowsGeometricallyUpToTheCap) {
  RetryOptions o;
  o.initial_backoff = 5ms;
  o.multiplier = 2.0;
  o.max_backoff = 100ms;
  o.jitter = false;
  EXPECT_EQ(backoff_delay(o, 0, 0), 0ns);
  EXPECT_EQ(backoff_delay(o, 1, 0), 5ms);
  EXPECT_EQ(backoff_delay(o, 2, 0), 10ms);
  EXPECT_EQ(backoff_delay(o, 3, 0), 20ms);
  EXPECT_EQ(backoff_delay(o, 4, 0), 40ms);
  EXPECT_EQ(backoff_delay(o, 5, 0), 80ms);
  EXPECT_EQ(backoff_delay(o, 6, 0), 100ms);
  EXPECT_EQ(backoff_delay(o, 1000, 0), 100ms);  // no overflow for huge retry numbers
  EXPECT_EQ(backoff_delay(o, std::numeric_limits<std::uint32_t>::max(), 0), 100ms);

  o.multiplier = 1.0;  // constant backoff
  EXPECT_EQ(backoff_delay(o, 7, 0), 5ms);
  o.initial_backoff = 0ms;
  EXPECT_EQ(backoff_delay(o, 3, ~std::uint64_t{0}), 0ns);
}

TEST(RetryTest, FullJitterStaysWithinZeroAndTheCappedBackoff) {
  RetryOptions o;
  o.initial_backoff = 4ms;
  o.multiplier = 3.0;
  o.max_backoff = 50ms;
  o.jitter = true;
  // Extremes of the random input hit the ends of the range.
  EXPECT_EQ(backoff_delay(o, 1, 0), 0ns);
  EXPECT_EQ(backoff_delay(o, 1, 4'000'000), 4ms);  // random_bits % (cap + 1) == cap
  for (std::uint32_t retry = 1; retry <= 6; ++retry) {
    RetryOptions no_jitter = o;
    no_jitter.jitter = false;
    const auto cap = backoff_delay(no_jitter, retry, 0);
    std::set<std::int64_t> distinct;
    for (int i = 0; i < 2000; ++i) {
      const auto d = backoff_delay(o, retry, random_bits());
      ASSERT_GE(d, 0ns);
      ASSERT_LE(d, cap);
      distinct.insert(d.count());
    }
    EXPECT_GT(distinct.size(), 1000u) << "jitter should spread the delays (retry " << retry << ")";
  }
}

TEST(RetryTest, RandomBitsVary) {
  std::set<std::uint64_t> values;
  for (int i = 0; i < 1000; ++i) values.insert(random_bits());
  EXPECT_EQ(values.size(), 1000u);
}

}  // namespace
}  // namespace gpubridge::resilience
