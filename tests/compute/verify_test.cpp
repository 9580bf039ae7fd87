// gpubridge verify's engine: every kernel passes on every available backend; filters work.
#include <gtest/gtest.h>

#include "gpubridge/compute/verify.hpp"
#include "test_support.hpp"

namespace gpubridge::compute {
namespace {

TEST(Verify, EveryKernelPassesOnCpuAgainstTheOracle) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  auto report = verify_catalog(*ex, {.backend = BackendKind::cpu, .kernel = {}, .sizes = {1, 257, 100003}});
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->failed(), 0u);
  // Element-wise kernels x dtypes x sizes, plus the computed kernels' own example sizes: matrix
  // (5 each: multiply and transpose in f32 and f64, inverse in f64), image (4 kernels, f32, 5
  // sizes), graph (3 kernels, f64, 4 sizes). Nothing is skipped: every kernel has examples.
  EXPECT_EQ(report->passed(), 5u * 2u * 3u + (2u + 2u + 1u) * 5u + 4u * 5u + 3u * 4u);
  EXPECT_EQ(report->skipped(), 0u);
  for (const auto& r : report->rows) EXPECT_LE(r.max_abs_error, r.tolerance) << r.kernel;
}

TEST(Verify, OpenClPassesAgainstCpu) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = true});
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  auto report = verify_catalog(*ex, {.backend = BackendKind::opencl, .kernel = {}, .sizes = {1, 3, 255, 256, 257, 4099}});
  ASSERT_TRUE(report.ok());
  for (const auto& r : report->rows) {
    EXPECT_NE(r.status, VerifyStatus::fail) << r.kernel << " " << to_string(r.dtype) << " n=" << r.n << ": " << r.reason;
    EXPECT_EQ(r.backend, "opencl");
  }
  EXPECT_GT(report->passed(), 0u);
}

TEST(Verify, KernelFilterAndUnknownKernel) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  auto one = verify_catalog(*ex, {.backend = BackendKind::cpu, .kernel = "vector.dot", .sizes = {10}});
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->rows.size(), 2u);  // f32, f64
  for (const auto& r : one->rows) EXPECT_EQ(r.kernel, "vector.dot");

  auto unknown = verify_catalog(*ex, {.backend = {}, .kernel = "vector.nope", .sizes = {10}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code(), ErrorCode::not_found);
}

TEST(Verify, AbsentBackendRowsAreSkippedWithReason) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  auto report = verify_catalog(*ex, {.backend = BackendKind::cuda, .kernel = "vector.add", .sizes = {10, 20}});
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->rows.size(), 2u);  // one per dtype, not per size
  for (const auto& r : report->rows) {
    EXPECT_EQ(r.status, VerifyStatus::skipped);
    EXPECT_EQ(r.reason, "disabled by configuration");
  }
}

}  // namespace
}  // namespace gpubridge::compute
