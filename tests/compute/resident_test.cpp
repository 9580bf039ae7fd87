// Resident data: upload once, run many kernels on the device, download; errors leave buffers
// intact; placement fallbacks are recorded. Every backend present (CUDA tests skip without one).
#include <gtest/gtest.h>

#include <cmath>

#include "gpubridge/compute/device_buffer.hpp"
#include "test_support.hpp"

namespace gpubridge::compute {
namespace {

class ResidentTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    kind_ = *parse_backend(GetParam());
    executor_ = testing::make_executor({.enable_cuda = kind_ == BackendKind::cuda, .enable_opencl = kind_ == BackendKind::opencl});
  }
  CallOptions where() const { return {.backend = *parse_backend_choice(GetParam()), .device_id = {}, .allow_fallback = false}; }
  BackendKind kind_ = BackendKind::cpu;
  std::unique_ptr<Executor> executor_;
};

TEST_P(ResidentTest, ManyKernelsOnResidentDataThenDownload) {
  GB_REQUIRE_BACKEND(executor_, kind_);
  constexpr std::size_t n = 100003;
  auto x = testing::random_f32(n, 1);
  auto y = testing::random_f32(n, 2);
  auto bx = upload_now(*executor_, x, where());
  auto by = upload_now(*executor_, y, where());
  ASSERT_TRUE(bx.ok()) << bx.error().to_string();
  ASSERT_TRUE(by.ok()) << by.error().to_string();
  EXPECT_EQ(bx->device_id().rfind(GetParam() + ":", 0), 0u) << bx->device_id();
  EXPECT_EQ(bx->placement(), FallbackReason::none);

  // state = 0.5 * x + y, three times over; then normalize; then its dot with itself.
  DeviceBuffer state = *by;
  std::vector<double> host(y.begin(), y.end());
  for (int round = 0; round < 3; ++round) {
    const DeviceBuffer in[] = {*bx, state};
    const double alpha[] = {0.5};
    auto next = run_resident_now(*executor_, "vector.axpy", in, alpha);
    ASSERT_TRUE(next.ok()) << next.error().to_string();
    state = *next;
    for (std::size_t i = 0; i < n; ++i) host[i] = static_cast<float>(0.5f * x[i] + static_cast<float>(host[i]));
  }
  const DeviceBuffer one[] = {state};
  auto unit = run_resident_now(*executor_, "vector.normalize", one);
  ASSERT_TRUE(unit.ok()) << unit.error().to_string();
  const DeviceBuffer twice[] = {*unit, *unit};
  auto dot = run_resident_now(*executor_, "vector.dot", twice);
  ASSERT_TRUE(dot.ok());
  EXPECT_EQ(dot->count(), 1u);

  auto state_host = download_now(*executor_, state);
  auto dot_host = download_now(*executor_, *dot);
  ASSERT_TRUE(state_host.ok());
  ASSERT_TRUE(dot_host.ok());
  for (std::size_t i = 0; i < n; i += 101) ASSERT_NEAR(state_host->at(i), host[i], 1e-5) << i;
  EXPECT_NEAR(dot_host->at(0), 1.0, 1e-4);
}

TEST_P(ResidentTest, FailedKernelLeavesBuffersIntact) {
  GB_REQUIRE_BACKEND(executor_, kind_);
  std::vector<double> zeros(1000, 0.0);
  auto b = upload_now(*executor_, zeros, where());
  ASSERT_TRUE(b.ok());
  const DeviceBuffer in[] = {*b};
  auto r = run_resident_now(*executor_, "vector.normalize", in);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  auto back = download_now(*executor_, *b);
  ASSERT_TRUE(back.ok());
  for (std::size_t i = 0; i < back->count(); ++i) ASSERT_EQ(back->at(i), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Backends, ResidentTest, ::testing::Values("cpu", "opencl", "cuda"));

TEST(Resident, BadCallsAreClearErrors) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  std::vector<float> a(10, 1.f), b(11, 1.f);
  std::vector<double> d(10, 1.0);
  auto ba = upload_now(*ex, a);
  auto bb = upload_now(*ex, b);
  auto bd = upload_now(*ex, d);
  ASSERT_TRUE(ba.ok() && bb.ok() && bd.ok());
  const DeviceBuffer lengths[] = {*ba, *bb};
  EXPECT_EQ(run_resident_now(*ex, "vector.add", lengths).error().code(), ErrorCode::invalid_argument);
  const DeviceBuffer types[] = {*ba, *bd};
  EXPECT_EQ(run_resident_now(*ex, "vector.add", types).error().code(), ErrorCode::invalid_argument);
  const DeviceBuffer one[] = {*ba};
  EXPECT_EQ(run_resident_now(*ex, "vector.add", one).error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(run_resident_now(*ex, "vector.nope", one).error().code(), ErrorCode::not_found);
  const DeviceBuffer invalid[] = {DeviceBuffer{}};
  EXPECT_EQ(run_resident_now(*ex, "reduce.sum", invalid).error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(download_now(*ex, DeviceBuffer{}).error().code(), ErrorCode::invalid_argument);
  std::vector<float> empty;
  EXPECT_EQ(upload_now(*ex, empty).error().code(), ErrorCode::invalid_argument);
}

TEST(Resident, AbsentDeviceFallsBackToHostMemoryWithReason) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  std::vector<float> a(10, 2.f);
  auto b = upload_now(*ex, a, {.backend = BackendChoice::cuda});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->device_id(), "cpu:0");
  EXPECT_EQ(b->placement(), FallbackReason::no_device);
  EXPECT_NE(b->placement_detail().find("disabled by configuration"), std::string::npos);
  EXPECT_EQ(ex->stats().fallback_count(FallbackReason::no_device), 1u);
  auto strict = upload_now(*ex, a, {.backend = BackendChoice::cuda, .device_id = {}, .allow_fallback = false});
  ASSERT_FALSE(strict.ok());
  EXPECT_EQ(strict.error().code(), ErrorCode::unavailable);
}

}  // namespace
}  // namespace gpubridge::compute
