#include <gtest/gtest.h>

#include "gpubridge/core/result.hpp"

namespace gpubridge {
namespace {

TEST(Error, CodesFollowGrpcCanonicalNumbers) {
  EXPECT_EQ(static_cast<int>(ErrorCode::invalid_argument), 3);
  EXPECT_EQ(static_cast<int>(ErrorCode::not_found), 5);
  EXPECT_EQ(static_cast<int>(ErrorCode::resource_exhausted), 8);
  EXPECT_EQ(static_cast<int>(ErrorCode::unavailable), 14);
  EXPECT_EQ(to_string(ErrorCode::failed_precondition), "failed_precondition");
}

TEST(Error, ContextIsPrependedAndPrinted) {
  Error e(ErrorCode::not_found, "no such kernel", "lookup");
  Error outer = e.with_context("executor");
  EXPECT_EQ(outer.context(), "executor: lookup");
  EXPECT_EQ(outer.to_string(), "not_found: no such kernel [executor: lookup]");
}

TEST(Result, HoldsValueOrError) {
  Result<int> good = 7;
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 7);
  Result<int> bad = Error(ErrorCode::internal, "boom");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), ErrorCode::internal);
  EXPECT_THROW(bad.value(), ErrorException);
}

TEST(Status, DefaultIsOkAndErrorThrowsOnValue) {
  Status s;
  EXPECT_TRUE(s.ok());
  Status f = Error(ErrorCode::aborted, "stop");
  EXPECT_FALSE(f.ok());
  EXPECT_THROW(f.value(), ErrorException);
}

}  // namespace
}  // namespace gpubridge
