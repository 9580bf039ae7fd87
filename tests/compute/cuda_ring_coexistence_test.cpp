// A persistent CUDA ring kernel beside the rest of the process's GPU work (label gpu). A ring
// kernel never returns while it serves, so any CUDA operation that waits for the device to go
// idle - loading a module (with lazy loading, the default, on a kernel's first launch), some
// allocations and frees, cuBLAS setting itself up - would block until the ring stops, unless it
// runs through DeviceIdle (src/compute/cuda/device_idle.hpp), which steps ring kernels aside.
// Each step below runs on its own thread while a ring serves; a step still running after
// kStepLimit is reported as blocked by the ring kernel, and the ring is then stopped so that the
// step (and the test) can finish and say which operation it was. In its own binary: a step that
// never returns ends this process only.
// Skips without a CUDA device (fails when GPUBRIDGE_REQUIRE_BACKENDS names cuda).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_ring_handlers.hpp"
#include "gpubridge/compute/cuda_ring.hpp"
#include "gpubridge/compute/executor.hpp"
#include "gpubridge/compute/pipeline.hpp"
#include "ring_test_support.hpp"
#include "test_support.hpp"

namespace gpubridge::testing::cuda_ring {
namespace {

using compute::BackendChoice;
using compute::BackendKind;
using compute::DType;
using compute::Executor;
using compute::KernelCall;
using compute::TensorView;
using ring_support::bytes_of;
using ring_support::far_deadline;
using ring_support::u64_of;
using Clock = std::chrono::steady_clock;

constexpr auto kStepLimit = std::chrono::seconds(20);
constexpr auto kAfterStopLimit = std::chrono::seconds(60);

ring::RingConfig small_ring() {
  ring::RingConfig config;
  config.request_slots = 16;
  config.completion_slots = 16;
  config.pool_chunk_bytes = 4096;
  config.pool_chunks = 16;
  config.actor_types = {{kCounterType, 64, 4}, {kOtherType, 16, 1}};
  return config;
}

// One ring block served by a CudaRingServer on device 0, and its client.
struct DeviceRing {
  std::unique_ptr<ring::RingMemory> memory;
  std::unique_ptr<ring::CudaRingServer> server;
  std::unique_ptr<ring::RingClient> client;
  std::uint32_t actor = 0;

  // Creates and starts it, activates one counter; empty string on success, else what failed.
  std::string open() {
    auto m = ring::RingMemory::create(small_ring());
    if (!m) return "RingMemory::create: " + m.error().to_string();
    memory = std::move(m).value();
    auto s = ring::CudaRingServer::create(*memory, handlers(1), {});
    if (!s) return "CudaRingServer::create: " + s.error().to_string();
    server = std::move(s).value();
    auto c = ring::RingClient::create(*memory, {});
    if (!c) return "RingClient::create: " + c.error().to_string();
    client = std::move(c).value();
    if (Status started = server->start(); !started) return "start: " + started.error().to_string();
    auto a = client->activate(kCounterType, {}, far_deadline());
    if (!a) return "activate: " + a.error().to_string();
    actor = *a;
    return "";
  }
  // The echo of `value` through the kernel; empty string when it came back right.
  std::string echo(std::uint64_t value) {
    auto sent = client->send(actor, kEcho, bytes_of(value), far_deadline(), {});
    if (!sent) return "send: " + sent.error().to_string();
    auto reply = sent->get();
    if (!reply) return "reply: " + reply.error().to_string();
    if (u64_of(*reply) != value) return "echo returned " + std::to_string(u64_of(*reply));
    return "";
  }
  // Stops the kernel and waits for it; the server's error, if any.
  std::string close() {
    if (server == nullptr) return "";
    server->request_stop();
    Status s = server->wait();
    client.reset();
    server.reset();
    return s ? "" : s.error().to_string();
  }
};

class CudaRingCoexistenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    executor = make_executor({.enable_cuda = true, .enable_opencl = false});
    ASSERT_NE(executor, nullptr);
    GB_REQUIRE_BACKEND(executor, BackendKind::cuda);
    const std::string opened = ring.open();
    ASSERT_EQ(opened, "");
    ASSERT_EQ(ring.echo(1), "") << "the ring serves before the steps";
  }
  void TearDown() override {
    if (ring.server != nullptr) {
      EXPECT_EQ(ring.close(), "");
    }
  }

  // Runs `step` beside the serving ring kernel (see the file comment). True when it finished in time.
  bool run_beside(const std::string& what, std::function<void()> step) {
    const auto start = Clock::now();
    auto done = std::async(std::launch::async, std::move(step));
    if (done.wait_for(kStepLimit) == std::future_status::ready) {
      done.get();
      std::cout << "beside the ring kernel: " << what << ": "
                << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count() << " ms\n";
      return true;
    }
    ADD_FAILURE() << what << " did not finish within " << kStepLimit.count()
                  << " s while a persistent ring kernel served; stopping the ring";
    ring.server->request_stop();
    if (done.wait_for(kAfterStopLimit) != std::future_status::ready) {
      std::fprintf(stderr, "FATAL: %s still blocked after the ring kernel was asked to stop\n", what.c_str());
      std::fflush(stderr);
      std::_Exit(1);
    }
    done.get();
    std::cout << "beside the ring kernel: " << what << ": finished only after the ring was stopped\n";
    return false;
  }

  std::unique_ptr<Executor> executor;
  DeviceRing ring;
};

compute::CallOptions strictly_cuda() {
  compute::CallOptions o;
  o.backend = BackendChoice::cuda;
  o.allow_fallback = false;
  return o;
}

// Each step is a first use in this process: what it loads or allocates happens while the ring runs.
TEST_F(CudaRingCoexistenceTest, ExecutorWorkAndAnotherRingRunBesideAServingRingKernel) {
  const std::vector<float> x = random_f32(4096, 1), y = random_f32(4096, 2);

  const bool add_ok = run_beside("first vector.add on cuda:0 (NVRTC module load)", [&] {
    auto r = executor->run(KernelCall{"vector.add", DType::f32, {TensorView(x), TensorView(y)}, {}}, strictly_cuda());
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    const float* out = static_cast<const float*>(r->outputs.at(0).data());
    for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(out[i], x[i] + y[i]) << "element " << i;
  });
  if (!add_ok) return;
  ASSERT_EQ(ring.echo(2), "");

  // m x k times k x n from the first m * k and k * n values of x and y; checks C[0][0].
  const auto gemm = [&](std::uint64_t m, std::uint64_t k, std::uint64_t n) {
    auto r = executor->run(KernelCall{"matrix.multiply", DType::f32,
                                      {TensorView(DType::f32, x.data(), m * k), TensorView(DType::f32, y.data(), k * n)},
                                      {static_cast<double>(m), static_cast<double>(k), static_cast<double>(n)}},
                           strictly_cuda());
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    const float* out = static_cast<const float*>(r->outputs.at(0).data());
    double want = 0;
    for (std::size_t i = 0; i < k; ++i) want += static_cast<double>(x[i]) * y[i * n];
    EXPECT_NEAR(out[0], want, 1e-3);
  };
  // The first GEMM of a shape on each of the executor's lanes (calls take them in turn) steps the
  // ring aside, as cuBLAS may load a kernel; a repeat on a lane does not, so it must not need
  // anything that waits for an idle device. Eight calls per shape: every lane repeats one.
  for (const auto& [what, m, k, n] : {std::tuple{"matrix.multiply 64 x 64 x 64, 8 times (cuBLAS handles and kernels)", 64, 64, 64},
                                      std::tuple{"matrix.multiply 32 x 128 x 32, 8 times", 32, 128, 32}}) {
    if (!run_beside(what, [&, m = m, k = k, n = n] {
          for (int i = 0; i < 8; ++i) gemm(m, k, n);
        })) {
      return;
    }
    ASSERT_EQ(ring.echo(3), "");
  }

  const bool pipeline_ok = run_beside("a three-stage pipeline on cuda:0 (CUDA graph capture and memory)", [&] {
    compute::Pipeline p;
    p.dtype = DType::f32;
    p.inputs = {TensorView(x), TensorView(y)};
    using S = compute::StageInput;
    p.stages = {{"vector.add", {S::external(0), S::external(1)}, {}},
                {"vector.axpy", {S::stage(0), S::external(1)}, {2.0}},
                {"vector.add", {S::stage(1), S::stage(0)}, {}}};
    auto r = executor->run_pipeline(p, strictly_cuda());
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    std::cout << "pipeline launch: " << compute::to_string(r->launch) << " " << r->launch_detail << "\n";
    const float* out = static_cast<const float*>(r->output.data());
    const float s0 = x[7] + y[7];
    EXPECT_FLOAT_EQ(out[7], (2.0f * s0 + y[7]) + s0);
  });
  if (!pipeline_ok) return;
  ASSERT_EQ(ring.echo(4), "");

  const bool second_ok = run_beside("a second ring server on cuda:0: create, start, call, stop, destroy", [&] {
    DeviceRing second;
    ASSERT_EQ(second.open(), "");
    EXPECT_EQ(second.echo(9), "");
    EXPECT_EQ(second.close(), "");
  });
  if (!second_ok) return;
  ASSERT_EQ(ring.echo(5), "");

  run_beside("the executor destroyed (device pools, graphs and cuBLAS handles freed)", [&] { executor.reset(); });
  EXPECT_EQ(ring.echo(6), "") << "the ring still serves after every step";
}

}  // namespace
}  // namespace gpubridge::testing::cuda_ring
