#pragma once
// The CUDA ring kernel's cases, written once for both of its servers: CudaRingServer on a device
// (cuda_ring_test, label gpu) and the same generated kernel compiled as host C++ and served on a
// thread (cuda_ring_host_test, label unit). Both serve cuda_ring_handlers.hpp's handlers against a
// real RingMemory block and the real RingClient. Each test binary includes this header once and
// instantiates the type-parameterized suite with its server adapter, e.g.
//   INSTANTIATE_TYPED_TEST_SUITE_P(CudaRingHostTest, CudaRingCases, ::HostRingServer);
// (an adapter at global scope gives CTest names like CudaRingHostTest.<case><HostRingServer>).
//
// A server adapter S (thread-safe as CudaRingServer) provides:
//   static Result<std::unique_ptr<S>> create(ring::RingMemory&, std::uint64_t handlers_version,
//                                            ring::CudaRingServerOptions);  // serves handlers(version)
//   S::Environment with void require(): run by each test's SetUp, skips (or fails) it when S cannot
//     run here; it lives as long as the test;
//   static constexpr std::size_t kLargestPayload (the largest message the large-payload case sends),
//     const char* kTrapError (in wait()'s error after kTrap killed the kernel) and std::uint32_t
//     kShards (the shards of the blocks the cases serve; every case holds with 1 and with several:
//     cases that rely on one shard's ordering pick actors of the same shard, activate_beside);
//   CudaRingServer's start, request_stop, request_drain, wait, kernel_status, messages_served,
//     stats, last_internal_error; Status reload(std::uint64_t handlers_version);
//   void wait_until_holding(): once the kHold message's request has been taken, returns when it is
//     known to be in its handler (the host harness sees the handler enter; a device kernel is not
//     observable, but it takes a request right before serving it);
//   void release_holds(): kHold handlers may return (a device's return on their own after
//     kDeviceHoldNanoseconds, so a case acts on a held device kernel within that time).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <future>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cuda_ring_handlers.hpp"
#include "gpubridge/compute/cuda_ring.hpp"
#include "gpubridge/compute/ring.hpp"
#include "gpubridge/core/result.hpp"
#include "ring_test_support.hpp"

namespace gpubridge::testing::cuda_ring {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

using ring_support::bytes_of;
using ring_support::words;
using ring_support::ExactlyOnce;
using ring_support::echo_from_producers;
using ring_support::far_deadline;
using ring_support::u64_of;

// For cases that hold the kernel: a held handler writes no heartbeat.
inline ring::RingClientOptions patient() {
  ring::RingClientOptions options;
  options.dead_after = std::chrono::minutes(10);
  return options;
}

// 640 chunks of 4 KiB: a 1 MiB payload and its 1 MiB reply fit. 8 counters: two per shard at 4 shards.
inline ring::RingConfig config_of(std::uint32_t slots, std::uint32_t pool_chunks = 640, std::uint32_t actors = 8) {
  ring::RingConfig config;
  config.request_slots = slots;
  config.completion_slots = slots;
  config.pool_chunk_bytes = 4096;
  config.pool_chunks = pool_chunks;
  config.actor_types = {{kCounterType, 64, actors}, {kOtherType, 16, 1}};
  return config;
}

// Memory, server (serving handlers(1), started) and client, torn down client first, then server
// (after releasing any held handler), then memory.
template <class Server>
struct RingRig {
  std::unique_ptr<ring::RingMemory> memory;
  std::unique_ptr<Server> server;
  std::unique_ptr<ring::RingClient> client;

  explicit RingRig(ring::RingConfig config, ring::RingClientOptions client_options = {},
                   ring::CudaRingServerOptions options = {}) {
    config.shards = Server::kShards;
    memory = std::move(ring::RingMemory::create(config).value());
    auto created = Server::create(*memory, 1, options);
    if (!created) {
      ADD_FAILURE() << created.error().to_string();
      return;
    }
    server = std::move(created).value();
    client = std::move(ring::RingClient::create(*memory, client_options).value());
    Status started = server->start();
    EXPECT_TRUE(started.ok()) << started.error().to_string();
  }
  ~RingRig() {
    if (server != nullptr) server->release_holds();
    client.reset();
    server.reset();
  }
  RingRig(const RingRig&) = delete;
  RingRig& operator=(const RingRig&) = delete;

  std::uint32_t activate() { return client->activate(kCounterType, {}, far_deadline()).value(); }
  // An active counter on the same shard as `actor` (others activated on the way stay active), for
  // cases that rely on one shard's ordering: its device-side messages run before its next host message.
  std::uint32_t activate_beside(std::uint32_t actor) {
    const std::uint32_t shards = memory->shard_count();
    for (;;) {
      const std::uint32_t next = activate();
      if (ring::shard_of(next, shards) == ring::shard_of(actor, shards)) return next;
    }
  }
  // Spins until `done()` holds (posts to other shards run asynchronously).
  template <class Predicate>
  static void wait_until(Predicate done) {
    while (!done()) std::this_thread::yield();
  }
  Result<ring::Reply> call(std::uint32_t actor, std::uint32_t handler, std::span<const std::byte> payload,
                           ring::SendOptions options = {}) {
    auto sent = client->send(actor, handler, payload, far_deadline(), options);
    if (!sent) return sent.error();
    return sent->get();
  }
  // The actor's counter, read through the kernel (kAdd of 0).
  std::uint64_t counter(std::uint32_t actor) { return u64_of(call(actor, kAdd, bytes_of(0)).value()); }
  std::uint64_t deactivate_count(std::uint32_t actor) {
    return u64_of(client->deactivate(actor, far_deadline()).value());
  }
  // The `requests_taken`-th request (1-based, in send order, over every shard) is a kHold message:
  // returns while it holds.
  void wait_until_holding(std::uint64_t requests_taken) {
    auto taken = [&] {
      std::uint64_t sum = 0;
      for (std::uint32_t s = 0; s < memory->shard_count(); ++s) {
        sum += std::atomic_ref<std::uint64_t>(memory->shard(s).request_dequeue).load(std::memory_order_acquire);
      }
      return sum;
    };
    while (taken() < requests_taken) std::this_thread::yield();
    server->wait_until_holding();
  }
  // An activated actor with a kHold message being served and `count` kCount messages queued behind it.
  struct Busy {
    std::uint32_t actor = 0;
    std::future<Result<ring::Reply>> held;
    std::vector<std::future<Result<ring::Reply>>> queued;
  };
  Busy hold_with_queue(int count) {
    Busy busy;
    busy.actor = activate();
    busy.held = client->try_send(busy.actor, kHold, {}).value();
    for (int i = 0; i < count; ++i) busy.queued.push_back(client->try_send(busy.actor, kCount, {}).value());
    wait_until_holding(2);
    return busy;
  }
  const ring::ActorEntry& block_entry(std::uint32_t actor) const {
    const ring::RingHeader& h = memory->header();
    return reinterpret_cast<const ring::ActorEntry*>(memory->base() + h.actor_table_offset)[actor];
  }
  // The state the kernel copied back into the block when it finished.
  std::uint64_t block_counter(std::uint32_t actor) const {
    std::uint64_t value = 0;
    std::memcpy(&value, memory->base() + block_entry(actor).state_offset, sizeof value);
    return value;
  }
};

template <class Server>
class CudaRingCases : public ::testing::Test {
 protected:
  using Rig = RingRig<Server>;
  void SetUp() override { environment_.require(); }

 private:
  typename Server::Environment environment_;
};

TYPED_TEST_SUITE_P(CudaRingCases);

// ---- protocol (ring_protocol_test.cpp's cases) ----

TYPED_TEST_P(CudaRingCases, OptionsAndBlockAreValidated) {
  auto memory = ring::RingMemory::create(config_of(8)).value();
  for (auto [slots, hops] : {std::pair{0u, 64u}, std::pair{1024u, 0u}, std::pair{ring::kMaxRingSlots + 1, 64u}}) {
    ring::CudaRingServerOptions options;
    options.internal_queue_slots = slots;
    options.max_hops = hops;
    auto created = TypeParam::create(*memory, 1, options);
    ASSERT_FALSE(created.ok());
    EXPECT_EQ(created.error().code(), ErrorCode::invalid_argument);
    EXPECT_THAT(created.error().message(), HasSubstr(slots == 1024u ? "max_hops" : "internal_queue_slots"));
  }
  const ring::CudaRingServerOptions defaults;
  EXPECT_EQ(defaults.internal_queue_slots, ring::CpuRingServerOptions{}.internal_queue_slots);
  EXPECT_EQ(defaults.max_hops, ring::CpuRingServerOptions{}.max_hops);

  ring::RingHeader& header = memory->header();
  const std::uint32_t magic = header.magic;
  header.magic = magic + 1;
  auto not_a_ring = TypeParam::create(*memory, 1, {});
  header.magic = magic;
  ASSERT_FALSE(not_a_ring.ok());
  EXPECT_EQ(not_a_ring.error().code(), ErrorCode::invalid_argument);
  EXPECT_THAT(not_a_ring.error().message(), HasSubstr("not a ring block"));
}

TYPED_TEST_P(CudaRingCases, RoundTripWrapsAroundOverManyLaps) {
  typename TestFixture::Rig rig(config_of(4));
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  constexpr std::uint64_t kMessages = 4'000;  // 1,000 laps of a 4-slot ring
  std::uint64_t sent = 0;
  while (sent < kMessages) {
    std::vector<std::pair<std::uint64_t, std::future<Result<ring::Reply>>>> burst;
    for (int i = 0; i < 3 && sent < kMessages; ++i, ++sent) {
      burst.emplace_back(sent, rig.client->send(actor, kEcho, bytes_of(sent * 7 + 1), far_deadline()).value());
    }
    for (auto& [n, future] : burst) {
      Result<ring::Reply> reply = future.get();
      ASSERT_TRUE(reply.ok()) << reply.error().to_string();
      ASSERT_EQ(u64_of(*reply), n * 7 + 1);
    }
  }
  EXPECT_EQ(rig.deactivate_count(actor), kMessages);
  EXPECT_EQ(rig.server->messages_served(), kMessages + 2);  // and the activation and deactivation
  const ring::RingServerStats stats = rig.server->stats();
  EXPECT_EQ(stats.host_messages, kMessages + 2);
  EXPECT_EQ(stats.completions, kMessages + 2);
  EXPECT_EQ(stats.internal_messages, 0u);
  EXPECT_TRUE(rig.server->kernel_status().ok());
}

TYPED_TEST_P(CudaRingCases, FullRingFailsTrySendAndTimesOutSend) {
  typename TestFixture::Rig rig(config_of(8), patient());
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  std::vector<std::future<Result<ring::Reply>>> queued;
  queued.push_back(rig.client->try_send(actor, kHold, {}).value());
  rig.wait_until_holding(2);  // the kernel took it: its slot is free again
  for (int i = 0; i < 8; ++i) queued.push_back(rig.client->try_send(actor, kEcho, bytes_of(i)).value());

  auto full = rig.client->try_send(actor, kEcho, bytes_of(99));
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code(), ErrorCode::resource_exhausted);
  EXPECT_THAT(full.error().message(), HasSubstr("ring full"));
  auto late = rig.client->send(actor, kEcho, bytes_of(99), Clock::now() + std::chrono::milliseconds(20));
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code(), ErrorCode::deadline_exceeded);

  std::thread waiter([&] {
    auto reply = rig.client->send(actor, kEcho, bytes_of(1234), far_deadline());
    ASSERT_TRUE(reply.ok());
    EXPECT_EQ(u64_of(reply->get().value()), 1234u);
  });
  rig.server->release_holds();
  waiter.join();
  for (std::size_t i = 0; i < queued.size(); ++i) {
    Result<ring::Reply> reply = queued[i].get();
    ASSERT_TRUE(reply.ok()) << reply.error().to_string();
    if (i > 0) {
      EXPECT_EQ(u64_of(*reply), i - 1);
    }
  }
  EXPECT_EQ(rig.deactivate_count(actor), 9u);  // 8 queued echoes and the waiter's
}

// The completion ring fills while the host's dispatcher is held in a callback: the server waits
// for the host to free slots (its dequeue counter) and loses nothing; every reply arrives once the
// dispatcher is let go.
TYPED_TEST_P(CudaRingCases, FullCompletionRingWaitsForTheHost) {
  typename TestFixture::Rig rig(config_of(4), patient());
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  std::promise<void> let_go;
  std::shared_future<void> go = let_go.get_future().share();
  struct LetGoAtExit {  // never leave the dispatcher held (the rig's teardown joins it)
    std::promise<void>& promise;
    bool done = false;
    void operator()() {
      if (!done) promise.set_value();
      done = true;
    }
    ~LetGoAtExit() { (*this)(); }
  } release{let_go};
  std::promise<void> held;
  auto holding = held.get_future();
  ASSERT_TRUE(rig.client
                  ->send_async(actor, kEcho, bytes_of(1), far_deadline(),
                               [go, &held](Result<ring::Reply> reply) {
                                 EXPECT_TRUE(reply.ok());
                                 held.set_value();
                                 go.wait();  // the dispatcher thread stays here
                               })
                  .ok());
  holding.wait();
  const std::uint64_t before = rig.server->stats().completions;
  // 4 completion slots and 4 request slots: four replies fill the completion ring, the server
  // holds the fifth while it waits, the last two stay queued.
  constexpr std::uint64_t kMore = 7;
  std::vector<std::future<Result<ring::Reply>>> replies;
  for (std::uint64_t i = 0; i < kMore; ++i) {
    replies.push_back(rig.client->send(actor, kEcho, bytes_of(100 + i), far_deadline()).value());
  }
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (rig.server->stats().completions < before + 4 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(rig.server->stats().completions, before + 4) << "a full ring of four completions, then a wait";
  release();
  for (std::uint64_t i = 0; i < kMore; ++i) {
    ASSERT_EQ(replies[i].wait_for(std::chrono::seconds(20)), std::future_status::ready) << "reply " << i << " lost";
    Result<ring::Reply> reply = replies[i].get();
    ASSERT_TRUE(reply.ok()) << reply.error().to_string();
    EXPECT_EQ(u64_of(*reply), 100 + i);
  }
  EXPECT_EQ(rig.server->stats().completions, before + kMore);
}

// With time_phases the kernel counts what it did - each host message served once, in takes and
// publishes of one or more - and how long it took; without it, nothing. Read after the kernel
// ended: a block writes its counts when it publishes and when it finishes.
TYPED_TEST_P(CudaRingCases, PhaseTimesCountWhatTheKernelDid) {
  for (const bool timed : {true, false}) {
    ring::CudaRingServerOptions options;
    options.time_phases = timed;
    typename TestFixture::Rig rig(config_of(8), {}, options);
    ASSERT_NE(rig.server, nullptr);
    const std::uint32_t actor = rig.activate();
    constexpr std::uint64_t kCalls = 50;
    for (std::uint64_t i = 0; i < kCalls; ++i) ASSERT_TRUE(rig.call(actor, kEcho, bytes_of(i)).ok());
    rig.server->request_stop();
    ASSERT_TRUE(rig.server->wait().ok());
    const ring::CudaRingPhaseTimes t = rig.server->phase_times();
    if (!timed) {
      EXPECT_EQ(t.served + t.takes + t.publishes + t.idle_polls, 0u);
      EXPECT_EQ(t.serve_ns + t.take_ns + t.publish_ns + t.idle_poll_ns, 0u);
      continue;
    }
    EXPECT_EQ(t.served, kCalls + 1);  // and the activation
    EXPECT_GE(t.takes, 1u);
    EXPECT_LE(t.takes, t.served);
    EXPECT_GE(t.publishes, 1u);
    EXPECT_LE(t.publishes, t.served);
    EXPECT_GE(t.idle_polls, 1u);
    EXPECT_GT(t.take_ns + t.serve_ns + t.publish_ns, 0u);
  }
}

TYPED_TEST_P(CudaRingCases, ManyProducersEveryMessageCompletesExactlyOnce) {
  typename TestFixture::Rig rig(config_of(64));
  ASSERT_NE(rig.server, nullptr);
  constexpr std::uint32_t kActors = 4;
  std::vector<std::uint32_t> actors;
  for (std::uint32_t i = 0; i < kActors; ++i) actors.push_back(rig.activate());
  constexpr std::uint64_t kThreads = 4;
  constexpr std::uint64_t kPerThread = 5'000;
  constexpr std::uint64_t kTotal = kThreads * kPerThread;
  const ExactlyOnce sent = echo_from_producers(*rig.client, actors, kEcho, kThreads, kPerThread);
  EXPECT_EQ(sent.wrong, 0u);
  EXPECT_EQ(sent.missing_or_duplicated, 0u);
  std::uint64_t counted = 0;
  for (std::uint32_t actor : actors) counted += rig.deactivate_count(actor);
  EXPECT_EQ(counted, kTotal);
}

TYPED_TEST_P(CudaRingCases, LargePayloadsTravelThroughThePool) {
  typename TestFixture::Rig rig(config_of(16));
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  const std::size_t inline_limit = ring::kInlinePayloadBytes;
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, inline_limit - 1, inline_limit, inline_limit + 1,
                           std::size_t{4095}, std::size_t{4096}, std::size_t{4097}, std::size_t{65536},
                           TypeParam::kLargestPayload}) {
    std::vector<std::byte> payload(size);
    for (std::size_t i = 0; i < size; ++i) payload[i] = static_cast<std::byte>((i * 31 + size) & 0xFF);
    ring::SendOptions options;
    options.reply_capacity = static_cast<std::uint32_t>(size);
    auto reply = rig.call(actor, kReverse, payload, options);
    ASSERT_TRUE(reply.ok()) << size << ": " << reply.error().to_string();
    std::reverse(payload.begin(), payload.end());
    EXPECT_EQ(*reply, payload) << "size " << size;
  }
  // A reply that does not fit the capacity the caller reserved is the handler's error.
  auto small_reply = rig.call(actor, kReverse, std::vector<std::byte>(1000, std::byte{1}));
  ASSERT_FALSE(small_reply.ok());
  EXPECT_EQ(small_reply.error().code(), ErrorCode::resource_exhausted);
  // Every pool chunk came back: the largest message fits again.
  std::vector<std::byte> whole(rig.memory->max_payload_bytes(), std::byte{2});
  auto again = rig.call(actor, kEcho, whole);
  ASSERT_FALSE(again.ok());  // echo of 2.5 MiB into a 200-byte reply: the handler refuses
  EXPECT_EQ(again.error().code(), ErrorCode::out_of_range);
}

TYPED_TEST_P(CudaRingCases, PoolExhaustedIsAClearErrorAndPoolPayloadsReachTheKernel) {
  typename TestFixture::Rig rig(config_of(8, 4), patient());  // 16 KiB pool
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  auto held = rig.client->try_send(actor, kHold, std::vector<std::byte>(4 * 4096)).value();  // whole pool
  auto exhausted = rig.client->try_send(actor, kEcho, std::vector<std::byte>(300));
  ASSERT_FALSE(exhausted.ok());
  EXPECT_EQ(exhausted.error().code(), ErrorCode::resource_exhausted);
  EXPECT_THAT(exhausted.error().message(), HasSubstr("payload pool exhausted"));
  rig.server->release_holds();
  EXPECT_TRUE(held.get().ok());
  ring::SendOptions reply300;
  reply300.reply_capacity = 300;
  auto fits = rig.call(actor, kEcho, std::vector<std::byte>(300, std::byte{5}), reply300);
  ASSERT_TRUE(fits.ok()) << fits.error().to_string();
  EXPECT_EQ(*fits, std::vector<std::byte>(300, std::byte{5}));
}

TYPED_TEST_P(CudaRingCases, BadMessagesGetClearErrors) {
  typename TestFixture::Rig rig(config_of(8));
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  auto expect = [&](std::uint32_t to, std::uint32_t handler, ErrorCode code, const char* text) {
    auto reply = rig.call(to, handler, bytes_of(1));
    ASSERT_FALSE(reply.ok()) << text;
    EXPECT_EQ(reply.error().code(), code) << reply.error().to_string();
    EXPECT_THAT(reply.error().message(), HasSubstr(text));
  };
  expect(999, kEcho, ErrorCode::not_found, "unknown actor id 999");
  expect(actor, 777, ErrorCode::not_found, "unknown handler id 777");
  const std::uint32_t inactive = actor == 0 ? 1 : 0;
  expect(inactive, kEcho, ErrorCode::failed_precondition, "is not active");
  expect(actor, kFail, ErrorCode::invalid_argument, "handler 4 failed with code 3: test_fail refuses every call");
  auto failed = rig.call(actor, kFailWithCode, words({8}));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code(), ErrorCode::resource_exhausted);
  EXPECT_THAT(failed.error().message(), HasSubstr("handler 6 failed with code 8: asked to fail"));
  failed = rig.call(actor, kFailWithCode, words({99}));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code(), ErrorCode::internal);
  EXPECT_THAT(failed.error().message(),
              HasSubstr("handler 6 failed with code 13: gb_ring_fail with code 99, not an ErrorCode: asked to fail"));
  expect(actor, kOverclaim, ErrorCode::internal, "more than the capacity");
  const std::uint32_t other = rig.client->activate(kOtherType, {}, far_deadline()).value();
  expect(other, kEcho, ErrorCode::invalid_argument, "serves actor type 1");
  auto other_echo = rig.call(other, kOtherTypeEcho, bytes_of(3));
  ASSERT_TRUE(other_echo.ok()) << other_echo.error().to_string();
  auto fine = rig.call(actor, kEcho, bytes_of(5));
  ASSERT_TRUE(fine.ok());
  EXPECT_EQ(u64_of(*fine), 5u);
  EXPECT_TRUE(rig.server->kernel_status().ok());
}

TYPED_TEST_P(CudaRingCases, DeactivationCopiesStateOutAndBackIn) {
  typename TestFixture::Rig rig(config_of(16));
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.client->activate(kCounterType, bytes_of(41), far_deadline()).value();
  EXPECT_EQ(u64_of(rig.call(actor, kCount, {}).value(), 8), 42u);
  Result<ring::Reply> state = rig.client->deactivate(actor, far_deadline());
  ASSERT_TRUE(state.ok()) << state.error().to_string();
  ASSERT_EQ(state->size(), 64u);  // the type's whole state
  EXPECT_EQ(u64_of(*state), 42u);
  auto gone = rig.call(actor, kCount, {});
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code(), ErrorCode::failed_precondition);
  const std::uint32_t again = rig.client->activate(kCounterType, *state, far_deadline()).value();
  EXPECT_EQ(u64_of(rig.call(again, kCount, {}).value(), 8), 43u);
  auto too_big = rig.client->activate(kCounterType, std::vector<std::byte>(65), far_deadline());
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().code(), ErrorCode::invalid_argument);
}

// ---- lifecycle (ring_lifecycle_test.cpp's cases) ----

TYPED_TEST_P(CudaRingCases, StopWhileBusyCancelsQueuedMessages) {
  typename TestFixture::Rig rig(config_of(64), patient());
  ASSERT_NE(rig.server, nullptr);
  auto busy = rig.hold_with_queue(40);

  rig.server->request_stop();
  auto refused = rig.client->try_send(busy.actor, kCount, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::unavailable);
  rig.server->release_holds();
  Status waited = rig.server->wait();
  EXPECT_TRUE(waited.ok()) << waited.error().to_string();

  EXPECT_TRUE(busy.held.get().ok());  // the message in progress finishes
  for (auto& f : busy.queued) {
    Result<ring::Reply> reply = f.get();
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.error().code(), ErrorCode::cancelled);
    EXPECT_THAT(reply.error().message(), HasSubstr("stopped"));
  }
  EXPECT_EQ(rig.server->messages_served(), 42u);  // activate, held, 40 cancelled
  auto restart = rig.server->start();
  ASSERT_FALSE(restart.ok());
  EXPECT_EQ(restart.error().code(), ErrorCode::failed_precondition);
}

TYPED_TEST_P(CudaRingCases, DrainWhileBusyFinishesQueuedMessagesAndCopiesStatesBack) {
  typename TestFixture::Rig rig(config_of(64), patient());
  ASSERT_NE(rig.server, nullptr);
  auto busy = rig.hold_with_queue(40);

  rig.server->request_drain();
  auto refused = rig.client->try_send(busy.actor, kCount, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::unavailable);
  rig.server->release_holds();
  Status drained = rig.server->wait();
  EXPECT_TRUE(drained.ok()) << drained.error().to_string();

  EXPECT_TRUE(busy.held.get().ok());
  for (std::size_t i = 0; i < busy.queued.size(); ++i) {
    Result<ring::Reply> reply = busy.queued[i].get();
    ASSERT_TRUE(reply.ok()) << reply.error().to_string();
    EXPECT_EQ(u64_of(*reply), 1u);         // handler version
    EXPECT_EQ(u64_of(*reply, 8), i + 1);  // in order, each exactly once
  }
  // The "device" actor table and state are back in the block.
  EXPECT_EQ(rig.block_entry(busy.actor).active, 1u);
  EXPECT_EQ(rig.block_counter(busy.actor), 40u);
  auto second = TypeParam::create(*rig.memory, 1, {});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code(), ErrorCode::failed_precondition);
}

TYPED_TEST_P(CudaRingCases, HotReloadWhileBusyKeepsStateAndQueuedMessages) {
  typename TestFixture::Rig rig(config_of(32));
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  std::mutex order_mutex;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> order;  // (version, counter) in completion order
  std::atomic<std::uint64_t> completed{0}, failed{0};
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
  Status reloaded_status = rig.server->reload(2);
  ASSERT_TRUE(reloaded_status.ok()) << reloaded_status.error().to_string();
  a.join();
  b.join();
  std::thread c(produce);  // sent after the reload returned: the new code serves them
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
    ASSERT_EQ(order[i].first, reloaded ? 2u : 1u) << "old handler ran after the new one at " << i;
  }
  EXPECT_TRUE(reloaded);
  EXPECT_EQ(order.back().first, 2u);
  EXPECT_EQ(rig.server->messages_served(), kTotal + 1);  // counters carry on across the relaunch
  EXPECT_TRUE(rig.server->kernel_status().ok());
}

// The client's watchdog fails callers of a kernel that stops beating (here: a held handler).
TYPED_TEST_P(CudaRingCases, HungKernelFailsWaitingCallersInsteadOfHanging) {
  ring::RingClientOptions options;
  options.dead_after = std::chrono::milliseconds(300);
  typename TestFixture::Rig rig(config_of(4), options);
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  auto hung = rig.client->try_send(actor, kHold, {}).value();
  auto queued = rig.client->send(actor, kCount, {}, far_deadline()).value();
  for (auto* f : {&hung, &queued}) {
    Result<ring::Reply> reply = f->get();
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.error().code(), ErrorCode::unavailable);
    EXPECT_THAT(reply.error().message(), HasSubstr("ring server dead"));
  }
  auto after = rig.client->try_send(actor, kCount, {});
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code(), ErrorCode::unavailable);
  EXPECT_TRUE(rig.server->kernel_status().ok());  // only slow, not broken: it ends on stop
}

// A kernel stepped aside (its device runs an operation that needs it idle, such as a first cuBLAS
// call or loading a module) does not beat; however long that takes, the watchdog does not call the
// server dead, and what was sent meanwhile is served once it is back.
TYPED_TEST_P(CudaRingCases, ALongStepAsideIsNotADeadServer) {
  ring::RingClientOptions options;
  options.dead_after = std::chrono::milliseconds(200);
  typename TestFixture::Rig rig(config_of(8), options);
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  std::optional<std::future<Result<ring::Reply>>> sent;
  ring::with_rings_stepped_aside(0, [&] {
    auto f = rig.client->try_send(actor, kCount, {});
    if (!f.ok()) return;
    sent = std::move(f).value();
    // Three watchdog windows with a call pending and no heartbeat.
    EXPECT_EQ(sent->wait_for(std::chrono::milliseconds(600)), std::future_status::timeout);
  });
  ASSERT_TRUE(sent.has_value()) << "try_send during the step aside failed";
  Result<ring::Reply> reply = sent->get();
  ASSERT_TRUE(reply.ok()) << reply.error().to_string();
  EXPECT_EQ(u64_of(*reply, 8), 1u);
  auto after = rig.call(actor, kCount, {});
  ASSERT_TRUE(after.ok()) << after.error().to_string();
  EXPECT_EQ(u64_of(*after, 8), 2u);
  EXPECT_TRUE(rig.server->kernel_status().ok());
}

// ---- device-side messaging ----

TYPED_TEST_P(CudaRingCases, PostedMessagesRunBeforeTheNextHostMessage) {
  typename TestFixture::Rig rig(config_of(8));
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t a = rig.activate();
  const std::uint32_t b = rig.activate_beside(a);
  for (int round = 1; round <= 20; ++round) {
    auto posted = rig.call(a, kPostAdds, words({b, 10}));
    ASSERT_TRUE(posted.ok()) << posted.error().to_string();
    EXPECT_TRUE(posted->empty());
    EXPECT_EQ(rig.counter(b), 10u * round);  // the whole chain ran before this host message
  }
  EXPECT_EQ(rig.counter(a), 0u);  // a later host call: the device-side counters are published
  const ring::RingServerStats stats = rig.server->stats();
  EXPECT_EQ(stats.internal_messages, 200u);
  EXPECT_EQ(stats.internal_queue_peak, 10u);
  EXPECT_EQ(stats.internal_failures, 0u);
  EXPECT_EQ(rig.server->last_internal_error(), "");
}

TYPED_TEST_P(CudaRingCases, ForwardChainsAnswerTheHostCall) {
  typename TestFixture::Rig rig(config_of(8));
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t a = rig.activate();
  const std::uint32_t b = rig.activate();
  // a -> b -> a -> b -> a -> b: the last hop (5, on b) replies to the host.
  auto reply = rig.call(a, kRelay, words({b, a, 5}));
  ASSERT_TRUE(reply.ok()) << reply.error().to_string();
  ASSERT_EQ(reply->size(), 16u);
  EXPECT_EQ(u64_of(*reply), 5u);     // hops
  EXPECT_EQ(u64_of(*reply, 8), 3u);  // b's counter
  EXPECT_EQ(rig.counter(a), 3u);

  // A second forward of the same message is refused; the first one answers.
  auto twice = rig.call(a, kForwardTwice, {});
  ASSERT_TRUE(twice.ok()) << twice.error().to_string();
  EXPECT_EQ(u64_of(*twice), 4u);  // kAdd's reply: a's counter

  // A forwarded reply larger than inline travels in the host's reply block; inline otherwise.
  for (std::uint32_t capacity : {4096u, 200u}) {
    std::vector<std::byte> payload = words({b});
    for (int i = 0; i < 150; ++i) payload.push_back(static_cast<std::byte>(i * 7));
    ring::SendOptions options;
    options.reply_capacity = capacity;
    auto echoed = rig.call(a, kForwardEcho, payload, options);
    ASSERT_TRUE(echoed.ok()) << echoed.error().to_string();
    EXPECT_EQ(*echoed, std::vector<std::byte>(payload.begin() + 4, payload.end())) << capacity;
  }
  // The forward's error answers the host call: kEcho refuses a reply larger than the capacity.
  ring::SendOptions tiny;
  tiny.reply_capacity = 8;
  auto refused = rig.call(a, kForwardEcho, words({b, 1, 2, 3}), tiny);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::out_of_range);
  EXPECT_THAT(refused.error().message(), HasSubstr("handler 1 failed"));
  EXPECT_EQ(rig.server->messages_served(), 2u + 1u + 1u + 1u + 2u + 1u);  // one completion per host call
  EXPECT_EQ(rig.counter(a), 4u);  // a later host call: the device-side counters are published
  const ring::RingServerStats stats = rig.server->stats();
  EXPECT_EQ(stats.internal_messages, 5u + 1u + 2u + 1u);  // relay hops, forwards (the failed one too)
  EXPECT_EQ(stats.internal_failures, 0u);                 // the failed forward answered its host call
  EXPECT_TRUE(rig.server->kernel_status().ok());
}

TYPED_TEST_P(CudaRingCases, HopLimitIsAClearError) {
  ring::CudaRingServerOptions options;
  options.max_hops = 4;
  typename TestFixture::Rig rig(config_of(8), {}, options);
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t a = rig.activate();
  auto within = rig.call(a, kRelay, words({a, a, 4}));
  ASSERT_TRUE(within.ok()) << within.error().to_string();
  EXPECT_EQ(u64_of(*within), 4u);
  auto beyond = rig.call(a, kRelay, words({a, a, 5}));
  ASSERT_FALSE(beyond.ok());
  EXPECT_EQ(beyond.error().code(), ErrorCode::resource_exhausted);
  EXPECT_THAT(beyond.error().message(), HasSubstr("device-side hop limit of 4 exceeded"));
}

TYPED_TEST_P(CudaRingCases, FullInternalQueueIsAClearErrorAndDropsTheHandlersMessages) {
  ring::CudaRingServerOptions options;
  options.internal_queue_slots = 4;
  typename TestFixture::Rig rig(config_of(8), {}, options);
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t a = rig.activate();
  const std::uint32_t b = rig.activate_beside(a);
  auto full = rig.call(a, kPostAdds, words({b, 5}));
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code(), ErrorCode::resource_exhausted);
  EXPECT_THAT(full.error().message(), HasSubstr("server-internal message queue full (4 slots)"));
  EXPECT_EQ(rig.counter(b), 0u);  // the 4 staged posts were dropped with the failure
  auto fits = rig.call(a, kPostAdds, words({b, 4}));
  ASSERT_TRUE(fits.ok()) << fits.error().to_string();
  EXPECT_EQ(rig.counter(b), 4u);
  // The queue wraps: many rounds through 4 slots.
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(rig.call(a, kPostAdds, words({b, 3})).ok());
  EXPECT_EQ(rig.counter(b), 154u);
  EXPECT_EQ(rig.server->stats().internal_queue_peak, 4u);
}

TYPED_TEST_P(CudaRingCases, RefusedAndFailedDeviceMessages) {
  typename TestFixture::Rig rig(config_of(8));
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t a = rig.activate();
  const std::uint32_t b = rig.activate_beside(a);
  auto reserved = rig.call(a, kTryPost, words({b, ring::kDeactivateHandler, 0}));
  ASSERT_FALSE(reserved.ok());
  EXPECT_EQ(reserved.error().code(), ErrorCode::invalid_argument);
  EXPECT_THAT(reserved.error().message(), HasSubstr("reserved handler id"));
  auto too_long = rig.call(a, kTryPost, words({b, kAdd, 201}));
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.error().code(), ErrorCode::invalid_argument);
  EXPECT_THAT(too_long.error().message(), HasSubstr("exceeds the inline limit of 200 bytes"));
  ASSERT_TRUE(rig.call(a, kTryPost, words({b, kAdd, 200})).ok());  // 200 zero bytes: adds 0
  EXPECT_EQ(rig.counter(b), 0u);

  // A handler that fails after posting: its post is dropped.
  auto aborted = rig.call(a, kPostThenFail, words({b}));
  ASSERT_FALSE(aborted.ok());
  EXPECT_EQ(aborted.error().code(), ErrorCode::aborted);
  EXPECT_EQ(rig.counter(b), 0u);

  // A posted message that fails is counted and reported (its caller is gone). It runs after its
  // poster's reply, and before any later host message of its shard: rig.counter() is the barrier
  // for b; actor 999's shard may be another one, which serves it on its own time.
  EXPECT_EQ(rig.server->stats().internal_failures, 0u);
  ASSERT_TRUE(rig.call(a, kTryPost, words({b, kFail, 0})).ok());
  rig.counter(b);
  EXPECT_EQ(rig.server->stats().internal_failures, 1u);
  ASSERT_TRUE(rig.call(a, kTryPost, words({999, kAdd, 0})).ok());
  rig.wait_until([&] { return rig.server->stats().internal_failures == 2u; });
  EXPECT_THAT(rig.server->last_internal_error(), HasSubstr("actor 999 handler 20: unknown actor id 999"));
  ASSERT_TRUE(rig.call(a, kTryPost, words({b, kFail, 0})).ok());
  rig.counter(b);
  EXPECT_THAT(rig.server->last_internal_error(),
              HasSubstr("actor " + std::to_string(b) + " handler 4: handler 4 failed with code 3"));
}

TYPED_TEST_P(CudaRingCases, DrainFinishesDeviceChainsFirst) {
  typename TestFixture::Rig rig(config_of(8));
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t a = rig.activate();
  const std::uint32_t b = rig.activate();
  auto posted = rig.client->try_send(a, kPostAdds, words({b, 100})).value();
  auto relayed = rig.client->try_send(a, kRelay, words({b, a, 30})).value();
  rig.server->request_drain();
  Status drained = rig.server->wait();
  ASSERT_TRUE(drained.ok()) << drained.error().to_string();
  EXPECT_TRUE(posted.get().ok());
  auto relay = relayed.get();
  ASSERT_TRUE(relay.ok()) << relay.error().to_string();
  EXPECT_EQ(u64_of(*relay), 30u);
  EXPECT_EQ(rig.block_counter(b), 100u + 15u);
  EXPECT_EQ(rig.block_counter(a), 16u);
}

TYPED_TEST_P(CudaRingCases, StopCancelsQueuedDeviceMessages) {
  {
    typename TestFixture::Rig rig(config_of(8), patient());
    ASSERT_NE(rig.server, nullptr);
    const std::uint32_t a = rig.activate();
    auto forwarded = rig.client->try_send(a, kHoldThenForward, {}).value();
    rig.wait_until_holding(2);
    rig.server->request_stop();
    rig.server->release_holds();
    ASSERT_TRUE(rig.server->wait().ok());
    Result<ring::Reply> reply = forwarded.get();  // its forward ran after the stop
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.error().code(), ErrorCode::cancelled);
    EXPECT_THAT(reply.error().message(), HasSubstr("stopped"));
    EXPECT_EQ(rig.block_counter(a), 0u);
  }
  {
    typename TestFixture::Rig rig(config_of(8), patient());
    ASSERT_NE(rig.server, nullptr);
    const std::uint32_t a = rig.activate();
    auto posting = rig.client->try_send(a, kHoldThenPostCounts, {}).value();
    rig.wait_until_holding(2);
    rig.server->request_stop();
    rig.server->release_holds();
    ASSERT_TRUE(rig.server->wait().ok());
    EXPECT_TRUE(posting.get().ok());
    EXPECT_EQ(rig.server->stats().internal_failures, 3u);
    EXPECT_THAT(rig.server->last_internal_error(), HasSubstr("ring server stopped before the message ran"));
    EXPECT_EQ(rig.block_counter(a), 0u);
  }
}

// Registered last: on a device, a trapped kernel leaves the process's CUDA context unusable, so
// this case must be the last one a gpu binary runs (instantiate this suite after its own tests).
TYPED_TEST_P(CudaRingCases, DeadKernelFailsWaitingCallersInsteadOfHanging) {
  ring::RingClientOptions options;
  options.dead_after = std::chrono::milliseconds(300);
  typename TestFixture::Rig rig(config_of(4), options);
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  auto crash = rig.client->try_send(actor, kTrap, {}).value();
  std::vector<std::future<Result<ring::Reply>>> queued;
  for (int i = 0; i < 3; ++i) queued.push_back(rig.client->send(actor, kCount, {}, far_deadline()).value());
  for (auto* f : {&crash, &queued[0], &queued[1], &queued[2]}) {
    Result<ring::Reply> reply = f->get();
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.error().code(), ErrorCode::unavailable);
    EXPECT_THAT(reply.error().message(), HasSubstr("ring server dead"));
  }
  Status waited = rig.server->wait();
  ASSERT_FALSE(waited.ok());
  EXPECT_THAT(waited.error().message(), HasSubstr(TypeParam::kTrapError));
  EXPECT_FALSE(rig.server->kernel_status().ok());
}

REGISTER_TYPED_TEST_SUITE_P(CudaRingCases, OptionsAndBlockAreValidated, RoundTripWrapsAroundOverManyLaps,
                            FullRingFailsTrySendAndTimesOutSend, FullCompletionRingWaitsForTheHost,
                            PhaseTimesCountWhatTheKernelDid,
                            ManyProducersEveryMessageCompletesExactlyOnce,
                            LargePayloadsTravelThroughThePool, PoolExhaustedIsAClearErrorAndPoolPayloadsReachTheKernel,
                            BadMessagesGetClearErrors, DeactivationCopiesStateOutAndBackIn,
                            StopWhileBusyCancelsQueuedMessages, DrainWhileBusyFinishesQueuedMessagesAndCopiesStatesBack,
                            HotReloadWhileBusyKeepsStateAndQueuedMessages, HungKernelFailsWaitingCallersInsteadOfHanging,
                            ALongStepAsideIsNotADeadServer,
                            PostedMessagesRunBeforeTheNextHostMessage, ForwardChainsAnswerTheHostCall,
                            HopLimitIsAClearError, FullInternalQueueIsAClearErrorAndDropsTheHandlersMessages,
                            RefusedAndFailedDeviceMessages, DrainFinishesDeviceChainsFirst,
                            StopCancelsQueuedDeviceMessages, DeadKernelFailsWaitingCallersInsteadOfHanging);

}  // namespace gpubridge::testing::cuda_ring
