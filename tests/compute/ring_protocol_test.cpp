// Ring protocol on the CPU server: configuration errors, layout, wrap-around, full ring,
// many producers (exactly-once delivery), large payloads through the pool, bad messages.
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
constexpr std::uint32_t kEcho = 1;     // counts the message in the actor state, echoes the payload
constexpr std::uint32_t kReverse = 2;  // replies with the payload reversed
constexpr std::uint32_t kBlock = 3;    // waits on the test's gate
constexpr std::uint32_t kFail = 4;     // returns an error
constexpr std::uint32_t kOverclaim = 5;  // reports more reply bytes than it may write

ring::HandlerTable make_handlers(Gate* gate) {
  ring::HandlerTable table;
  EXPECT_TRUE(table.add(counting_echo(kEcho, kCounterType)));
  EXPECT_TRUE(table.add(reversing(kReverse, kCounterType)));
  EXPECT_TRUE(table.add(waiting_on(kBlock, kCounterType, gate)));
  EXPECT_TRUE(table.add({kFail, kCounterType, [](std::span<std::byte>, std::span<const std::byte>,
                                                  std::span<std::byte>) -> Result<std::size_t> {
                           return gpubridge::Error(ErrorCode::out_of_range, "value out of range");
                         }}));
  EXPECT_TRUE(table.add({kOverclaim, kCounterType, [](std::span<std::byte>, std::span<const std::byte>,
                                                       std::span<std::byte> out) -> Result<std::size_t> {
                           return out.size() + 1;
                         }}));
  return table;
}

ring::RingConfig small_config(std::uint32_t slots, std::uint32_t actors = 4) {
  ring::RingConfig config;
  config.request_slots = slots;
  config.completion_slots = slots;
  config.pool_chunk_bytes = 4096;
  config.pool_chunks = 640;  // 2.5 MiB: a 1 MiB payload and its 1 MiB reply fit
  config.actor_types = {{kCounterType, 64, actors}};
  return config;
}

// Memory, server and client in destruction-safe order (client first, then server, then memory).
struct Rig : gpubridge::testing::ring_support::CpuRingRig {
  explicit Rig(const ring::RingConfig& config, ring::RingClientOptions options = {}, bool start = true)
      : CpuRingRig(config, [](Gate* g) { return make_handlers(g); }, options, start) {}
  std::uint32_t activate() { return client->activate(kCounterType, {}, far_deadline()).value(); }
  std::uint64_t deactivate_count(std::uint32_t actor) {
    return u64_of(client->deactivate(actor, far_deadline()).value());
  }
};

TEST(RingConfigTest, RejectsBadGeometryWithClearErrors) {
  auto expect_invalid = [](ring::RingConfig config, const char* text) {
    auto memory = ring::RingMemory::create(config);
    ASSERT_FALSE(memory.ok()) << text;
    EXPECT_EQ(memory.error().code(), ErrorCode::invalid_argument);
    EXPECT_THAT(memory.error().message(), HasSubstr(text));
  };
  ring::RingConfig config = small_config(8);
  config.request_slots = 0;
  expect_invalid(config, "zero-sized ring");
  config = small_config(8);
  config.completion_slots = 0;
  expect_invalid(config, "zero-sized ring");
  config = small_config(8);
  config.request_slots = 12;
  expect_invalid(config, "not a power of two");
  config = small_config(8);
  config.completion_slots = 1;
  expect_invalid(config, "not a power of two");
  config = small_config(8);
  config.pool_chunk_bytes = 100;
  expect_invalid(config, "multiple of 64");
  config = small_config(8);
  config.actor_types.push_back({kCounterType, 8, 1});
  expect_invalid(config, "duplicate actor type");
  config = small_config(8);
  config.actor_types = {{7, 0, 1}};
  expect_invalid(config, "zero state size");
}

TEST(RingConfigTest, HandlerTableRejectsReservedDuplicateAndEmpty) {
  ring::HandlerTable table;
  auto noop = [](std::span<std::byte>, std::span<const std::byte>, std::span<std::byte>) -> Result<std::size_t> {
    return std::size_t{0};
  };
  ASSERT_TRUE(table.add({1, kCounterType, noop}));
  auto dup = table.add({1, kCounterType, noop});
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), ErrorCode::already_exists);
  auto reserved = table.add({ring::kActivateHandler, kCounterType, noop});
  ASSERT_FALSE(reserved);
  EXPECT_EQ(reserved.error().code(), ErrorCode::invalid_argument);
  auto empty = table.add({2, kCounterType, {}});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(table.size(), 1u);
  EXPECT_NE(table.find(1), nullptr);
  EXPECT_EQ(table.find(2), nullptr);
}

TEST(RingLayoutTest, RegionsAreAlignedAndSlotsStartAtTheirIndex) {
  auto memory = ring::RingMemory::create(small_config(16)).value();
  const ring::RingHeader& h = memory->header();
  EXPECT_EQ(h.magic, ring::kRingMagic);
  EXPECT_EQ(h.request_capacity, 16u);
  EXPECT_EQ(h.actor_count, 4u);
  EXPECT_EQ(h.shard_count, 1u);
  const ring::RingShardHeader& shard = memory->shard(0);
  for (std::uint64_t offset : {h.shard_table_offset, shard.request_slots_offset, shard.completion_slots_offset,
                               h.actor_table_offset, h.pool_offset}) {
    EXPECT_EQ(offset % ring::kRegionAlignment, 0u);
    EXPECT_LT(offset, h.total_bytes);
  }
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(memory->base()) % ring::kRegionAlignment, 0u);
  const auto* slots = reinterpret_cast<const ring::RingSlot*>(memory->base() + shard.request_slots_offset);
  for (std::uint32_t i = 0; i < 16; ++i) EXPECT_EQ(slots[i].turn, i);
  EXPECT_EQ(memory->max_payload_bytes(), 4096u * 640u);
}

TEST(RingProtocolTest, WrapsAroundOverManyLaps) {
  Rig rig(small_config(4));
  const std::uint32_t actor = rig.activate();
  constexpr std::uint64_t kMessages = 10'000;  // 2,500 laps of a 4-slot ring
  std::uint64_t sent = 0;
  while (sent < kMessages) {
    std::vector<std::pair<std::uint64_t, std::future<Result<ring::Reply>>>> burst;
    for (int i = 0; i < 3 && sent < kMessages; ++i, ++sent) {
      auto payload = bytes_of(sent * 7 + 1);
      burst.emplace_back(sent, rig.client->send(actor, kEcho, payload, far_deadline()).value());
    }
    for (auto& [n, future] : burst) {
      Result<ring::Reply> reply = future.get();
      ASSERT_TRUE(reply.ok()) << reply.error().to_string();
      ASSERT_EQ(u64_of(*reply), n * 7 + 1);
    }
  }
  EXPECT_EQ(rig.deactivate_count(actor), kMessages);
  EXPECT_GT(rig.memory->shard(0).request_enqueue, 4u * 2'000u);
}

TEST(RingProtocolTest, FullRingFailsTrySendAndTimesOutSend) {
  ring::RingClientOptions options;
  options.dead_after = std::chrono::minutes(10);  // the blocked handler stops heartbeats on purpose
  Rig rig(small_config(8), options);
  const std::uint32_t actor = rig.activate();
  std::vector<std::future<Result<ring::Reply>>> queued;
  queued.push_back(rig.client->try_send(actor, kBlock, {}).value());  // occupies its slot until the gate opens
  for (int i = 0; i < 7; ++i) queued.push_back(rig.client->try_send(actor, kEcho, bytes_of(i)).value());

  auto full = rig.client->try_send(actor, kEcho, bytes_of(99));
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code(), ErrorCode::resource_exhausted);
  EXPECT_THAT(full.error().message(), HasSubstr("ring full"));

  auto late = rig.client->send(actor, kEcho, bytes_of(99), Clock::now() + std::chrono::milliseconds(20));
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code(), ErrorCode::deadline_exceeded);

  // A sender waiting with a distant deadline gets in once the ring moves.
  std::thread waiter([&] {
    auto reply = rig.client->send(actor, kEcho, bytes_of(1234), far_deadline());
    ASSERT_TRUE(reply.ok());
    EXPECT_EQ(u64_of(reply->get().value()), 1234u);
  });
  rig.gate.open();
  waiter.join();
  for (std::size_t i = 0; i < queued.size(); ++i) {
    Result<ring::Reply> reply = queued[i].get();
    ASSERT_TRUE(reply.ok()) << reply.error().to_string();
    if (i > 0) {
      EXPECT_EQ(u64_of(*reply), i - 1);
    }
  }
  EXPECT_EQ(rig.deactivate_count(actor), 8u);  // 7 queued echoes and the waiter's
}

TEST(RingProtocolTest, ManyProducersEveryMessageCompletesExactlyOnce) {
  Rig rig(small_config(64));
  constexpr std::uint32_t kActors = 4;
  std::vector<std::uint32_t> actors;
  for (std::uint32_t i = 0; i < kActors; ++i) actors.push_back(rig.activate());

  constexpr std::uint64_t kThreads = 8;
  constexpr std::uint64_t kPerThread = 20'000;
  constexpr std::uint64_t kTotal = kThreads * kPerThread;
  const ExactlyOnce sent = echo_from_producers(*rig.client, actors, kEcho, kThreads, kPerThread);
  EXPECT_EQ(sent.wrong, 0u);
  EXPECT_EQ(sent.missing_or_duplicated, 0u);
  std::uint64_t counted = 0;
  for (std::uint32_t actor : actors) counted += rig.deactivate_count(actor);
  EXPECT_EQ(counted, kTotal);  // the server ran every message exactly once
  EXPECT_EQ(rig.client->pending_calls(), 0u);
}

TEST(RingProtocolTest, LargePayloadsTravelThroughThePool) {
  Rig rig(small_config(16));
  const std::uint32_t actor = rig.activate();
  const std::size_t inline_limit = ring::kInlinePayloadBytes;
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, inline_limit - 1, inline_limit, inline_limit + 1,
                           std::size_t{4095}, std::size_t{4096}, std::size_t{4097}, std::size_t{65536},
                           std::size_t{1} << 20}) {
    std::vector<std::byte> payload(size);
    for (std::size_t i = 0; i < size; ++i) payload[i] = static_cast<std::byte>((i * 31 + size) & 0xFF);
    ring::SendOptions options;
    options.reply_capacity = static_cast<std::uint32_t>(size);
    auto reply = rig.client->send(actor, kReverse, payload, far_deadline(), options).value().get();
    ASSERT_TRUE(reply.ok()) << size << ": " << reply.error().to_string();
    std::reverse(payload.begin(), payload.end());
    EXPECT_EQ(*reply, payload) << "size " << size;
  }
  // A reply larger than its capacity is the handler's error, not a truncation.
  std::vector<std::byte> big(1000, std::byte{1});
  auto small_reply = rig.client->send(actor, kReverse, big, far_deadline()).value().get();
  ASSERT_FALSE(small_reply.ok());
  EXPECT_EQ(small_reply.error().code(), ErrorCode::resource_exhausted);
  // Every pool chunk came back: the largest message fits again.
  std::vector<std::byte> whole(rig.memory->max_payload_bytes(), std::byte{2});
  auto again = rig.client->send(actor, kEcho, whole, far_deadline(), {}).value().get();
  EXPECT_EQ(again.ok(), false);  // echo of 2.5 MiB into a 200-byte reply: handler says too small
  EXPECT_EQ(again.error().code(), ErrorCode::resource_exhausted);
}

TEST(RingProtocolTest, PayloadTooLargeAndPoolExhaustedAreClearErrors) {
  ring::RingConfig config = small_config(8);
  config.pool_chunks = 4;  // 16 KiB pool
  ring::RingClientOptions options;
  options.dead_after = std::chrono::minutes(10);
  Rig rig(config, options);
  const std::uint32_t actor = rig.activate();

  std::vector<std::byte> too_big(4 * 4096 + 1);
  auto rejected = rig.client->try_send(actor, kEcho, too_big);
  ASSERT_FALSE(rejected.ok());
  EXPECT_EQ(rejected.error().code(), ErrorCode::invalid_argument);
  EXPECT_THAT(rejected.error().message(), HasSubstr("exceeds the ring's largest payload"));
  ring::SendOptions huge_reply;
  huge_reply.reply_capacity = 4 * 4096 + 1;
  auto rejected_reply = rig.client->try_send(actor, kEcho, {}, huge_reply);
  ASSERT_FALSE(rejected_reply.ok());
  EXPECT_EQ(rejected_reply.error().code(), ErrorCode::invalid_argument);

  auto blocked = rig.client->try_send(actor, kBlock, std::vector<std::byte>(4 * 4096)).value();  // whole pool
  auto exhausted = rig.client->try_send(actor, kEcho, std::vector<std::byte>(300));
  ASSERT_FALSE(exhausted.ok());
  EXPECT_EQ(exhausted.error().code(), ErrorCode::resource_exhausted);
  EXPECT_THAT(exhausted.error().message(), HasSubstr("payload pool exhausted"));
  auto timed_out = rig.client->send(actor, kEcho, std::vector<std::byte>(300),
                                    Clock::now() + std::chrono::milliseconds(20));
  ASSERT_FALSE(timed_out.ok());
  EXPECT_EQ(timed_out.error().code(), ErrorCode::deadline_exceeded);
  rig.gate.open();
  EXPECT_TRUE(blocked.get().ok());
  ring::SendOptions reply300;
  reply300.reply_capacity = 300;
  auto fits = rig.client->send(actor, kEcho, std::vector<std::byte>(300, std::byte{5}), far_deadline(), reply300);
  ASSERT_TRUE(fits.ok());
  EXPECT_EQ(fits->get().value(), std::vector<std::byte>(300, std::byte{5}));
}

TEST(RingProtocolTest, BadMessagesGetClearErrors) {
  ring::RingConfig config = small_config(8);
  config.actor_types.push_back({2, 16, 1});  // another type, for the type mismatch
  Rig rig(config);
  const std::uint32_t actor = rig.activate();
  auto expect = [&](std::uint32_t to, std::uint32_t handler, ErrorCode code, const char* text) {
    auto reply = rig.client->send(to, handler, bytes_of(1), far_deadline()).value().get();
    ASSERT_FALSE(reply.ok()) << text;
    EXPECT_EQ(reply.error().code(), code) << reply.error().to_string();
    EXPECT_THAT(reply.error().message(), HasSubstr(text));
  };
  expect(999, kEcho, ErrorCode::not_found, "unknown actor id 999");
  expect(actor, 777, ErrorCode::not_found, "unknown handler id 777");
  const std::uint32_t inactive = actor == 0 ? 1 : 0;
  expect(inactive, kEcho, ErrorCode::failed_precondition, "is not active");
  expect(actor, kFail, ErrorCode::out_of_range, "value out of range");
  expect(actor, kOverclaim, ErrorCode::internal, "more than the capacity");
  const std::uint32_t other = rig.client->activate(2, {}, far_deadline()).value();
  expect(other, kEcho, ErrorCode::invalid_argument, "serves actor type 1");

  auto reserved = rig.client->try_send(actor, ring::kDeactivateHandler, {});
  ASSERT_FALSE(reserved.ok());
  EXPECT_EQ(reserved.error().code(), ErrorCode::invalid_argument);
  // The actor is unharmed by its neighbours' errors.
  auto fine = rig.client->send(actor, kEcho, bytes_of(5), far_deadline()).value().get();
  ASSERT_TRUE(fine.ok());
  EXPECT_EQ(u64_of(*fine), 5u);
}

}  // namespace
