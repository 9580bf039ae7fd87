// Multi-kernel pipelines (Executor::run_pipeline): results equal to the same calls run one by
// one, on the CPU and on OpenCL (PoCL in CI); validation before anything runs; whole-pipeline
// fallback to the CPU with the reason; stage events. Built a second time with
// GB_PIPELINE_TEST_CUDA (label gpu): CUDA graphs captured on the first run, replayed on the
// second, with results equal to plain stream launches.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <utility>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "gpubridge/compute/executor.hpp"
#include "gpubridge/compute/pipeline.hpp"
#include "test_support.hpp"

namespace gpubridge::compute {
namespace {

constexpr std::size_t kN = 4096;

struct StageEvent {
  std::string kernel;
  std::string device;
  std::uint32_t stage = 0;
  std::uint32_t stages = 0;
  std::chrono::nanoseconds duration{0};
};

class StageRecorder final : public ComputeObserver {
 public:
  explicit StageRecorder(bool wants) : wants_(wants) {}
  bool wants_stage_timing() const noexcept override { return wants_; }
  void on_pipeline_stage(const PipelineStageExecution& s) noexcept override {
    std::lock_guard lock(mu_);
    events_.push_back({std::string(s.kernel), std::string(s.device), s.stage, s.stages, s.duration});
  }
  std::vector<StageEvent> take() {
    std::lock_guard lock(mu_);
    return std::exchange(events_, {});
  }

 private:
  const bool wants_;
  std::mutex mu_;
  std::vector<StageEvent> events_;
};

CallOptions on(BackendChoice b) {
  CallOptions o;
  o.backend = b;
  o.allow_fallback = false;
  return o;
}

std::vector<float> as_floats(const Tensor& t) {
  std::vector<float> v(t.count());
  std::memcpy(v.data(), t.data(), t.bytes());
  return v;
}

void expect_near(const std::vector<float>& got, const std::vector<float>& want, float tolerance) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], tolerance) << "element " << i;
  }
}

// Ten element-wise stages over x and y: axpy and add chains that read external inputs and
// earlier stages (not only the previous one). Stage 4 is kept.
Pipeline chain_pipeline(const std::vector<float>& x, const std::vector<float>& y) {
  Pipeline p;
  p.dtype = DType::f32;
  p.inputs = {TensorView(x), TensorView(y)};
  using S = StageInput;
  p.stages = {
      {"vector.axpy", {S::external(0), S::external(1)}, {0.5}},   // 0: 0.5x + y
      {"vector.add", {S::stage(0), S::external(0)}, {}},          // 1
      {"vector.axpy", {S::stage(1), S::stage(0)}, {-0.25}},       // 2
      {"vector.add", {S::stage(2), S::stage(2)}, {}},             // 3
      {"vector.axpy", {S::stage(3), S::external(1)}, {1.5}, true},// 4 (kept)
      {"vector.add", {S::stage(4), S::stage(1)}, {}},             // 5
      {"vector.axpy", {S::stage(5), S::stage(3)}, {0.125}},       // 6
      {"vector.add", {S::stage(6), S::external(1)}, {}},          // 7
      {"vector.axpy", {S::stage(7), S::stage(6)}, {-1.0}},        // 8
      {"vector.add", {S::stage(8), S::stage(4)}, {}},             // 9
  };
  return p;
}

// The same pipeline, one Executor::run per stage on `backend`; returns every stage's output.
std::vector<std::vector<float>> run_one_by_one(Executor& e, const Pipeline& p, BackendChoice backend) {
  std::vector<std::vector<float>> outs;
  for (const PipelineStage& st : p.stages) {
    KernelCall call{st.kernel, p.dtype, {}, st.scalars};
    for (const StageInput& in : st.inputs) {
      call.inputs.push_back(in.source == StageInput::Source::external ? p.inputs[in.index]
                                                                       : TensorView(outs[in.index]));
    }
    auto r = e.run(call, on(backend));
    EXPECT_TRUE(r.ok()) << st.kernel << ": " << (r.ok() ? "" : r.error().to_string());
    if (!r.ok()) return outs;
    outs.push_back(as_floats(r->outputs[0]));
  }
  return outs;
}

// matrix.multiply (a: 24x40, b: 40x32) -> matrix.transpose (32x24) -> vector ops on the
// flattened 768 elements (axpy with an external vector, normalize, add).
struct MixedCase {
  std::vector<float> a = testing::random_f32(24 * 40, 11);
  std::vector<float> b = testing::random_f32(40 * 32, 12);
  std::vector<float> v = testing::random_f32(24 * 32, 13);
  Pipeline pipeline() const {
    Pipeline p;
    p.dtype = DType::f32;
    p.inputs = {TensorView(a), TensorView(b), TensorView(v)};
    using S = StageInput;
    p.stages = {
        {"matrix.multiply", {S::external(0), S::external(1)}, {24, 40, 32}, true},
        {"matrix.transpose", {S::stage(0)}, {24, 32}, true},
        {"vector.axpy", {S::stage(1), S::external(2)}, {2.0}},
        {"vector.normalize", {S::stage(2)}, {}},
        {"vector.add", {S::stage(3), S::stage(1)}, {}},
    };
    return p;
  }
};

[[maybe_unused]] void expect_pipeline_matches(Executor& e, const Pipeline& p, BackendChoice backend, PipelineLaunch launch,
                             float tolerance) {
  const auto want = run_one_by_one(e, p, backend);
  ASSERT_EQ(want.size(), p.stages.size());
  auto got = e.run_pipeline(p, on(backend));
  ASSERT_TRUE(got.ok()) << got.error().to_string();
  EXPECT_EQ(got->launch, launch) << to_string(got->launch) << " " << got->launch_detail;
  EXPECT_EQ(got->report.fallback, FallbackReason::none);
  expect_near(as_floats(got->output), want.back(), tolerance);
  ASSERT_EQ(got->stage_outputs.size(), p.stages.size());
  for (std::size_t i = 0; i + 1 < p.stages.size(); ++i) {
    if (p.stages[i].keep_output) {
      expect_near(as_floats(got->stage_outputs[i]), want[i], tolerance);
    } else {
      EXPECT_EQ(got->stage_outputs[i].count(), 0u) << "stage " << i << " was not asked for";
    }
  }
}

#ifndef GB_PIPELINE_TEST_CUDA

TEST(PipelineTest, TenElementwiseStagesOnCpuMatchCallsOneByOne) {
  auto e = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  ASSERT_NE(e, nullptr);
  const auto x = testing::random_f32(kN, 1), y = testing::random_f32(kN, 2);
  expect_pipeline_matches(*e, chain_pipeline(x, y), BackendChoice::cpu, PipelineLaunch::per_stage, 0.f);
}

TEST(PipelineTest, TenElementwiseStagesOnOpenClMatchCallsOneByOne) {
  auto e = testing::make_executor({.enable_cuda = false, .enable_opencl = true});
  ASSERT_NE(e, nullptr);
  GB_REQUIRE_BACKEND(e, BackendKind::opencl);
  const auto x = testing::random_f32(kN, 1), y = testing::random_f32(kN, 2);
  expect_pipeline_matches(*e, chain_pipeline(x, y), BackendChoice::opencl, PipelineLaunch::stream, 0.f);
}

TEST(PipelineTest, MixedMatrixAndVectorPipelineOnCpuMatchesCallsOneByOne) {
  auto e = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  ASSERT_NE(e, nullptr);
  MixedCase c;
  expect_pipeline_matches(*e, c.pipeline(), BackendChoice::cpu, PipelineLaunch::per_stage, 0.f);
}

TEST(PipelineTest, MixedMatrixAndVectorPipelineOnOpenClMatchesCallsOneByOne) {
  auto e = testing::make_executor({.enable_cuda = false, .enable_opencl = true});
  ASSERT_NE(e, nullptr);
  GB_REQUIRE_BACKEND(e, BackendKind::opencl);
  MixedCase c;
  expect_pipeline_matches(*e, c.pipeline(), BackendChoice::opencl, PipelineLaunch::stream, 1e-5f);
}

TEST(PipelineTest, OpenClPipelineMatchesCpuPipeline) {
  auto e = testing::make_executor({.enable_cuda = false, .enable_opencl = true});
  ASSERT_NE(e, nullptr);
  GB_REQUIRE_BACKEND(e, BackendKind::opencl);
  MixedCase c;
  auto cpu = e->run_pipeline(c.pipeline(), on(BackendChoice::cpu));
  auto cl = e->run_pipeline(c.pipeline(), on(BackendChoice::opencl));
  ASSERT_TRUE(cpu.ok()) << cpu.error().to_string();
  ASSERT_TRUE(cl.ok()) << cl.error().to_string();
  EXPECT_EQ(cl->report.device_id.rfind("opencl:", 0), 0u) << cl->report.device_id;
  expect_near(as_floats(cl->output), as_floats(cpu->output), 1e-5f);
}

// Validation rejects before anything runs: no stage event, no device call counted.
TEST(PipelineTest, InvalidPipelinesAreRejectedBeforeAnythingRuns) {
  auto recorder = std::make_shared<StageRecorder>(true);
  auto e = testing::make_executor({.enable_cuda = false, .enable_opencl = false, .observer = recorder});
  ASSERT_NE(e, nullptr);
  const auto x = testing::random_f32(kN, 1), y = testing::random_f32(kN, 2);
  const auto short_y = testing::random_f32(kN - 1, 3);
  using S = StageInput;

  Pipeline unknown = chain_pipeline(x, y);
  unknown.stages[3].kernel = "vector.frobnicate";
  auto r = e->run_pipeline(unknown);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::not_found);
  EXPECT_NE(r.error().to_string().find("stage 3"), std::string::npos) << r.error().to_string();

  Pipeline later = chain_pipeline(x, y);
  later.stages[2].inputs[1] = S::stage(5);
  r = e->run_pipeline(later);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message().find("reads stage 5"), std::string::npos) << r.error().to_string();

  Pipeline itself = chain_pipeline(x, y);
  itself.stages[2].inputs[0] = S::stage(2);
  r = e->run_pipeline(itself);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);

  Pipeline mismatch = chain_pipeline(x, y);
  mismatch.inputs.push_back(TensorView(short_y));
  mismatch.stages[5].inputs[1] = S::external(2);
  r = e->run_pipeline(mismatch);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(r.error().to_string().find("stage 5"), std::string::npos) << r.error().to_string();
  EXPECT_NE(r.error().message().find("lengths differ"), std::string::npos) << r.error().to_string();

  // A computed shape checked against an earlier stage's output count: 24x32 is not 24x40.
  MixedCase c;
  Pipeline shape = c.pipeline();
  shape.stages[1].scalars = {24, 40};
  r = e->run_pipeline(shape);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(r.error().to_string().find("stage 1 (matrix.transpose)"), std::string::npos) << r.error().to_string();

  Pipeline missing_input = chain_pipeline(x, y);
  missing_input.stages[0].inputs[0] = S::external(7);
  r = e->run_pipeline(missing_input);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);

  r = e->run_pipeline(Pipeline{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);

  EXPECT_TRUE(recorder->take().empty());
  for (const auto& d : e->stats().devices) {
    EXPECT_EQ(d.calls, 0u) << d.device_id;
  }
}

KernelCatalog catalog_with_cpu_only_kernel() {
  KernelCatalog catalog = KernelCatalog::with_builtin_kernels();
  KernelDef negate{"test.negate", "out[i] = -x[i] (CPU only)", {{"x"}, {}, OutputShape::like_inputs, {DType::f32}},
                   [](const CpuKernelArgs& a) -> Status {
                     const auto* in = static_cast<const float*>(a.inputs[0]);
                     auto* out = static_cast<float*>(a.output);
                     for (std::size_t i = 0; i < a.n; ++i) out[i] = -in[i];
                     return {};
                   }};
  EXPECT_TRUE(catalog.add(std::move(negate)).ok());
  return catalog;
}

TEST(PipelineTest, StageNotRunnableOnDeviceSendsWholePipelineToCpuWithReason) {
  auto created = Executor::create({.enable_cuda = false, .enable_opencl = true}, catalog_with_cpu_only_kernel());
  ASSERT_TRUE(created.ok()) << created.error().to_string();
  auto e = std::move(created).value();
  GB_REQUIRE_BACKEND(e, BackendKind::opencl);
  const auto x = testing::random_f32(kN, 1), y = testing::random_f32(kN, 2);
  Pipeline p = chain_pipeline(x, y);
  p.stages.push_back({"test.negate", {StageInput::stage(9)}, {}});

  CallOptions opencl;
  opencl.backend = BackendChoice::opencl;
  auto r = e->run_pipeline(p, opencl);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->report.backend, BackendKind::cpu);
  EXPECT_EQ(r->report.fallback, FallbackReason::kernel_missing);
  EXPECT_NE(r->report.fallback_detail.find("stage 10 (test.negate)"), std::string::npos) << r->report.fallback_detail;
  EXPECT_EQ(r->launch, PipelineLaunch::per_stage);
  EXPECT_EQ(e->stats().fallback_count(FallbackReason::kernel_missing), 1u);
  const auto want = run_one_by_one(*e, p, BackendChoice::cpu);
  ASSERT_EQ(want.size(), p.stages.size());
  expect_near(as_floats(r->output), want.back(), 0.f);
  // No device ran any part of it.
  for (const auto& d : e->stats().devices) {
    if (d.device_id.rfind("opencl:", 0) == 0) {
      EXPECT_EQ(d.calls, 0u) << d.device_id;
    }
  }

  opencl.allow_fallback = false;
  r = e->run_pipeline(p, opencl);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::failed_precondition);
}

TEST(PipelineTest, StageErrorFailsThePipelineNamingTheStage) {
  auto e = testing::make_executor({.enable_cuda = false, .enable_opencl = true});
  ASSERT_NE(e, nullptr);
  std::vector<float> zeros(kN, 0.f);
  Pipeline p;
  p.inputs = {TensorView(zeros)};
  p.stages = {{"vector.add", {StageInput::external(0), StageInput::external(0)}, {}},
              {"vector.normalize", {StageInput::stage(0)}, {}}};
  for (BackendChoice b : {BackendChoice::cpu, BackendChoice::opencl}) {
    if (b == BackendChoice::opencl && !testing::absent_reason(*e, BackendKind::opencl).empty()) continue;
    auto r = e->run_pipeline(p, on(b));
    ASSERT_FALSE(r.ok()) << to_string(b);
    EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument) << r.error().to_string();
    EXPECT_NE(r.error().to_string().find("stage 1 (vector.normalize)"), std::string::npos) << r.error().to_string();
  }
}

TEST(PipelineTest, CpuReportsOneStageEventPerStageInOrder) {
  auto recorder = std::make_shared<StageRecorder>(false);
  auto e = testing::make_executor({.enable_cuda = false, .enable_opencl = false, .observer = recorder});
  ASSERT_NE(e, nullptr);
  const auto x = testing::random_f32(kN, 1), y = testing::random_f32(kN, 2);
  const Pipeline p = chain_pipeline(x, y);
  auto r = e->run_pipeline(p);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  const auto events = recorder->take();
  ASSERT_EQ(events.size(), p.stages.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].stage, i);
    EXPECT_EQ(events[i].stages, p.stages.size());
    EXPECT_EQ(events[i].kernel, p.stages[i].kernel);
    EXPECT_EQ(events[i].device, "cpu:0");
    EXPECT_GE(events[i].duration.count(), 0);
  }
}

TEST(PipelineTest, OpenClReportsStageEventsOnlyWhenTimingIsWanted) {
  for (bool wants : {true, false}) {
    auto recorder = std::make_shared<StageRecorder>(wants);
    auto e = testing::make_executor({.enable_cuda = false, .enable_opencl = true, .observer = recorder});
    ASSERT_NE(e, nullptr);
    GB_REQUIRE_BACKEND(e, BackendKind::opencl);
    MixedCase c;
    const Pipeline p = c.pipeline();
    auto r = e->run_pipeline(p, on(BackendChoice::opencl));
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    const auto events = recorder->take();
    if (!wants) {
      EXPECT_TRUE(events.empty());
      continue;
    }
    ASSERT_EQ(events.size(), p.stages.size());
    for (std::size_t i = 0; i < events.size(); ++i) {
      EXPECT_EQ(events[i].stage, i);
      EXPECT_EQ(events[i].kernel, p.stages[i].kernel);
      EXPECT_EQ(events[i].device, r->report.device_id);
      EXPECT_GE(events[i].duration.count(), 0);
    }
  }
}

TEST(PipelineTest, CallbackFormCompletesOnce) {
  auto e = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  ASSERT_NE(e, nullptr);
  const auto x = testing::random_f32(kN, 1), y = testing::random_f32(kN, 2);
  std::promise<Result<PipelineResult>> done;
  e->submit_pipeline(chain_pipeline(x, y), {}, [&done](Result<PipelineResult> r) { done.set_value(std::move(r)); });
  auto r = done.get_future().get();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->output.count(), kN);
}

TEST(PipelineTest, TimeoutsAreRejected) {
  auto e = testing::make_executor({.enable_cuda = false, .enable_opencl = false});
  ASSERT_NE(e, nullptr);
  const auto x = testing::random_f32(kN, 1), y = testing::random_f32(kN, 2);
  CallOptions o;
  o.timeout = std::chrono::milliseconds(100);
  auto r = e->run_pipeline(chain_pipeline(x, y), o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
}

#else  // GB_PIPELINE_TEST_CUDA

TEST(PipelineCudaTest, GraphCapturedThenReplayedWithResultsOfStreamLaunches) {
  auto e = testing::make_executor({.enable_cuda = true, .enable_opencl = false});
  ASSERT_NE(e, nullptr);
  GB_REQUIRE_BACKEND(e, BackendKind::cuda);
  const auto x = testing::random_f32(kN, 1), y = testing::random_f32(kN, 2);
  const Pipeline p = chain_pipeline(x, y);
  auto first = e->run_pipeline(p, on(BackendChoice::cuda));
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  EXPECT_EQ(first->launch, PipelineLaunch::graph_captured) << first->launch_detail;
  auto second = e->run_pipeline(p, on(BackendChoice::cuda));
  ASSERT_TRUE(second.ok()) << second.error().to_string();
  EXPECT_EQ(second->launch, PipelineLaunch::graph_replayed) << second->launch_detail;
  // Another scalar is another shape key: captured anew.
  Pipeline other = p;
  other.stages[0].scalars = {0.75};
  auto third = e->run_pipeline(other, on(BackendChoice::cuda));
  ASSERT_TRUE(third.ok()) << third.error().to_string();
  EXPECT_EQ(third->launch, PipelineLaunch::graph_captured) << third->launch_detail;

  const auto want = run_one_by_one(*e, p, BackendChoice::cuda);
  ASSERT_EQ(want.size(), p.stages.size());
  expect_near(as_floats(first->output), want.back(), 0.f);
  expect_near(as_floats(second->output), want.back(), 0.f);
  expect_near(as_floats(second->stage_outputs[4]), want[4], 0.f);
}

TEST(PipelineCudaTest, MixedPipelineOnCudaMatchesCpu) {
  auto e = testing::make_executor({.enable_cuda = true, .enable_opencl = false});
  ASSERT_NE(e, nullptr);
  GB_REQUIRE_BACKEND(e, BackendKind::cuda);
  MixedCase c;
  auto cpu = e->run_pipeline(c.pipeline(), on(BackendChoice::cpu));
  ASSERT_TRUE(cpu.ok()) << cpu.error().to_string();
  for (int run = 0; run < 2; ++run) {
    auto gpu = e->run_pipeline(c.pipeline(), on(BackendChoice::cuda));
    ASSERT_TRUE(gpu.ok()) << gpu.error().to_string();
    EXPECT_NE(gpu->launch, PipelineLaunch::per_stage);
    expect_near(as_floats(gpu->output), as_floats(cpu->output), 1e-4f);
  }
}

// matrix.inverse reads pivots back to the host mid-way: never captured, stream launches with why.
TEST(PipelineCudaTest, RecipesThatReadBackRunAsStreamLaunchesWithReason) {
  auto e = testing::make_executor({.enable_cuda = true, .enable_opencl = false});
  ASSERT_NE(e, nullptr);
  GB_REQUIRE_BACKEND(e, BackendKind::cuda);
  std::vector<double> a = {4, 1, 0, 1, 3, 1, 0, 1, 2};
  Pipeline p;
  p.dtype = DType::f64;
  p.inputs = {TensorView(a)};
  p.stages = {{"matrix.inverse", {StageInput::external(0)}, {3}},
              {"matrix.transpose", {StageInput::stage(0)}, {3, 3}}};
  for (int run = 0; run < 2; ++run) {
    auto r = e->run_pipeline(p, on(BackendChoice::cuda));
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(r->launch, PipelineLaunch::stream);
    EXPECT_FALSE(r->launch_detail.empty());
    auto cpu = e->run_pipeline(p, on(BackendChoice::cpu));
    ASSERT_TRUE(cpu.ok());
    std::vector<double> got(9), want(9);
    std::memcpy(got.data(), r->output.data(), r->output.bytes());
    std::memcpy(want.data(), cpu->output.data(), cpu->output.bytes());
    for (std::size_t i = 0; i < 9; ++i) {
      EXPECT_NEAR(got[i], want[i], 1e-12);
    }
  }
}

// With ExecutorOptions::cuda_graphs = false every run is stream launches, saying why, with the
// same results as the captured graph's.
TEST(PipelineCudaTest, GraphsOffRunsStreamLaunchesWithReason) {
  auto graphs = testing::make_executor({.enable_cuda = true, .enable_opencl = false});
  ASSERT_NE(graphs, nullptr);
  GB_REQUIRE_BACKEND(graphs, BackendKind::cuda);
  auto streams = testing::make_executor({.enable_cuda = true, .enable_opencl = false, .cuda_graphs = false});
  ASSERT_NE(streams, nullptr);
  const auto x = testing::random_f32(kN, 1), y = testing::random_f32(kN, 2);
  const Pipeline p = chain_pipeline(x, y);
  auto captured = graphs->run_pipeline(p, on(BackendChoice::cuda));
  ASSERT_TRUE(captured.ok()) << captured.error().to_string();
  for (int run = 0; run < 2; ++run) {
    auto r = streams->run_pipeline(p, on(BackendChoice::cuda));
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(r->launch, PipelineLaunch::stream);
    EXPECT_NE(r->launch_detail.find("cuda_graphs"), std::string::npos) << r->launch_detail;
    expect_near(as_floats(r->output), as_floats(captured->output), 0.f);
  }
}

// A cached graph keeps its device memory; under a pool limit, a call that needs that memory frees
// the idle graph (the next run of its pipeline is captured again) instead of failing.
TEST(PipelineCudaTest, IdleCachedGraphsGiveWayToCallsUnderAPoolLimit) {
  auto probe = testing::make_executor({.enable_cuda = true, .enable_opencl = false});
  ASSERT_NE(probe, nullptr);
  GB_REQUIRE_BACKEND(probe, BackendKind::cuda);
  probe.reset();
  const auto x = testing::random_f32(kN, 1), y = testing::random_f32(kN, 2);
  const Pipeline p = chain_pipeline(x, y);
  constexpr std::uint64_t kLimit = std::uint64_t{4} << 20;
  auto e = testing::make_executor({.enable_cuda = true, .enable_opencl = false, .device_pool_limit_bytes = kLimit});
  ASSERT_NE(e, nullptr);
  const auto cuda_pool = [&] {
    for (const DeviceStats& d : e->stats().devices) {
      if (d.device_id == "cuda:0") return d.device_pool;
    }
    return PoolStats{};
  };
  auto first = e->run_pipeline(p, on(BackendChoice::cuda));
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  ASSERT_EQ(first->launch, PipelineLaunch::graph_captured) << first->launch_detail;
  const std::uint64_t cached = cuda_pool().bytes_in_use;
  ASSERT_GT(cached, 0u) << "the cached graph holds its memory";
  ASSERT_LT(cached, kLimit);
  // Inputs and output of this call need more than the limit leaves beside the cached graph.
  const std::size_t n = (kLimit - cached) / (3 * sizeof(float)) + 1024;
  ASSERT_LT(3 * n * sizeof(float), kLimit);
  const auto a = testing::random_f32(n, 3), b = testing::random_f32(n, 4);
  auto big = e->run(KernelCall{"vector.add", DType::f32, {TensorView(a), TensorView(b)}, {}}, on(BackendChoice::cuda));
  ASSERT_TRUE(big.ok()) << big.error().to_string();
  EXPECT_EQ(big->report.backend, BackendKind::cuda);
  const float* out = static_cast<const float*>(big->outputs.at(0).data());
  EXPECT_EQ(out[n - 1], a[n - 1] + b[n - 1]);
  EXPECT_EQ(cuda_pool().bytes_in_use, 0u) << "the idle graph was freed";
  auto again = e->run_pipeline(p, on(BackendChoice::cuda));
  ASSERT_TRUE(again.ok()) << again.error().to_string();
  EXPECT_EQ(again->launch, PipelineLaunch::graph_captured) << again->launch_detail;
  expect_near(as_floats(again->output), as_floats(first->output), 0.f);
}

#endif  // GB_PIPELINE_TEST_CUDA

}  // namespace
}  // namespace gpubridge::compute
