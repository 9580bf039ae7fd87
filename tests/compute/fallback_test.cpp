// The fallback policy: every run somewhere other than asked carries a reason, is counted, and
// is refused when fallback is disabled. Device failures are produced by a test backend that
// fails on purpose; absence and missing kernels use the real backends of this machine.
#include <gtest/gtest.h>

#include "compute/backend.hpp"
#include "test_support.hpp"

namespace gpubridge::compute {
namespace {

// A GPU-like device that fails every call with a chosen error, for driving the policy.
class FailingBackend final : public Backend {
 public:
  explicit FailingBackend(Error error) : error_(std::move(error)) {}
  BackendKind kind() const override { return BackendKind::cuda; }
  BackendStatus status() const override {
    Device d;
    d.id = "cuda:0";
    d.backend = BackendKind::cuda;
    d.name = "failing test device";
    d.is_gpu = true;
    d.caps.fp64 = true;
    return {BackendKind::cuda, true, {}, {d}};
  }
  Status can_run(int, const KernelDef& def, DType) const override {
    if (def.gpu == nullptr) return Error(ErrorCode::failed_precondition, "kernel '" + def.id + "' has no GPU implementation");
    return {};
  }
  void execute(int, std::shared_ptr<const PreparedCall>, BackendCompletion done) override {
    ++calls;
    done(error_);
  }
  int calls = 0;

 private:
  Error error_;
};

struct Fixture {
  FailingBackend* failing = nullptr;
  std::unique_ptr<Executor> executor;
};

Fixture with_failing_gpu(Error error, KernelCatalog catalog = KernelCatalog::with_builtin_kernels()) {
  Fixture f;
  auto backend = std::make_unique<FailingBackend>(std::move(error));
  f.failing = backend.get();
  std::vector<std::unique_ptr<Backend>> backends;
  backends.push_back(std::move(backend));
  auto e = Executor::create_with_backends(std::move(backends), std::move(catalog));
  EXPECT_TRUE(e.ok());
  f.executor = std::move(e).value();
  return f;
}

const std::vector<float> kA{1, 2, 3, 4};
const std::vector<float> kB{10, 20, 30, 40};

void expect_correct_sum(const KernelResult& r) {
  auto out = r.outputs.at(0).as<float>();
  ASSERT_EQ(out.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(out[i], kA[i] + kB[i]);
}

TEST(Fallback, DeviceErrorRunsOnCpuWithReasonAndCount) {
  auto f = with_failing_gpu(Error(ErrorCode::internal, "cudaErrorIllegalAddress (700): an illegal memory access"));
  auto r = f.executor->run({"vector.add", DType::f32, {kA, kB}, {}}, {.backend = BackendChoice::cuda});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(f.failing->calls, 1);
  EXPECT_EQ(r->report.device_id, "cpu:0");
  EXPECT_EQ(r->report.backend, BackendKind::cpu);
  EXPECT_EQ(r->report.requested, "cuda");
  EXPECT_EQ(r->report.fallback, FallbackReason::device_error);
  EXPECT_NE(r->report.fallback_detail.find("illegal memory access"), std::string::npos);
  expect_correct_sum(*r);
  auto st = f.executor->stats();
  EXPECT_EQ(st.fallback_count(FallbackReason::device_error), 1u);
  for (const auto& d : st.devices) {
    if (d.device_id == "cuda:0") {
      EXPECT_EQ(d.errors, 1u);
    }
    if (d.device_id == "cpu:0") {
      EXPECT_EQ(d.calls, 1u);
    }
  }
}

TEST(Fallback, OutOfMemoryRunsOnCpuWithReason) {
  auto f = with_failing_gpu(Error(ErrorCode::resource_exhausted, "cudaErrorMemoryAllocation (2): out of memory"));
  auto r = f.executor->run({"vector.add", DType::f32, {kA, kB}, {}});  // auto picks the GPU first
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->report.fallback, FallbackReason::out_of_memory);
  EXPECT_EQ(r->report.device_id, "cpu:0");
  expect_correct_sum(*r);
  EXPECT_EQ(f.executor->stats().fallback_count(FallbackReason::out_of_memory), 1u);
}

TEST(Fallback, DisabledFallbackReturnsTheDeviceError) {
  auto f = with_failing_gpu(Error(ErrorCode::internal, "device lost"));
  auto r = f.executor->run({"vector.add", DType::f32, {kA, kB}, {}},
                           {.backend = BackendChoice::cuda, .device_id = {}, .allow_fallback = false});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::internal);
  EXPECT_NE(r.error().to_string().find("cuda:0"), std::string::npos);
  EXPECT_EQ(f.executor->stats().fallback_count(FallbackReason::device_error), 0u);
}

TEST(Fallback, InvalidDataIsNotRetriedOnCpu) {
  auto f = with_failing_gpu(Error(ErrorCode::invalid_argument, "vector.normalize: the input has zero L2 norm"));
  std::vector<float> zeros(4, 0.f);
  auto r = f.executor->run({"vector.normalize", DType::f32, {zeros}, {}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  auto st = f.executor->stats();
  for (std::size_t i = 0; i < kFallbackReasonCount; ++i) EXPECT_EQ(st.fallbacks[i], 0u);
}

TEST(Fallback, KernelMissingOnGpuRunsOnCpuWithReason) {
  // A user kernel with only a CPU implementation.
  KernelCatalog catalog = KernelCatalog::with_builtin_kernels();
  ASSERT_TRUE(catalog
                  .add({"test.negate", "out = -x", {{"x"}, {}, OutputShape::like_inputs, {DType::f32}},
                        [](const CpuKernelArgs& a) {
                          auto* out = static_cast<float*>(a.output);
                          auto* x = static_cast<const float*>(a.inputs[0]);
                          for (std::size_t i = 0; i < a.n; ++i) out[i] = -x[i];
                          return Status{};
                        }})
                  .ok());
  auto f = with_failing_gpu(Error(ErrorCode::internal, "never reached"), std::move(catalog));
  auto r = f.executor->run({"test.negate", DType::f32, {kA}, {}}, {.backend = BackendChoice::cuda});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(f.failing->calls, 0);
  EXPECT_EQ(r->report.fallback, FallbackReason::kernel_missing);
  EXPECT_NE(r->report.fallback_detail.find("no GPU implementation"), std::string::npos);
  EXPECT_EQ(r->outputs[0].as<float>()[2], -3.f);
  EXPECT_EQ(f.executor->stats().fallback_count(FallbackReason::kernel_missing), 1u);

  auto strict = f.executor->run({"test.negate", DType::f32, {kA}, {}},
                                {.backend = BackendChoice::cuda, .device_id = {}, .allow_fallback = false});
  ASSERT_FALSE(strict.ok());
  EXPECT_EQ(strict.error().code(), ErrorCode::failed_precondition);
}

TEST(Fallback, AbsentBackendRunsOnCpuWithItsReason) {
  // The real backends: CUDA is disabled here, so its absence is certain on every machine.
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = true});
  auto r = ex->run({"vector.add", DType::f32, {kA, kB}, {}}, {.backend = BackendChoice::cuda});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->report.fallback, FallbackReason::no_device);
  EXPECT_NE(r->report.fallback_detail.find("disabled by configuration"), std::string::npos);
  EXPECT_EQ(r->report.device_id, "cpu:0");
  expect_correct_sum(*r);
  EXPECT_EQ(ex->stats().fallback_count(FallbackReason::no_device), 1u);

  auto strict = ex->run({"vector.add", DType::f32, {kA, kB}, {}},
                        {.backend = BackendChoice::cuda, .device_id = {}, .allow_fallback = false});
  ASSERT_FALSE(strict.ok());
  EXPECT_EQ(strict.error().code(), ErrorCode::unavailable);
}

TEST(Fallback, UnknownDeviceIdIsNoDevice) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  auto r = ex->run({"vector.add", DType::f32, {kA, kB}, {}}, {.device_id = "opencl:7"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->report.fallback, FallbackReason::no_device);
  EXPECT_NE(r->report.fallback_detail.find("opencl:7"), std::string::npos);
}

TEST(Fallback, AutoWithoutGpuRunsOnCpuWithoutFallback) {
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  auto r = ex->run({"vector.add", DType::f32, {kA, kB}, {}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->report.fallback, FallbackReason::none);
  EXPECT_EQ(r->report.requested, "auto");
  EXPECT_EQ(r->report.device_id, "cpu:0");
}

TEST(Fallback, OpenClPoolLimitFallsBackAsOutOfMemory) {
  // A real OpenCL device whose pool is capped below what the call needs.
  auto ex = testing::make_executor({.enable_cuda = false, .enable_opencl = true, .device_pool_limit_bytes = 1 << 20});
  GB_REQUIRE_BACKEND(ex, BackendKind::opencl);
  auto x = testing::random_f32(1 << 20, 11);  // 4 MiB per input
  auto y = testing::random_f32(1 << 20, 12);
  auto r = ex->run({"vector.add", DType::f32, {x, y}, {}}, {.backend = BackendChoice::opencl});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->report.fallback, FallbackReason::out_of_memory);
  EXPECT_EQ(r->report.device_id, "cpu:0");
  EXPECT_EQ(r->outputs[0].as<float>()[12345], x[12345] + y[12345]);
  EXPECT_EQ(ex->stats().fallback_count(FallbackReason::out_of_memory), 1u);

  // A small call fits under the cap and runs on OpenCL.
  std::vector<float> a(1000, 1.f), b(1000, 2.f);
  auto small = ex->run({"vector.add", DType::f32, {a, b}, {}}, {.backend = BackendChoice::opencl});
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->report.backend, BackendKind::opencl);
  EXPECT_EQ(small->report.fallback, FallbackReason::none);
}

}  // namespace
}  // namespace gpubridge::compute
