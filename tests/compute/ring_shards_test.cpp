// Sharded rings on the CPU server (4 shards, one thread each): geometry and routing, many producers
// over many actors, wrap-around and a full ring per shard, large payloads, cross-shard posts and
// forward chains answering the host, drain and stop while busy on every shard, hot reload while
// busy, and a trap in one shard killing the whole server.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <map>
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

constexpr std::uint32_t kShards = 4;
constexpr std::uint32_t kCounterType = 1;
constexpr std::uint32_t kAdd = 1;       // counter += payload u64 (1 when empty); replies (counter, version)
constexpr std::uint32_t kHold = 2;      // waits on the test's gate
constexpr std::uint32_t kTrap = 3;      // kills the server (HandlerTrap)
constexpr std::uint32_t kReverse = 4;   // replies with the payload reversed
constexpr std::uint32_t kPostAdds = 5;  // (target u32, n u32): posts n kAdd to target
constexpr std::uint32_t kRelay = 6;     // (next u32 ...): counter += 1, forwards the rest to next;
                                        // the last replies (hops, counter)

std::uint64_t counter_add(std::span<std::byte> state, std::uint64_t n) {
  std::uint64_t value = 0;
  std::memcpy(&value, state.data(), sizeof value);
  value += n;
  std::memcpy(state.data(), &value, sizeof value);
  return value;
}

std::uint32_t u32_at(std::span<const std::byte> bytes, std::size_t at) {
  std::uint32_t value = 0;
  std::memcpy(&value, bytes.data() + at, sizeof value);
  return value;
}

ring::HandlerTable make_handlers(Gate* gate, std::uint64_t version) {
  ring::HandlerTable table;
  EXPECT_TRUE(table.add({kAdd, kCounterType, [version](std::span<std::byte> state, std::span<const std::byte> in,
                                                       std::span<std::byte> out) -> Result<std::size_t> {
                           std::uint64_t n = 1;
                           if (in.size() >= 8) std::memcpy(&n, in.data(), 8);
                           const std::uint64_t value = counter_add(state, n);
                           if (out.size() < 16) return gpubridge::Error(ErrorCode::out_of_range, "reply too small");
                           std::memcpy(out.data(), &value, 8);
                           std::memcpy(out.data() + 8, &version, 8);
                           return std::size_t{16};
                         }}));
  EXPECT_TRUE(table.add(waiting_on(kHold, kCounterType, gate)));
  EXPECT_TRUE(table.add(trapping(kTrap, kCounterType)));
  EXPECT_TRUE(table.add(reversing(kReverse, kCounterType)));
  ring::HandlerSpec post_adds{kPostAdds, kCounterType, {}};
  post_adds.messaging_fn = [](ring::HandlerContext& context) -> Result<std::size_t> {
    const std::uint32_t target = u32_at(context.payload(), 0);
    const std::uint32_t n = u32_at(context.payload(), 4);
    for (std::uint32_t i = 0; i < n; ++i) {
      if (gpubridge::Status s = context.post(target, kAdd, {}); !s) return s.error();
    }
    return std::size_t{0};
  };
  EXPECT_TRUE(table.add(std::move(post_adds)));
  ring::HandlerSpec relay{kRelay, kCounterType, {}};
  relay.messaging_fn = [](ring::HandlerContext& context) -> Result<std::size_t> {
    const std::uint64_t value = counter_add(context.state(), 1);
    std::span<const std::byte> rest = context.payload();
    if (!rest.empty()) {
      if (gpubridge::Status s = context.forward(u32_at(rest, 0), kRelay, rest.subspan(4)); !s) return s.error();
      return std::size_t{0};
    }
    const std::uint64_t hops = context.hops();
    std::memcpy(context.reply_area().data(), &hops, 8);
    std::memcpy(context.reply_area().data() + 8, &value, 8);
    return std::size_t{16};
  };
  EXPECT_TRUE(table.add(std::move(relay)));
  return table;
}

ring::RingConfig sharded_config(std::uint32_t slots, std::uint32_t actors = 16) {
  ring::RingConfig config;
  config.shards = kShards;
  config.request_slots = slots;
  config.completion_slots = slots;
  config.pool_chunk_bytes = 4096;
  config.pool_chunks = 640;
  config.actor_types = {{kCounterType, 64, actors}};
  return config;
}

ring::RingClientOptions patient() {
  ring::RingClientOptions options;
  options.dead_after = std::chrono::minutes(10);  // held handlers stop their shard's heartbeat on purpose
  return options;
}

struct Rig : gpubridge::testing::ring_support::CpuRingRig {
  explicit Rig(const ring::RingConfig& config, ring::RingClientOptions options = {})
      : CpuRingRig(config, [](Gate* g) { return make_handlers(g, 1); }, options) {}
  // Activates every actor id in order (ids 0..n-1: actor i is on shard i % kShards).
  std::vector<std::uint32_t> activate_all(std::uint32_t n) {
    std::vector<std::uint32_t> ids;
    for (std::uint32_t i = 0; i < n; ++i) ids.push_back(client->activate(kCounterType, {}, far_deadline()).value());
    return ids;
  }
  Result<ring::Reply> call(std::uint32_t actor, std::uint32_t handler, std::span<const std::byte> payload,
                           ring::SendOptions options = {}) {
    auto sent = client->send(actor, handler, payload, far_deadline(), options);
    if (!sent) return sent.error();
    return sent->get();
  }
  std::uint64_t counter(std::uint32_t actor) { return u64_of(call(actor, kAdd, bytes_of(0)).value()); }
  // The state the server left in the block (read once it has stopped).
  std::uint64_t block_counter(std::uint32_t actor) const {
    const ring::RingHeader& h = memory->header();
    const auto* table = reinterpret_cast<const ring::ActorEntry*>(memory->base() + h.actor_table_offset);
    std::uint64_t value = 0;
    std::memcpy(&value, memory->base() + table[actor].state_offset, sizeof value);
    return value;
  }
};

TEST(RingShardsTest, ShardsAreValidatedAndLaidOutPerShard) {
  for (std::uint32_t bad : {0u, ring::kMaxShards + 1}) {
    ring::RingConfig config = sharded_config(8);
    config.shards = bad;
    auto memory = ring::RingMemory::create(config);
    ASSERT_FALSE(memory.ok());
    EXPECT_EQ(memory.error().code(), ErrorCode::invalid_argument);
    EXPECT_THAT(memory.error().message(), HasSubstr("shards = " + std::to_string(bad) + " is outside 1..64"));
  }
  auto memory = ring::RingMemory::create(sharded_config(16)).value();
  const ring::RingHeader& h = memory->header();
  EXPECT_EQ(h.version, ring::kRingVersion);
  EXPECT_EQ(memory->shard_count(), kShards);
  EXPECT_EQ(h.request_capacity, 16u);  // per shard
  std::vector<std::uint64_t> offsets;
  for (std::uint32_t s = 0; s < kShards; ++s) {
    const ring::RingShardHeader& shard = memory->shard(s);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(&shard) % ring::kRegionAlignment, 0u);
    EXPECT_EQ(reinterpret_cast<const std::byte*>(&shard) - memory->base(),
              static_cast<std::ptrdiff_t>(h.shard_table_offset + s * sizeof(ring::RingShardHeader)));
    for (std::uint64_t offset : {shard.request_slots_offset, shard.completion_slots_offset}) {
      EXPECT_EQ(offset % ring::kRegionAlignment, 0u);
      EXPECT_LT(offset, h.actor_table_offset);
      offsets.push_back(offset);
    }
    const auto* slots = reinterpret_cast<const ring::RingSlot*>(memory->base() + shard.request_slots_offset);
    for (std::uint32_t i = 0; i < 16; ++i) EXPECT_EQ(slots[i].turn, i);
  }
  std::sort(offsets.begin(), offsets.end());
  for (std::size_t i = 1; i < offsets.size(); ++i) EXPECT_GE(offsets[i] - offsets[i - 1], 16u * ring::kSlotBytes);
  EXPECT_EQ(ring::shard_of(0, 4), 0u);
  EXPECT_EQ(ring::shard_of(7, 4), 3u);
  EXPECT_EQ(ring::shard_of(7, 1), 0u);
}

TEST(RingShardsTest, ManyProducersOverManyActorsCompleteExactlyOnce) {
  Rig rig(sharded_config(64));
  const std::vector<std::uint32_t> actors = rig.activate_all(16);
  constexpr std::uint64_t kThreads = 8;
  constexpr std::uint64_t kPerThread = 10'000;
  constexpr std::uint64_t kTotal = kThreads * kPerThread;
  const ExactlyOnce sent = send_from_producers(kThreads, kPerThread, [&](std::uint64_t id, const auto& payload, auto& done) {
    return rig.client
        ->send_async(actors[id % actors.size()], kReverse, payload, far_deadline(),
                     [&done, id, payload](Result<ring::Reply> reply) {
                       done(id, reply.ok() && *reply == std::vector<std::byte>(payload.rbegin(), payload.rend()));
                     })
        .ok();
  });
  EXPECT_EQ(sent.wrong, 0u);
  EXPECT_EQ(sent.missing_or_duplicated, 0u);
  // Every shard carried its actors' messages: 4 actors each, 1/4 of the traffic plus activations.
  for (std::uint32_t s = 0; s < kShards; ++s) {
    EXPECT_EQ(std::atomic_ref<std::uint64_t>(rig.memory->shard(s).request_dequeue).load(), kTotal / kShards + 4)
        << "shard " << s;
  }
  const ring::RingServerStats stats = rig.server->stats();
  EXPECT_EQ(stats.host_messages, kTotal + 16);
  EXPECT_EQ(stats.completions, kTotal + 16);
  EXPECT_EQ(rig.client->pending_calls(), 0u);
}

TEST(RingShardsTest, EveryShardWrapsAroundItsOwnRing) {
  Rig rig(sharded_config(4, 4));
  const std::vector<std::uint32_t> actors = rig.activate_all(4);  // one per shard
  constexpr std::uint64_t kRounds = 2'000;  // 1,500 laps of each 4-slot ring
  for (std::uint64_t round = 0; round < kRounds; ++round) {
    std::vector<std::future<Result<ring::Reply>>> burst;
    for (std::uint32_t actor : actors) {
      for (int i = 0; i < 3; ++i) burst.push_back(rig.client->send(actor, kAdd, {}, far_deadline()).value());
    }
    for (auto& f : burst) ASSERT_TRUE(f.get().ok());
  }
  for (std::uint32_t actor : actors) EXPECT_EQ(rig.counter(actor), 3 * kRounds);
  for (std::uint32_t s = 0; s < kShards; ++s) {
    EXPECT_GT(std::atomic_ref<std::uint64_t>(rig.memory->shard(s).request_enqueue).load(), 4u * 1'500u);
  }
}

// One shard held and its ring full: its actors' sends fail or wait, the other shards keep serving.
TEST(RingShardsTest, AFullShardRingDoesNotStopTheOtherShards) {
  Rig rig(sharded_config(8, 8), patient());
  const std::vector<std::uint32_t> actors = rig.activate_all(8);
  const std::uint32_t held = actors[0];   // shard 0
  const std::uint32_t other = actors[1];  // shard 1
  std::vector<std::future<Result<ring::Reply>>> queued;
  queued.push_back(rig.client->try_send(held, kHold, {}).value());
  rig.gate.wait_entered(1);
  // The CPU server frees a request's slot once its handler returns: 7 more fill the 8 slots.
  for (int i = 0; i < 7; ++i) queued.push_back(rig.client->try_send(held, kAdd, {}).value());
  auto full = rig.client->try_send(actors[4], kAdd, {});  // also shard 0
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code(), ErrorCode::resource_exhausted);
  EXPECT_THAT(full.error().message(), HasSubstr("ring full"));
  for (std::uint64_t i = 1; i <= 100; ++i) EXPECT_EQ(rig.counter(other), 0u) << i;  // shard 1 serves meanwhile
  EXPECT_EQ(u64_of(rig.call(other, kAdd, {}).value()), 1u);
  rig.gate.open();
  for (std::size_t i = 0; i < queued.size(); ++i) {
    Result<ring::Reply> reply = queued[i].get();
    ASSERT_TRUE(reply.ok()) << reply.error().to_string();
    if (i > 0) {
      EXPECT_EQ(u64_of(*reply), i);  // in order on the held shard
    }
  }
}

TEST(RingShardsTest, LargePayloadsOnEveryShard) {
  Rig rig(sharded_config(16, 4));
  const std::vector<std::uint32_t> actors = rig.activate_all(4);
  for (std::uint32_t actor : actors) {
    for (std::size_t size : {std::size_t{0}, ring::kInlinePayloadBytes, ring::kInlinePayloadBytes + 1, std::size_t{4097},
                             std::size_t{1} << 20}) {
      std::vector<std::byte> payload(size);
      for (std::size_t i = 0; i < size; ++i) payload[i] = static_cast<std::byte>((i * 13 + actor) & 0xFF);
      ring::SendOptions options;
      options.reply_capacity = static_cast<std::uint32_t>(size);
      auto reply = rig.call(actor, kReverse, payload, options);
      ASSERT_TRUE(reply.ok()) << actor << "/" << size << ": " << reply.error().to_string();
      std::reverse(payload.begin(), payload.end());
      EXPECT_EQ(*reply, payload) << "actor " << actor << " size " << size;
    }
  }
}

TEST(RingShardsTest, CrossShardPostsAndForwardChainsAnswerTheHost) {
  Rig rig(sharded_config(16, 8));
  const std::vector<std::uint32_t> a = rig.activate_all(8);  // a[i] on shard i % 4
  // A chain over every shard, twice: it answers the host only at its end (from shard 3's ring).
  auto chain = rig.call(a[0], kRelay, words({a[1], a[2], a[3], a[4], a[5], a[6], a[7]}));
  ASSERT_TRUE(chain.ok()) << chain.error().to_string();
  EXPECT_EQ(u64_of(*chain), 7u);      // hops
  EXPECT_EQ(u64_of(*chain, 8), 1u);   // a[7]'s counter
  for (std::uint32_t id : a) EXPECT_EQ(rig.counter(id), 1u) << id;  // every hop ran before the reply
  EXPECT_GT(std::atomic_ref<std::uint64_t>(rig.memory->shard(3).completion_enqueue).load(), 0u);

  // Posts to another shard run asynchronously there: every one of them, exactly once.
  std::vector<std::future<Result<ring::Reply>>> posting;
  for (int round = 0; round < 50; ++round) {
    for (std::uint32_t from = 0; from < 4; ++from) {
      posting.push_back(rig.client->send(a[from], kPostAdds, words({a[(from + 1) % 4], 10}), far_deadline()).value());
    }
  }
  for (auto& f : posting) ASSERT_TRUE(f.get().ok());
  for (std::uint32_t i = 0; i < 4; ++i) {
    while (rig.counter(a[i]) < 1 + 500) std::this_thread::yield();
    EXPECT_EQ(rig.counter(a[i]), 1u + 500u);
  }
  const ring::RingServerStats stats = rig.server->stats();
  EXPECT_EQ(stats.internal_messages, 7u + 2000u);
  EXPECT_EQ(stats.internal_failures, 0u);
  EXPECT_GE(stats.internal_queue_peak, 10u);
}

TEST(RingShardsTest, DrainWhileBusyFinishesEveryShardsMessagesAndChains) {
  Rig rig(sharded_config(64, 8), patient());
  const std::vector<std::uint32_t> a = rig.activate_all(8);
  auto held = rig.client->try_send(a[2], kHold, {}).value();  // shard 2 held
  rig.gate.wait_entered(1);
  std::vector<std::future<Result<ring::Reply>>> queued;
  for (int i = 0; i < 20; ++i) {
    for (std::uint32_t s = 0; s < 4; ++s) queued.push_back(rig.client->try_send(a[s], kAdd, {}).value());
  }
  // Posts into the held shard and a chain crossing it: drain must wait for both.
  auto posted = rig.client->try_send(a[1], kPostAdds, words({a[6], 100})).value();
  auto relayed = rig.client->try_send(a[0], kRelay, words({a[2], a[5], a[6], a[3]})).value();
  rig.server->request_drain();
  auto refused = rig.client->try_send(a[0], kAdd, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::unavailable);
  rig.gate.open();
  rig.server->wait();
  EXPECT_TRUE(held.get().ok());
  for (auto& f : queued) {
    Result<ring::Reply> reply = f.get();
    ASSERT_TRUE(reply.ok()) << reply.error().to_string();
  }
  EXPECT_TRUE(posted.get().ok());
  auto chain = relayed.get();
  ASSERT_TRUE(chain.ok()) << chain.error().to_string();
  EXPECT_EQ(u64_of(*chain), 4u);
  EXPECT_EQ(rig.block_counter(a[0]), 21u);
  EXPECT_EQ(rig.block_counter(a[1]), 20u);
  EXPECT_EQ(rig.block_counter(a[2]), 21u);
  EXPECT_EQ(rig.block_counter(a[3]), 21u);
  EXPECT_EQ(rig.block_counter(a[5]), 1u);
  EXPECT_EQ(rig.block_counter(a[6]), 101u);
  EXPECT_EQ(rig.server->stats().internal_messages, 100u + 4u);
  EXPECT_EQ(ring::ServerState::stopped,
            static_cast<ring::ServerState>(std::atomic_ref<std::uint32_t>(rig.memory->header().server_state).load()));
}

TEST(RingShardsTest, StopCancelsWhatIsQueuedOnEveryShard) {
  Rig rig(sharded_config(64, 4), patient());
  const std::vector<std::uint32_t> a = rig.activate_all(4);
  std::vector<std::future<Result<ring::Reply>>> held;
  for (std::uint32_t actor : a) held.push_back(rig.client->try_send(actor, kHold, {}).value());
  rig.gate.wait_entered(4);  // every shard is in a handler
  std::vector<std::future<Result<ring::Reply>>> queued;
  for (int i = 0; i < 10; ++i) {
    for (std::uint32_t actor : a) queued.push_back(rig.client->try_send(actor, kAdd, {}).value());
  }
  rig.server->request_stop();
  rig.gate.open();
  rig.server->wait();
  for (auto& f : held) EXPECT_TRUE(f.get().ok());  // the messages in progress finish
  for (auto& f : queued) {
    Result<ring::Reply> reply = f.get();
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.error().code(), ErrorCode::cancelled);
    EXPECT_THAT(reply.error().message(), HasSubstr("stopped"));
  }
  EXPECT_EQ(rig.server->messages_served(), 4u + 4u + 40u);
  for (std::uint32_t actor : a) EXPECT_EQ(rig.block_counter(actor), 0u);
}

TEST(RingShardsTest, HotReloadWhileBusyReachesEveryShardInOrder) {
  Rig rig(sharded_config(32, 4));
  const std::vector<std::uint32_t> a = rig.activate_all(4);
  std::mutex order_mutex;
  std::map<std::uint32_t, std::vector<std::pair<std::uint64_t, std::uint64_t>>> order;  // actor -> (counter, version)
  std::atomic<std::uint64_t> completed{0}, failed{0};
  constexpr std::uint64_t kPerThread = 2'000;
  auto produce = [&] {
    for (std::uint64_t i = 0; i < kPerThread; ++i) {
      const std::uint32_t actor = a[i % a.size()];
      gpubridge::Status sent = rig.client->send_async(actor, kAdd, {}, far_deadline(), [&, actor](Result<ring::Reply> reply) {
        if (reply.ok()) {
          std::lock_guard lock(order_mutex);
          order[actor].emplace_back(u64_of(*reply), u64_of(*reply, 8));
        } else {
          failed.fetch_add(1);
        }
        completed.fetch_add(1);
      });
      if (!sent) failed.fetch_add(1);
    }
  };
  std::thread p1(produce), p2(produce);
  while (completed.load() < kPerThread / 2) std::this_thread::yield();
  rig.server->reload(make_handlers(&rig.gate, 2));
  p1.join();
  p2.join();
  std::thread p3(produce);  // after the reload returned: every shard serves them with the new table
  p3.join();
  while (completed.load() < 3 * kPerThread) std::this_thread::yield();
  EXPECT_EQ(failed.load(), 0u);
  std::lock_guard lock(order_mutex);
  for (std::uint32_t actor : a) {
    const auto& seen = order[actor];
    ASSERT_EQ(seen.size(), 3 * kPerThread / a.size());
    bool reloaded = false;
    for (std::size_t i = 0; i < seen.size(); ++i) {
      EXPECT_EQ(seen[i].first, i + 1) << "actor " << actor << ": state lost or a message lost/duplicated at " << i;
      if (seen[i].second == 2) reloaded = true;
      ASSERT_EQ(seen[i].second, reloaded ? 2u : 1u) << "actor " << actor << ": old handler after the new one at " << i;
    }
    EXPECT_EQ(seen.back().second, 2u) << "actor " << actor;
  }
}

TEST(RingShardsTest, ATrapInOneShardKillsEveryShard) {
  ring::RingClientOptions options;
  options.dead_after = std::chrono::milliseconds(300);
  Rig rig(sharded_config(8, 4), options);
  const std::vector<std::uint32_t> a = rig.activate_all(4);
  auto trapped = rig.client->try_send(a[2], kTrap, {}).value();
  Result<ring::Reply> trap_reply = trapped.get();
  ASSERT_FALSE(trap_reply.ok());
  EXPECT_EQ(trap_reply.error().code(), ErrorCode::unavailable);
  EXPECT_THAT(trap_reply.error().message(), HasSubstr("ring server dead"));
  // Every shard's thread has left: the heartbeats stand still and nothing is served any more.
  std::vector<std::uint64_t> beats;
  for (std::uint32_t s = 0; s < kShards; ++s) beats.push_back(std::atomic_ref<std::uint64_t>(rig.memory->shard(s).heartbeat).load());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (std::uint32_t s = 0; s < kShards; ++s) {
    EXPECT_EQ(std::atomic_ref<std::uint64_t>(rig.memory->shard(s).heartbeat).load(), beats[s]) << "shard " << s;
  }
  auto after = rig.client->try_send(a[0], kAdd, {});
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code(), ErrorCode::unavailable);
  EXPECT_NE(ring::ServerState::stopped,
            static_cast<ring::ServerState>(std::atomic_ref<std::uint32_t>(rig.memory->header().server_state).load()));
}

// A fresh client over a dead server's other shards: calls there fail too, never hang.
TEST(RingShardsTest, CallsToOtherShardsOfATrappedServerFailInsteadOfHanging) {
  ring::RingClientOptions options;
  options.dead_after = std::chrono::milliseconds(300);
  Rig rig(sharded_config(8, 4), options);
  const std::vector<std::uint32_t> a = rig.activate_all(4);
  ASSERT_FALSE(rig.call(a[1], kTrap, {}).ok());
  rig.client.reset();
  rig.client = std::move(ring::RingClient::create(*rig.memory, options).value());
  auto other = rig.client->try_send(a[3], kAdd, {});
  ASSERT_TRUE(other.ok());
  Result<ring::Reply> reply = other->get();
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().code(), ErrorCode::unavailable);
  EXPECT_THAT(reply.error().message(), HasSubstr("ring server dead"));
}

}  // namespace
