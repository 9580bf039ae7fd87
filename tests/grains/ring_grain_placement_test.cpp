// RingHost placement and lifecycle on either server: automatic placement falls back to the CPU
// with a reason when CUDA cannot host the ring, an explicit cuda placement fails clearly instead,
// programs are validated, and drain / reload / server_status work on the server in use (the CPU
// server here; tests/grains/ring_grain_cuda_test.cpp repeats the CUDA side on a GPU).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <vector>

#include "grains/ring_grain_program.hpp"
#include "test_support.hpp"

namespace gpubridge::grains {
namespace {

using namespace gpubridge::testing::ring_program;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

RingHostOptions small_ring(RingPlacement placement) {
  RingHostOptions o;
  o.name = "test-ring";
  o.placement = placement;
  o.ring.request_slots = 64;
  o.ring.completion_slots = 64;
  o.ring.pool_chunks = 4;
  return o;
}

// Whether this machine has a CUDA device, as the executor sees it ("" when it has).
std::string cuda_absent_reason() {
  auto executor = gpubridge::testing::make_executor();
  return executor ? gpubridge::testing::absent_reason(*executor, compute::BackendKind::cuda) : "no executor";
}

std::int64_t send_add(RingHost& host, std::uint32_t actor, std::int64_t delta) {
  auto sent = host.client().send(actor, kAdd, i64_bytes(delta), Clock::now() + std::chrono::seconds(20));
  EXPECT_TRUE(sent.ok()) << sent.error().to_string();
  if (!sent.ok()) return -1;
  Result<ring::Reply> reply = sent->get();
  EXPECT_TRUE(reply.ok()) << reply.error().to_string();
  return reply.ok() ? i64_of(*reply) : -1;
}

std::uint32_t activate(RingHost& host) {
  auto actor = host.client().activate(kCounterType, {}, Clock::now() + std::chrono::seconds(20));
  EXPECT_TRUE(actor.ok()) << actor.error().to_string();
  return actor.ok() ? *actor : 0;
}

TEST(RingHostPlacement, AutoUsesCudaWhenADeviceTakesItElseTheCpuWithTheReason) {
  const std::string absent = cuda_absent_reason();
  auto host = RingHost::create(small_ring(RingPlacement::automatic), counter_program(4));
  ASSERT_TRUE(host.ok()) << host.error().to_string();
  const RingHostPlacement& placed = (*host)->placement();
  EXPECT_EQ(placed.requested, RingPlacement::automatic);
  if (absent.empty()) {  // a CUDA device: the kernel serves the ring
    EXPECT_EQ(placed.backend, RingBackend::cuda) << placed.fallback_reason << ": " << placed.detail;
    EXPECT_NE((*host)->cuda_server(), nullptr);
    EXPECT_THAT(placed.device, HasSubstr("cuda:0"));
  } else {
    EXPECT_EQ(placed.backend, RingBackend::cpu);
    EXPECT_EQ(placed.device, "cpu");
    EXPECT_TRUE(placed.fell_back());
    EXPECT_EQ(placed.fallback_reason, kRingReasonNoDevice) << placed.detail;
    EXPECT_FALSE(placed.detail.empty());
    EXPECT_NE((*host)->cpu_server(), nullptr);
    EXPECT_EQ((*host)->cuda_server(), nullptr);
  }
  // Either way the ring serves.
  RingHost& h = **host;
  const std::uint32_t actor = activate(h);
  EXPECT_EQ(send_add(h, actor, 5), 5);
  EXPECT_EQ(send_add(h, actor, 6), 11);
}

TEST(RingHostPlacement, AutoWithoutCudaHandlersOrWithCudaDisabledRunsOnTheCpuWithTheReason) {
  auto no_handlers = RingHost::create(small_ring(RingPlacement::automatic), counter_program(4, /*with_cuda=*/false));
  ASSERT_TRUE(no_handlers.ok()) << no_handlers.error().to_string();
  EXPECT_EQ((*no_handlers)->placement().backend, RingBackend::cpu);
  EXPECT_EQ((*no_handlers)->placement().fallback_reason, kRingReasonHandlersMissing);
  EXPECT_THAT((*no_handlers)->placement().detail, HasSubstr("no CUDA handlers"));

  RingHostOptions disabled = small_ring(RingPlacement::automatic);
  disabled.cuda_enabled = false;
  auto off = RingHost::create(disabled, counter_program(4));
  ASSERT_TRUE(off.ok()) << off.error().to_string();
  EXPECT_EQ((*off)->placement().backend, RingBackend::cpu);
  EXPECT_EQ((*off)->placement().fallback_reason, kRingReasonDisabled);

  // Asked for the CPU: no reason to record.
  auto cpu = RingHost::create(small_ring(RingPlacement::cpu), counter_program(4));
  ASSERT_TRUE(cpu.ok()) << cpu.error().to_string();
  EXPECT_EQ((*cpu)->placement().backend, RingBackend::cpu);
  EXPECT_FALSE((*cpu)->placement().fell_back());
  EXPECT_TRUE((*cpu)->placement().detail.empty());
}

TEST(RingHostPlacement, ExplicitCudaWithoutADeviceIsAClearErrorNotACpuRing) {
  // Device ordinal 1000 exists on no machine: the error is asserted everywhere, never skipped.
  RingHostOptions o = small_ring(RingPlacement::cuda);
  o.cuda_server.device = 1000;
  auto host = RingHost::create(o, counter_program(4));
  ASSERT_FALSE(host.ok()) << "placement cuda must not fall back to the CPU";
  EXPECT_EQ(host.error().code(), ErrorCode::unavailable) << host.error().to_string();
  EXPECT_THAT(host.error().to_string(), HasSubstr("ring 'test-ring': placement cuda"));
  if (!cuda_absent_reason().empty()) {
    // And on this machine, the default device too.
    auto default_device = RingHost::create(small_ring(RingPlacement::cuda), counter_program(4));
    ASSERT_FALSE(default_device.ok());
    EXPECT_EQ(default_device.error().code(), ErrorCode::unavailable) << default_device.error().to_string();
  }

  auto without_handlers = RingHost::create(small_ring(RingPlacement::cuda), counter_program(4, /*with_cuda=*/false));
  ASSERT_FALSE(without_handlers.ok());
  EXPECT_EQ(without_handlers.error().code(), ErrorCode::failed_precondition);
  EXPECT_THAT(without_handlers.error().message(), HasSubstr("placement cuda: the program has no CUDA handlers"));

  RingHostOptions disabled = small_ring(RingPlacement::cuda);
  disabled.cuda_enabled = false;
  auto off = RingHost::create(disabled, counter_program(4));
  ASSERT_FALSE(off.ok());
  EXPECT_EQ(off.error().code(), ErrorCode::failed_precondition);
  EXPECT_THAT(off.error().message(), HasSubstr("CUDA is disabled"));
}

TEST(RingHostPlacement, InvalidProgramsAreRejectedBeforeAnythingStarts) {
  auto expect_invalid = [](RingProgram program, const std::string& needle) {
    auto host = RingHost::create(small_ring(RingPlacement::cpu), std::move(program));
    ASSERT_FALSE(host.ok()) << needle;
    EXPECT_EQ(host.error().code(), ErrorCode::invalid_argument);
    EXPECT_THAT(host.error().message(), HasSubstr(needle));
  };
  RingProgram no_types = counter_program(4);
  no_types.actor_types.clear();
  expect_invalid(std::move(no_types), "no actor types");

  RingProgram missing_cuda = counter_program(4);
  missing_cuda.cuda_handlers->handlers.pop_back();
  expect_invalid(std::move(missing_cuda), "have no CUDA handler of the same id");

  RingProgram extra_cuda = counter_program(4);
  extra_cuda.cuda_handlers->handlers.push_back({77, kCounterType, "counter_get"});
  expect_invalid(std::move(extra_cuda), "CUDA handler 77 has no CPU handler");

  RingProgram other_type = counter_program(4);
  other_type.cuda_handlers->handlers[0].actor_type = 9;
  expect_invalid(std::move(other_type), "serves actor type 9");

  RingProgram duplicate_name = counter_program(4);
  duplicate_name.actor_types.push_back({"counter", 2, 8, 1});
  expect_invalid(std::move(duplicate_name), "'counter' is used twice");

  RingProgram zero_actors = counter_program(0);
  expect_invalid(std::move(zero_actors), "max_actors must be > 0");

  RingHostOptions with_types = small_ring(RingPlacement::cpu);
  with_types.ring.actor_types = {{kCounterType, 8, 1}};
  auto host = RingHost::create(with_types, counter_program(4));
  ASSERT_FALSE(host.ok());
  EXPECT_THAT(host.error().message(), HasSubstr("come from its program"));

  RingHostOptions bad_geometry = small_ring(RingPlacement::automatic);
  bad_geometry.ring.request_slots = 100;  // not a power of two: the caller's error, not a fallback
  auto bad = RingHost::create(bad_geometry, counter_program(4));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), ErrorCode::invalid_argument);
}

TEST(RingHostLifecycle, DrainFinishesQueuedMessagesThenStops) {
  auto created = RingHost::create(small_ring(RingPlacement::cpu), counter_program(4));
  ASSERT_TRUE(created.ok()) << created.error().to_string();
  RingHost& host = **created;
  const std::uint32_t actor = activate(host);
  constexpr int kMessages = 50;
  std::vector<std::future<Result<ring::Reply>>> replies;
  for (int i = 0; i < kMessages; ++i) {
    auto sent = host.client().try_send(actor, kAdd, i64_bytes(1));
    ASSERT_TRUE(sent.ok()) << sent.error().to_string();
    replies.push_back(std::move(sent).value());
  }
  ASSERT_TRUE(host.drain().ok());
  EXPECT_TRUE(host.stopped());
  std::int64_t last = 0;
  for (auto& r : replies) {
    Result<ring::Reply> reply = r.get();
    ASSERT_TRUE(reply.ok()) << "drain must finish queued messages: " << reply.error().to_string();
    last = std::max(last, i64_of(*reply));
  }
  EXPECT_EQ(last, kMessages);
  EXPECT_GE(host.messages_served(), static_cast<std::uint64_t>(kMessages) + 1);  // + the activation
  auto after = host.client().try_send(actor, kGet, {});
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code(), ErrorCode::unavailable);
  EXPECT_TRUE(host.drain().ok());  // idempotent
  EXPECT_TRUE(host.stop().ok());
  Status status = host.server_status(std::chrono::milliseconds(50));
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.error().message(), HasSubstr("stopped"));
  Status reload = host.reload(counter_program(4));
  ASSERT_FALSE(reload.ok());
  EXPECT_EQ(reload.error().code(), ErrorCode::failed_precondition);
}

TEST(RingHostLifecycle, ReloadSwapsHandlersKeepingStatesAndChecksActorTypes) {
  auto created = RingHost::create(small_ring(RingPlacement::cpu), counter_program(4));
  ASSERT_TRUE(created.ok()) << created.error().to_string();
  RingHost& host = **created;
  const std::uint32_t actor = activate(host);
  EXPECT_EQ(send_add(host, actor, 3), 3);
  ASSERT_TRUE(host.reload(counter_program(4, true, /*scale=*/100)).ok());
  EXPECT_EQ(send_add(host, actor, 2), 203);  // state kept, new handler

  RingProgram other_state = counter_program(4);
  other_state.actor_types[0].state_bytes = 16;
  Status changed = host.reload(std::move(other_state));
  ASSERT_FALSE(changed.ok());
  EXPECT_EQ(changed.error().code(), ErrorCode::invalid_argument);
  EXPECT_THAT(changed.error().message(), HasSubstr("actor types"));
  // A different actor count is fine: the table is sized by the running ring.
  ASSERT_TRUE(host.reload(counter_program(64)).ok());
  EXPECT_EQ(send_add(host, actor, 1), 204);
}

TEST(RingHostLifecycle, ServerStatusSeesALiveAndADeadServer) {
  RingHostOptions o = small_ring(RingPlacement::cpu);
  o.client.dead_after = std::chrono::milliseconds(200);
  auto created = RingHost::create(o, counter_program(4));
  ASSERT_TRUE(created.ok()) << created.error().to_string();
  RingHost& host = **created;
  EXPECT_TRUE(host.server_status(std::chrono::seconds(5)).ok());
  const std::uint32_t actor = activate(host);
  auto trapped = host.client().send(actor, kTrap, {}, Clock::now() + std::chrono::seconds(20));
  ASSERT_TRUE(trapped.ok());
  Result<ring::Reply> reply = trapped->get();  // the watchdog fails it
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().code(), ErrorCode::unavailable);
  Status status = host.server_status(std::chrono::milliseconds(100));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code(), ErrorCode::unavailable);
  EXPECT_THAT(status.error().message(), HasSubstr("ring server dead"));
  // A CUDA ring kernel stepped aside for an operation that needs its device idle does not beat
  // either, and is alive: its host marks the ring so (what the CUDA server's lifecycle writes).
  std::atomic_ref<std::uint32_t> state(host.memory().header().server_state);
  const std::uint32_t running = state.load();
  state.store(static_cast<std::uint32_t>(ring::ServerState::stepped_aside));
  EXPECT_TRUE(host.server_status(std::chrono::milliseconds(100)).ok());
  state.store(running);
}

}  // namespace
}  // namespace gpubridge::grains
