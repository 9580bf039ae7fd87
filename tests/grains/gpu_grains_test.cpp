// GPU grains on a real silo: batch grains batch many callers' requests; stream grains deliver in
// order with backpressure; errors reach callers. Runs on the CPU backend and, when present, on
// OpenCL (PoCL on CI machines) and CUDA.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "gpubridge/grains/batch_grain.hpp"
#include "gpubridge/grains/resident_grain.hpp"
#include "gpubridge/grains/stream_grain.hpp"
#include "gpubridge/server/silo.hpp"
#include "test_support.hpp"

namespace gpubridge::grains {
namespace {

using runtime::Task;

std::unique_ptr<server::Silo> start_silo(const std::string& backend, std::size_t max_batch = 64) {
  server::SiloConfig c;
  c.backend = backend;
  c.allow_fallback = false;
  c.workers = 2;
  c.max_batch = max_batch;
  c.max_delay_us = 500;
  auto silo = server::Silo::start(c);
  EXPECT_TRUE(silo.ok()) << (silo.ok() ? "" : silo.error().to_string());
  return silo.ok() ? std::move(silo).value() : nullptr;
}

bool backend_present(server::Silo& silo, compute::BackendKind kind) {
  for (const auto& b : silo.executor().backends()) {
    if (b.kind == kind) return b.available;
  }
  return false;
}

// vector.add's call: out = a + b.
BatchCall add_call(std::vector<float>& a, std::vector<float>& b, std::vector<float>& out) {
  BatchCall call;
  call.inputs[0] = compute::TensorView(a);
  call.inputs[1] = compute::TensorView(b);
  call.input_count = 2;
  call.output = out.data();
  call.output_capacity = out.size();
  return call;
}

// One caller: adds its own vectors through the batch grain and checks the sum.
Task<int> add_and_check(runtime::Runtime& rt, int caller, std::atomic<std::uint32_t>& max_batch_seen) {
  auto grain = rt.get<BatchGrain>("vector.add/f32");
  std::vector<float> a(256), b(256), out(256);
  for (int i = 0; i < 256; ++i) {
    a[static_cast<std::size_t>(i)] = static_cast<float>(caller);
    b[static_cast<std::size_t>(i)] = static_cast<float>(i);
  }
  BatchCall call = add_call(a, b, out);
  const compute::BatchReport report = co_await grain.call<&BatchGrain::run>(call);
  std::uint32_t seen = max_batch_seen.load();
  while (report.batch_size > seen && !max_batch_seen.compare_exchange_weak(seen, report.batch_size)) {
  }
  int wrong = 0;
  for (int i = 0; i < 256; ++i) wrong += out[static_cast<std::size_t>(i)] != static_cast<float>(caller + i);
  co_return wrong;
}

// A silo on the parameter's backend; skipped without its device (failed where it is required).
class BatchGrainTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    silo = start_silo(GetParam());
    ASSERT_NE(silo, nullptr);
    if (!backend_present(*silo, *compute::parse_backend(GetParam()))) {
      if (testing::backend_required(GetParam())) FAIL() << GetParam() << " required";
      GTEST_SKIP() << "no " << GetParam() << " device";
    }
  }
  std::unique_ptr<server::Silo> silo;
};

TEST_P(BatchGrainTest, ManyConcurrentCallersGetTheirOwnResults) {
  auto kind = compute::parse_backend(GetParam());
  constexpr int kCallers = 200;
  std::atomic<std::uint32_t> max_batch{0};
  std::atomic<int> wrong{0};
  std::atomic<int> done{0};
  for (int c = 0; c < kCallers; ++c) {
    ASSERT_TRUE(silo->runtime().spawn([](runtime::Runtime& rt, int caller, std::atomic<std::uint32_t>& mb,
                                         std::atomic<int>& w, std::atomic<int>& d) -> Task<void> {
      w.fetch_add(co_await add_and_check(rt, caller, mb));
      d.fetch_add(1);
    }(silo->runtime(), c, max_batch, wrong, done)));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (done.load() < kCallers && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_EQ(done.load(), kCallers);
  EXPECT_EQ(wrong.load(), 0);
  std::uint64_t batched = 0, batches = 0, ran_inline = 0;
  for (const auto& [key, st] : silo->gpu().batcher_stats()) {
    batched += st.batched_requests;
    batches += st.batches;
    ran_inline += st.ran_inline;
  }
  if (*kind == compute::BackendKind::cpu) {
    // Small requests on the host run at once on the calling worker (DynamicBatcher::run_inline).
    EXPECT_EQ(max_batch.load(), 1u);
    EXPECT_EQ(ran_inline, static_cast<std::uint64_t>(kCallers));
    EXPECT_EQ(batches, 0u);
    return;
  }
  EXPECT_EQ(ran_inline, 0u);
  EXPECT_GT(max_batch.load(), 1u) << "concurrent requests share launches";
  EXPECT_EQ(batched, static_cast<std::uint64_t>(kCallers));
  EXPECT_LT(batches, static_cast<std::uint64_t>(kCallers));
}

// A request the batcher refuses (here: inputs of different lengths; refused by submit() on a
// device, by the inline run on the host) fails its call with the batcher's reason, and the grain
// serves the next call as usual.
TEST_P(BatchGrainTest, ARefusedRequestFailsItsCallWithTheReason) {
  auto& rt = silo->runtime();
  std::vector<float> a(256, 1.f), b(128, 2.f), out(256, -1.f);
  BatchCall call = add_call(a, b, out);
  try {
    rt.run(rt.get<BatchGrain>("vector.add/f32").call<&BatchGrain::run>(call));
    ADD_FAILURE() << "expected an error";
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().code(), ErrorCode::invalid_argument) << e.error().to_string();
    EXPECT_NE(e.error().message().find("input lengths differ"), std::string::npos) << e.error().to_string();
  }
  EXPECT_EQ(out[0], -1.f) << "a refused request writes nothing";
  std::atomic<std::uint32_t> max_batch{0};
  EXPECT_EQ(rt.run(add_and_check(rt, 7, max_batch)), 0);
}

INSTANTIATE_TEST_SUITE_P(Backends, BatchGrainTest, ::testing::Values("cpu", "opencl", "cuda"));

TEST(BatchGrain, UnknownKernelOrBadKeyFailsTheCall) {
  auto silo = start_silo("cpu");
  std::vector<float> a(4, 1.f);
  auto bad_kernel = silo->runtime().get<BatchGrain>("vector.sub/f32");
  auto bad_key = silo->runtime().get<BatchGrain>("vector.add");
  for (auto* g : {&bad_kernel, &bad_key}) {
    try {
      silo->runtime().run(g->call<&BatchGrain::compute>(std::vector<compute::TensorView>{a, a}, std::vector<double>{}));
      ADD_FAILURE() << "expected an error";
    } catch (const ErrorException& e) {
      EXPECT_TRUE(e.error().code() == ErrorCode::not_found || e.error().code() == ErrorCode::invalid_argument)
          << e.error().to_string();
    }
  }
}

// The batching section of the silo's configuration is the policy of every batcher it makes.
TEST(Silo, BatchingConfigReachesItsBatchers) {
  server::SiloConfig c;
  c.backend = "cpu";
  c.workers = 1;
  c.max_batch = 96;
  c.max_delay_us = 300;
  c.queue_capacity = 5000;
  c.max_inflight_batches = 7;
  auto silo = server::Silo::start(c);
  ASSERT_TRUE(silo.ok()) << silo.error().to_string();
  const compute::BatchPolicy& p = (*silo)->gpu().policy();
  EXPECT_EQ(p.max_batch, 96u);
  EXPECT_EQ(p.max_delay, std::chrono::microseconds(300));
  EXPECT_EQ(p.queue_capacity, 5000u);
  EXPECT_EQ(p.max_inflight_batches, 7u);
}

// Every thread a silo starts carries a gb- name, so that top -H and perf tell them apart: the
// scheduler's workers, the timer thread, the CPU backend's pool and each batcher's dispatcher
// (named after its kernel).
TEST(Silo, ItsThreadsAreNamed) {
#if !defined(__linux__)
  GTEST_SKIP() << "thread names are read from /proc";
#endif
  auto silo = start_silo("cpu");
  ASSERT_NE(silo, nullptr);
  std::vector<double> x{3.0, 4.0};
  auto g = silo->runtime().get<BatchGrain>("vector.normalize/f64");
  silo->runtime().run(g.call<&BatchGrain::compute>(std::vector<compute::TensorView>{x}, std::vector<double>{}));
  std::multiset<std::string> names;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name)) names.insert(name);
  }
  for (const char* want : {"gb-worker-0", "gb-worker-1", "gb-timers", "gb-cpu-0", "gb-b:vector.nor"}) {
    EXPECT_EQ(names.count(want), 1u) << want;
  }
}

TEST(BatchGrain, ComputeReturnsOutputAndReport) {
  auto silo = start_silo("cpu");
  std::vector<double> x{3.0, 4.0};
  auto g = silo->runtime().get<BatchGrain>("vector.normalize/f64");
  auto r = silo->runtime().run(g.call<&BatchGrain::compute>(std::vector<compute::TensorView>{x}, std::vector<double>{}));
  ASSERT_EQ(r.outputs.size(), 1u);
  EXPECT_DOUBLE_EQ(r.outputs[0].at(0), 0.6);
  EXPECT_DOUBLE_EQ(r.outputs[0].at(1), 0.8);
  EXPECT_EQ(r.report.device_id, "cpu:0");
  std::vector<double> zeros(8, 0.0);
  try {
    silo->runtime().run(g.call<&BatchGrain::compute>(std::vector<compute::TensorView>{zeros}, std::vector<double>{}));
    ADD_FAILURE() << "a zero vector has no direction";
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().code(), ErrorCode::invalid_argument);
  }
}

Task<void> push_all(runtime::GrainRef<StreamGrain> s, int items) {
  for (int i = 0; i < items; ++i) {
    std::vector<compute::Tensor> in;
    in.emplace_back(compute::DType::f32, 16);
    auto v = in[0].as<float>();
    for (std::size_t k = 0; k < v.size(); ++k) v[k] = static_cast<float>(i % 7 == 3 ? 0 : i + 1);  // some zero items
    co_await s.call<&StreamGrain::push>(std::move(in));
  }
  co_await s.call<&StreamGrain::flush>();
}

TEST(StreamGrain, DeliversInOrderWithBackpressureAndErrorsInPlace) {
  auto silo = start_silo("cpu", /*max_batch=*/16);
  auto s = silo->runtime().get<StreamGrain>("sensor-stream");
  StreamConfig cfg;
  cfg.kernel = "vector.normalize";
  cfg.window = 8;
  silo->runtime().run(s.call<&StreamGrain::configure>(cfg));
  std::vector<StreamResult> got;
  std::mutex m;
  silo->runtime().run(s.call<&StreamGrain::subscribe>(std::function<void(const StreamResult&)>([&](const StreamResult& r) {
    std::lock_guard lock(m);
    StreamResult copy;
    copy.sequence = r.sequence;
    copy.status = r.status;
    if (r.status.ok()) copy.output = compute::Tensor(r.output.dtype(), r.output.count());
    if (r.status.ok()) std::memcpy(copy.output.data(), r.output.data(), r.output.bytes());
    got.push_back(std::move(copy));
  })));
  constexpr int kItems = 300;
  silo->runtime().run(push_all(s, kItems));
  std::lock_guard lock(m);
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kItems));
  for (int i = 0; i < kItems; ++i) {
    const StreamResult& r = got[static_cast<std::size_t>(i)];
    ASSERT_EQ(r.sequence, static_cast<std::uint64_t>(i));
    if (i % 7 == 3) {
      EXPECT_FALSE(r.status.ok()) << "zero vector item " << i;
    } else {
      ASSERT_TRUE(r.status.ok()) << i << ": " << r.status.error().to_string();
      EXPECT_NEAR(r.output.at(0), 0.25, 1e-6);  // 16 equal values: each 1/4
    }
  }
  EXPECT_THROW(silo->runtime().run(s.call<&StreamGrain::configure>(cfg)), ErrorException);
}

TEST(Silo, CallsAfterStopFailClearly) {
  auto silo = start_silo("cpu");
  std::vector<float> a(4, 1.f);
  auto g = silo->runtime().get<BatchGrain>("vector.add/f32");
  silo->runtime().run(g.call<&BatchGrain::compute>(std::vector<compute::TensorView>{a, a}, std::vector<double>{}));
  silo->stop();
  try {
    silo->runtime().run(g.call<&BatchGrain::compute>(std::vector<compute::TensorView>{a, a}, std::vector<double>{}));
    ADD_FAILURE() << "runtime stopped";
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().code(), ErrorCode::unavailable);
  }
}

}  // namespace
}  // namespace gpubridge::grains

namespace gpubridge::grains {
namespace {

class ResidentGrainTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ResidentGrainTest, StateStaysOnTheDeviceAcrossCallsAndSurvivesEviction) {
  auto silo = start_silo(GetParam());
  ASSERT_NE(silo, nullptr);
  if (!backend_present(*silo, *compute::parse_backend(GetParam()))) {
    if (testing::backend_required(GetParam())) FAIL() << GetParam() << " required";
    GTEST_SKIP() << "no " << GetParam() << " device";
  }
  auto& rt = silo->runtime();
  auto twin = rt.get<ResidentGrain>("turbine-7");
  compute::Tensor initial(compute::DType::f32, 1000);
  for (std::size_t i = 0; i < 1000; ++i) initial.as<float>()[i] = 1.0f;
  rt.run(twin.call<&ResidentGrain::load>(std::move(initial)));
  EXPECT_EQ(rt.run(twin.call<&ResidentGrain::placement>()).rfind(GetParam() + ":", 0), 0u);

  // state = 2 * x + state, with x = 0.5 everywhere: 2.0 everywhere.
  ResidentOp axpy{"vector.axpy", {2.0}, {}, 1};
  axpy.operands.emplace_back(compute::DType::f32, 1000);
  for (auto& v : axpy.operands[0].as<float>()) v = 0.5f;
  rt.run(twin.call<&ResidentGrain::apply>(std::move(axpy)));
  ResidentOp sum{"reduce.sum", {}, {}, 0};
  EXPECT_NEAR(rt.run(twin.call<&ResidentGrain::reduce>(std::move(sum))), 2000.0, 1e-3);

  // A failing kernel (normalize of a vector that is not zero succeeds; of zero it fails) leaves the state.
  ResidentOp wrong{"vector.dot", {}, {}, 0};  // scalar kernel through apply(): rejected
  EXPECT_THROW(rt.run(twin.call<&ResidentGrain::apply>(std::move(wrong))), ErrorException);
  rt.run(twin.call<&ResidentGrain::apply>(ResidentOp{"vector.normalize", {}, {}, 0}));
  ResidentOp dot{"vector.dot", {}, {}, 0};
  dot.operands.emplace_back(rt.run(twin.call<&ResidentGrain::read>()));
  EXPECT_NEAR(rt.run(twin.call<&ResidentGrain::reduce>(std::move(dot))), 1.0, 1e-5);

  // Eviction parks the state in host memory; the next call brings it back.
  rt.run(twin.call<&ResidentGrain::evict>());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (rt.activation_count("ResidentGrain") > 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_EQ(rt.activation_count("ResidentGrain"), 0u);
  compute::Tensor back = rt.run(twin.call<&ResidentGrain::read>());
  ASSERT_EQ(back.count(), 1000u);
  EXPECT_NEAR(back.at(999), 1.0 / std::sqrt(1000.0), 1e-6);
}

TEST(ResidentGrain, OperationsWithoutStateOrWithBadOperandsFail) {
  auto silo = start_silo("cpu");
  auto& rt = silo->runtime();
  auto g = rt.get<ResidentGrain>("empty");
  EXPECT_THROW(rt.run(g.call<&ResidentGrain::read>()), ErrorException);
  compute::Tensor t(compute::DType::f32, 10);
  rt.run(g.call<&ResidentGrain::load>(std::move(t)));
  ResidentOp missing{"vector.axpy", {1.0}, {}, 1};  // needs one operand
  EXPECT_THROW(rt.run(g.call<&ResidentGrain::apply>(std::move(missing))), ErrorException);
  ResidentOp zero{"vector.normalize", {}, {}, 0};   // the state is all zeros: no direction
  EXPECT_THROW(rt.run(g.call<&ResidentGrain::apply>(std::move(zero))), ErrorException);
  EXPECT_EQ(rt.run(g.call<&ResidentGrain::read>()).count(), 10u) << "the state is unchanged";
}

INSTANTIATE_TEST_SUITE_P(Backends, ResidentGrainTest, ::testing::Values("cpu", "opencl", "cuda"));

}  // namespace
}  // namespace gpubridge::grains
