// No heap allocation per message on RingClient's send and dispatch paths. This binary replaces the
// global operator new with a counting one, warms a 4-shard CPU ring (2 dispatcher threads) up, then
// sends messages whose callback fits std::function's inline storage and whose reply is empty, and
// counts every operator new in the process (all threads: producer, server shards, dispatchers)
// while they run.
//
// Bounds asserted: callbacks: allocations <= kSlack for kMessages messages (nothing per message;
// the slack covers one-off allocations such as a thread's first sleep). Futures: at most
// kFutureAllocations per message, the future's shared state (libstdc++: the state and its result
// holder) and nothing else.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "support/counting_new.hpp"
#include "gpubridge/compute/ring.hpp"
#include "ring_test_support.hpp"

namespace ring = gpubridge::compute::ring;
using gpubridge::ErrorCode;
using gpubridge::Result;
using gpubridge::testing::ring_support::far_deadline;

namespace {

constexpr std::uint32_t kShards = 4;
constexpr std::uint32_t kCounterType = 1;
constexpr std::uint32_t kTouch = 1;  // counts the message in the actor state; empty reply
constexpr std::uint32_t kActors = 16;
constexpr std::uint64_t kMessages = 20'480;  // a multiple of the future test's burst
constexpr std::uint64_t kSlack = 64;
constexpr std::uint64_t kFutureAllocations = 2;

struct Rig {
  std::unique_ptr<ring::RingMemory> memory;
  std::unique_ptr<ring::CpuRingServer> server;
  std::unique_ptr<ring::RingClient> client;
  std::vector<std::uint32_t> actors;

  Rig() {
    ring::RingConfig config;
    config.shards = kShards;
    config.request_slots = 256;
    config.completion_slots = 256;
    config.pool_chunks = 4;
    config.actor_types = {{kCounterType, 64, kActors}};
    memory = std::move(ring::RingMemory::create(config).value());
    ring::HandlerTable table;
    EXPECT_TRUE(table.add({kTouch, kCounterType, [](std::span<std::byte> state, std::span<const std::byte>,
                                                    std::span<std::byte>) -> Result<std::size_t> {
                             std::uint64_t count = 0;
                             std::memcpy(&count, state.data(), sizeof count);
                             ++count;
                             std::memcpy(state.data(), &count, sizeof count);
                             return std::size_t{0};
                           }}));
    server = std::move(ring::CpuRingServer::create(*memory, std::move(table)).value());
    ring::RingClientOptions options;
    options.dispatcher_threads = 2;
    client = std::move(ring::RingClient::create(*memory, options).value());
    EXPECT_TRUE(server->start());
    for (std::uint32_t i = 0; i < kActors; ++i) actors.push_back(client->activate(kCounterType, {}, far_deadline()).value());
  }
  ~Rig() {
    client.reset();
    server.reset();
  }
};

// What a callback records without allocating: completions and failures.
struct Counts {
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::uint64_t> failed{0};
};

// Sends `n` messages with a pointer-sized callback (stored inline in std::function) and waits for
// every callback.
void send_with_callbacks(Rig& rig, Counts& counts, std::uint64_t n, bool waiting_form) {
  const std::uint64_t target = counts.done.load() + n;
  Counts* sink = &counts;
  auto callback = [sink](Result<ring::Reply> reply) {
    if (!reply.ok() || !reply->empty()) sink->failed.fetch_add(1, std::memory_order_relaxed);
    sink->done.fetch_add(1, std::memory_order_release);
  };
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint32_t actor = rig.actors[i % kActors];
    gpubridge::Status sent = waiting_form ? rig.client->send_async(actor, kTouch, {}, far_deadline(), callback)
                                          : rig.client->try_send_async(actor, kTouch, {}, callback);
    while (!waiting_form && !sent.ok() && sent.error().code() == ErrorCode::resource_exhausted) {
      std::this_thread::yield();  // ring full: retry
      sent = rig.client->try_send_async(actor, kTouch, {}, callback);
    }
    if (!sent.ok()) {
      counts.failed.fetch_add(1, std::memory_order_relaxed);
      counts.done.fetch_add(1, std::memory_order_release);
    }
  }
  while (counts.done.load(std::memory_order_acquire) < target) std::this_thread::yield();
}

TEST(RingClientAllocTest, CallbackSendsAllocateNothingPerMessage) {
  Rig rig;
  Counts counts;
  send_with_callbacks(rig, counts, 4'000, true);  // warm-up: threads, first sleeps, tables
  send_with_callbacks(rig, counts, 4'000, false);

  const std::uint64_t before = gpubridge::testing::allocations();
  send_with_callbacks(rig, counts, kMessages / 2, true);
  send_with_callbacks(rig, counts, kMessages / 2, false);
  const std::uint64_t allocations = gpubridge::testing::allocations() - before;

  EXPECT_EQ(counts.failed.load(), 0u);
  EXPECT_LE(allocations, kSlack) << allocations << " allocations for " << kMessages << " messages";
  EXPECT_EQ(rig.client->pending_calls(), 0u);
}

TEST(RingClientAllocTest, FutureSendsAllocateOnlyTheSharedState) {
  Rig rig;
  constexpr std::uint64_t kBurst = 64;
  auto run = [&](std::uint64_t n) {
    std::vector<std::future<Result<ring::Reply>>> futures;
    futures.reserve(kBurst);
    std::uint64_t failed = 0;
    for (std::uint64_t i = 0; i < n; i += kBurst) {
      for (std::uint64_t k = 0; k < kBurst; ++k) {
        futures.push_back(rig.client->send(rig.actors[(i + k) % kActors], kTouch, {}, far_deadline()).value());
      }
      for (auto& future : futures) failed += !future.get().ok();
      futures.clear();
    }
    return failed;
  };
  EXPECT_EQ(run(4'096), 0u);  // warm-up

  const std::uint64_t before = gpubridge::testing::allocations();
  EXPECT_EQ(run(kMessages), 0u);
  const std::uint64_t allocations = gpubridge::testing::allocations() - before;
  EXPECT_LE(allocations, kFutureAllocations * kMessages + kSlack)
      << allocations << " allocations for " << kMessages << " messages";
  // Each future's shared state is allocated: the counting operator new is in place.
  EXPECT_GE(allocations, kMessages);
}

}  // namespace
