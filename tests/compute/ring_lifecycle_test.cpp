// Ring server lifecycle on the CPU: stop and drain while busy, hot reload while busy, a dead server
// detected by its heartbeat, and actor deactivation (state out to the host and back in).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "gpubridge/compute/ring.hpp"
#include "cpu_ring_rig.hpp"
#include "ring_test_support.hpp"

namespace ring = gpubridge::compute::ring;
using gpubridge::ErrorCode;
using gpubridge::Result;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

namespace {

using namespace gpubridge::testing::ring_support;  // words, bytes_of, handlers, Gate, ...

constexpr std::uint32_t kCounterType = 1;
constexpr std::uint32_t kCount = 1;  // increments the state counter; replies (version, counter)
constexpr std::uint32_t kBlock = 2;  // waits on the gate
constexpr std::uint32_t kCrash = 3;  // kills the server loop (test hook)

ring::HandlerTable make_handlers(Gate* gate, std::uint64_t version) {
  ring::HandlerTable table;
  EXPECT_TRUE(table.add({kCount, kCounterType, [version](std::span<std::byte> state, std::span<const std::byte>,
                                                         std::span<std::byte> out) -> Result<std::size_t> {
                           std::uint64_t count = 0;
                           std::memcpy(&count, state.data(), sizeof count);
                           ++count;
                           std::memcpy(state.data(), &count, sizeof count);
                           std::memcpy(out.data(), &version, sizeof version);
                           std::memcpy(out.data() + 8, &count, sizeof count);
                           return std::size_t{16};
                         }}));
  EXPECT_TRUE(table.add(waiting_on(kBlock, kCounterType, gate)));
  EXPECT_TRUE(table.add({kCrash, kCounterType, [](std::span<std::byte>, std::span<const std::byte>,
                                                   std::span<std::byte>) -> Result<std::size_t> {
                           throw ring::HandlerTrap{};
                         }}));
  return table;
}

ring::RingConfig lifecycle_config(std::uint32_t slots) {
  ring::RingConfig config;
  config.request_slots = slots;
  config.completion_slots = slots;
  config.pool_chunks = 16;
  config.actor_types = {{kCounterType, 32, 4}};
  return config;
}

struct Rig : gpubridge::testing::ring_support::CpuRingRig {
  explicit Rig(std::uint32_t slots, ring::RingClientOptions options = {})
      : CpuRingRig(lifecycle_config(slots), [](Gate* g) { return make_handlers(g, 1); }, options) {}
};

ring::RingClientOptions patient() {
  ring::RingClientOptions options;
  options.dead_after = std::chrono::minutes(10);  // blocked handlers stop heartbeats on purpose
  return options;
}

TEST(RingLifecycleTest, StopWhileBusyCancelsQueuedMessages) {
  Rig rig(64, patient());
  const std::uint32_t actor = rig.client->activate(kCounterType, {}, far_deadline()).value();
  auto running = rig.client->try_send(actor, kBlock, {}).value();
  std::vector<std::future<Result<ring::Reply>>> queued;
  for (int i = 0; i < 40; ++i) queued.push_back(rig.client->try_send(actor, kCount, {}).value());
  rig.gate.wait_entered();

  rig.server->request_stop();
  auto refused = rig.client->try_send(actor, kCount, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::unavailable);
  rig.gate.open();
  rig.server->wait();

  EXPECT_TRUE(running.get().ok());  // the message in progress finishes
  for (auto& f : queued) {
    Result<ring::Reply> reply = f.get();
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.error().code(), ErrorCode::cancelled);
    EXPECT_THAT(reply.error().message(), HasSubstr("stopped"));
  }
  EXPECT_EQ(rig.server->messages_served(), 42u);  // activate, blocked, 40 cancelled
}

TEST(RingLifecycleTest, DrainWhileBusyFinishesQueuedMessages) {
  Rig rig(64, patient());
  const std::uint32_t actor = rig.client->activate(kCounterType, {}, far_deadline()).value();
  auto running = rig.client->try_send(actor, kBlock, {}).value();
  std::vector<std::future<Result<ring::Reply>>> queued;
  for (int i = 0; i < 40; ++i) queued.push_back(rig.client->try_send(actor, kCount, {}).value());

  rig.server->request_drain();
  auto refused = rig.client->try_send(actor, kCount, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::unavailable);
  rig.gate.open();
  rig.server->wait();

  EXPECT_TRUE(running.get().ok());
  for (std::size_t i = 0; i < queued.size(); ++i) {
    Result<ring::Reply> reply = queued[i].get();
    ASSERT_TRUE(reply.ok()) << reply.error().to_string();
    EXPECT_EQ(u64_of(*reply, 8), i + 1);  // in order, each exactly once
  }
  // After the drain the block is done: a send is refused, a new server cannot take it over.
  auto after = rig.client->try_send(actor, kCount, {});
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code(), ErrorCode::unavailable);
  Gate unused;
  auto second = ring::CpuRingServer::create(*rig.memory, make_handlers(&unused, 1));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code(), ErrorCode::failed_precondition);
  auto restart = rig.server->start();
  ASSERT_FALSE(restart.ok());
  EXPECT_EQ(restart.error().code(), ErrorCode::failed_precondition);
}

TEST(RingLifecycleTest, HotReloadWhileBusyKeepsStateAndQueuedMessages) {
  Rig rig(32);
  const std::uint32_t actor = rig.client->activate(kCounterType, {}, far_deadline()).value();
  std::mutex order_mutex;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> order;  // (version, counter) in completion order
  std::atomic<std::uint64_t> completed{0};
  std::atomic<std::uint64_t> failed{0};
  auto record = [&](Result<ring::Reply> reply) {
    if (reply.ok()) {
      std::lock_guard lock(order_mutex);
      order.emplace_back(u64_of(*reply), u64_of(*reply, 8));
    } else {
      failed.fetch_add(1);
    }
    completed.fetch_add(1);
  };
  constexpr std::uint64_t kPerThread = 3'000;
  auto produce = [&] {
    for (std::uint64_t i = 0; i < kPerThread; ++i) {
      if (!rig.client->send_async(actor, kCount, {}, far_deadline(), record)) failed.fetch_add(1);
    }
  };
  std::thread a(produce), b(produce);
  while (completed.load() < kPerThread / 2) std::this_thread::yield();
  rig.server->reload(make_handlers(&rig.gate, 2));
  a.join();
  b.join();
  // Messages sent after the reload returned are served by the new table.
  std::thread c(produce);
  c.join();
  constexpr std::uint64_t kTotal = 3 * kPerThread;
  while (completed.load() < kTotal) std::this_thread::yield();

  EXPECT_EQ(failed.load(), 0u);
  std::lock_guard lock(order_mutex);
  ASSERT_EQ(order.size(), kTotal);
  bool reloaded = false;
  for (std::size_t i = 0; i < order.size(); ++i) {
    EXPECT_EQ(order[i].second, i + 1) << "actor state lost or a message lost/duplicated at " << i;
    if (order[i].first == 2) reloaded = true;
    if (reloaded) {
      ASSERT_EQ(order[i].first, 2u) << "old handler ran after the new one at " << i;
    } else {
      ASSERT_EQ(order[i].first, 1u);
    }
  }
  EXPECT_TRUE(reloaded);
  EXPECT_EQ(order.back().first, 2u);
}

TEST(RingLifecycleTest, DeadServerFailsWaitingCallersInsteadOfHanging) {
  ring::RingClientOptions options;
  options.dead_after = std::chrono::milliseconds(300);
  Rig rig(4, options);
  const std::uint32_t actor = rig.client->activate(kCounterType, {}, far_deadline()).value();
  auto crash = rig.client->try_send(actor, kCrash, {}).value();
  std::vector<std::future<Result<ring::Reply>>> queued;
  for (int i = 0; i < 3; ++i) queued.push_back(rig.client->send(actor, kCount, {}, far_deadline()).value());
  // The ring is full behind the dead server: this sender waits until the watchdog fires.
  auto waiting = rig.client->send(actor, kCount, {}, far_deadline());
  ASSERT_FALSE(waiting.ok());
  EXPECT_EQ(waiting.error().code(), ErrorCode::unavailable);
  EXPECT_THAT(waiting.error().message(), HasSubstr("ring server dead"));

  for (auto* f : {&crash, &queued[0], &queued[1], &queued[2]}) {
    Result<ring::Reply> reply = f->get();
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.error().code(), ErrorCode::unavailable);
    EXPECT_THAT(reply.error().message(), HasSubstr("ring server dead"));
  }
  auto after = rig.client->try_send(actor, kCount, {});
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code(), ErrorCode::unavailable);
}

TEST(RingLifecycleTest, DeactivationCopiesStateOutAndBackIn) {
  Rig rig(16);
  std::vector<std::byte> initial(8);
  const std::uint64_t start = 41;
  std::memcpy(initial.data(), &start, sizeof start);
  const std::uint32_t actor = rig.client->activate(kCounterType, initial, far_deadline()).value();
  auto first = rig.client->send(actor, kCount, {}, far_deadline()).value().get().value();
  EXPECT_EQ(u64_of(first, 8), 42u);

  Result<ring::Reply> state = rig.client->deactivate(actor, far_deadline());
  ASSERT_TRUE(state.ok()) << state.error().to_string();
  ASSERT_EQ(state->size(), 32u);  // the type's whole state
  EXPECT_EQ(u64_of(*state), 42u);

  auto gone = rig.client->send(actor, kCount, {}, far_deadline()).value().get();
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code(), ErrorCode::failed_precondition);
  auto twice = rig.client->deactivate(actor, far_deadline());
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code(), ErrorCode::failed_precondition);

  const std::uint32_t again = rig.client->activate(kCounterType, *state, far_deadline()).value();
  auto resumed = rig.client->send(again, kCount, {}, far_deadline()).value().get().value();
  EXPECT_EQ(u64_of(resumed, 8), 43u);

  auto too_big = rig.client->activate(kCounterType, std::vector<std::byte>(33), far_deadline());
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().code(), ErrorCode::invalid_argument);
  auto unknown = rig.client->activate(9, {}, far_deadline());
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code(), ErrorCode::not_found);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(rig.client->activate(kCounterType, {}, far_deadline()).ok());
  auto exhausted = rig.client->activate(kCounterType, {}, far_deadline());
  ASSERT_FALSE(exhausted.ok());
  EXPECT_EQ(exhausted.error().code(), ErrorCode::resource_exhausted);
}

}  // namespace
