// Ring grains on the CUDA persistent kernel (placement cuda): RingHost placement, grain calls,
// parked states, reload, drain, a silo hosting a cuda ring from its configuration, and a kernel
// that dies seen by server_status. Labelled gpu: skips without a CUDA device (fails when
// GPUBRIDGE_REQUIRE_BACKENDS names cuda). The CPU side of the same behaviour is in
// ring_grain_placement_test.cpp and tests/server/ring_silo_test.cpp.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "gpubridge/server/silo.hpp"
#include "grains/ring_grain_program.hpp"
#include "test_support.hpp"

namespace gpubridge::grains {
namespace {

using namespace gpubridge::testing::ring_program;
using runtime::Task;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

#define GB_REQUIRE_CUDA()                                  \
  auto gb_executor_ = gpubridge::testing::make_executor(); \
  ASSERT_NE(gb_executor_, nullptr);                        \
  GB_REQUIRE_BACKEND(gb_executor_, compute::BackendKind::cuda)

RingHostOptions cuda_ring() {
  RingHostOptions o;
  o.name = "cuda-ring";
  o.placement = RingPlacement::cuda;
  o.ring.request_slots = 256;
  o.ring.completion_slots = 256;
  o.ring.pool_chunks = 16;
  o.client.dead_after = std::chrono::seconds(5);
  return o;
}

std::int64_t grain_add(runtime::Runtime& rt, const std::string& key, std::int64_t delta) {
  const Bytes reply = rt.run(rt.get<RingGrain>(key).call<&RingGrain::call>(kAdd, i64_bytes(delta), std::uint32_t{64}));
  EXPECT_EQ(reply.size(), 8u);
  return reply.size() == 8 ? i64_of(reply) : -1;
}

TEST(RingGrainCuda, PlacementCudaServesGrainsParksStatesReloadsAndDrains) {
  GB_REQUIRE_CUDA();
  auto created = RingHost::create(cuda_ring(), counter_program(8));
  ASSERT_TRUE(created.ok()) << created.error().to_string();
  RingHost& host = **created;
  EXPECT_EQ(host.placement().backend, RingBackend::cuda);
  EXPECT_FALSE(host.placement().fell_back());
  EXPECT_THAT(host.placement().device, HasSubstr("cuda:0 ("));
  ASSERT_NE(host.cuda_server(), nullptr);
  EXPECT_EQ(host.cpu_server(), nullptr);
  EXPECT_TRUE(host.server_status(std::chrono::seconds(2)).ok());

  runtime::RuntimeOptions ro;
  ro.worker_threads = 2;
  auto rt = runtime::Runtime::create(ro).value();
  ASSERT_TRUE(rt->register_grain<RingGrain>({}, [&host] {
    return std::make_unique<RingGrain>(host, RingGrainKind{kCounterType, {}});
  }).ok());
  EXPECT_EQ(grain_add(*rt, "a", 5), 5);
  EXPECT_EQ(grain_add(*rt, "b", 7), 7);
  rt->run(rt->get<RingGrain>("a").call<&RingGrain::evict>());
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (host.parked_count() < 1 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(host.parked_count(), 1u);
  EXPECT_EQ(grain_add(*rt, "a", 1), 6);  // restored from the parked state

  ASSERT_TRUE(host.reload(counter_program(8, true, /*scale=*/100)).ok());
  EXPECT_EQ(grain_add(*rt, "a", 1), 106);

  rt->stop();  // parks a and b while the kernel serves
  EXPECT_EQ(host.parked_count(), 2u);

  const std::uint32_t actor = host.client().activate(kCounterType, {}, Clock::now() + std::chrono::seconds(20)).value();
  std::vector<std::future<Result<compute::ring::Reply>>> replies;
  for (int i = 0; i < 40; ++i) replies.push_back(host.client().try_send(actor, kAdd, i64_bytes(1)).value());
  ASSERT_TRUE(host.drain().ok());
  for (auto& r : replies) {
    Result<compute::ring::Reply> reply = r.get();
    EXPECT_TRUE(reply.ok()) << reply.error().to_string();
  }
  EXPECT_TRUE(host.stopped());
}

class CudaCounter : public RingGrain {
 public:
  explicit CudaCounter(RingHost& host) : RingGrain(host, RingGrainKind{kCounterType, {}}) {}
  Task<std::int64_t> add(std::int64_t delta) {
    const Bytes payload = i64_bytes(delta);
    co_return i64_of(co_await send(kAdd, payload, 64));
  }
};

TEST(RingGrainCuda, SiloHostsACudaRingFromItsConfiguration) {
  GB_REQUIRE_CUDA();
  server::RingPrograms programs;
  ASSERT_TRUE(programs.add("counter", counter_program(16)).ok());
  server::SiloConfig c;
  c.workers = 2;
  c.enable_opencl = false;
  ASSERT_TRUE(server::apply_json(c, R"({"rings": [{"name": "gpu-counters", "program": "counter",
      "placement": "cuda", "request_slots": 256, "pool_chunks": 16}]})", "test").ok());
  auto started = server::Silo::start(c, std::move(programs));
  ASSERT_TRUE(started.ok()) << started.error().to_string();
  server::Silo& silo = **started;
  RingHost& host = *silo.ring_host("gpu-counters").value();
  EXPECT_EQ(host.placement().backend, RingBackend::cuda);
  ASSERT_TRUE(silo.runtime().register_grain<CudaCounter>({}, [&host] { return std::make_unique<CudaCounter>(host); }).ok());
  runtime::Runtime& rt = silo.runtime();
  EXPECT_EQ(rt.run(rt.get<CudaCounter>("x").call<&CudaCounter::add>(std::int64_t{4})), 4);
  EXPECT_EQ(rt.run(rt.get<CudaCounter>("x").call<&CudaCounter::add>(std::int64_t{4})), 8);
  silo.stop();
  auto parked = host.take_parked_state("CudaCounter/x");
  ASSERT_TRUE(parked.has_value());
  EXPECT_EQ(i64_of(*parked), 8);
}

TEST(RingGrainCuda, AKernelThatDiesIsSeenByServerStatus) {
  GB_REQUIRE_CUDA();
  RingHostOptions o = cuda_ring();
  o.client.dead_after = std::chrono::milliseconds(500);
  auto created = RingHost::create(o, counter_program(4));
  ASSERT_TRUE(created.ok()) << created.error().to_string();
  RingHost& host = **created;
  const std::uint32_t actor = host.client().activate(kCounterType, {}, Clock::now() + std::chrono::seconds(20)).value();
  auto trapped = host.client().send(actor, kTrap, {}, Clock::now() + std::chrono::seconds(20));
  ASSERT_TRUE(trapped.ok());
  Result<compute::ring::Reply> reply = trapped->get();
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().code(), ErrorCode::unavailable);
  Status status = host.server_status(std::chrono::milliseconds(500));
  ASSERT_FALSE(status.ok());
  // The kernel's CUDA error once it has returned, or a standing heartbeat before.
  EXPECT_TRUE(status.error().code() == ErrorCode::unavailable || status.error().code() == ErrorCode::internal)
      << status.error().to_string();
}

}  // namespace
}  // namespace gpubridge::grains
