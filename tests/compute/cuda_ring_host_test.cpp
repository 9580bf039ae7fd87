// The CUDA ring kernel's logic without a GPU: the generated kernel source (cuda_ring_kernel_source,
// what NVRTC compiles) built as host C++ with a small shim (ring_host_kernel/host_shim.hpp), run on
// a thread by HostKernelServer against a real RingMemory block and the real RingClient. Runs the
// CPU server's protocol and lifecycle cases (round trips, wrap-around, full ring, many producers,
// large payloads, bad messages, stop/drain/reload while busy, a dead kernel, activation) and the
// device-side messaging cases (posts, forward chains, hop limit, full internal queue, forwarded
// replies reaching the host, chains around drain, stop and reload).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "gpubridge/compute/ring.hpp"
#include "ring_host_kernel/host_kernel_handlers.hpp"
#include "ring_host_kernel/host_kernel_server.hpp"

extern "C" void gb_ring_serve_host_v1(unsigned char*, unsigned char*, unsigned char*, unsigned char*);
extern "C" void gb_ring_serve_host_v2(unsigned char*, unsigned char*, unsigned char*, unsigned char*);

namespace ring = gpubridge::compute::ring;
using gpubridge::ErrorCode;
using gpubridge::Result;
using gpubridge::Status;
using gpubridge::testing::ring_host::HostKernelServer;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
using namespace gpubridge::testing::ring_host;
using gpubridge::testing::cuda_ring::kAdd;
using gpubridge::testing::cuda_ring::kForwardEcho;
using gpubridge::testing::cuda_ring::kForwardTwice;
using gpubridge::testing::cuda_ring::kPostAdds;
using gpubridge::testing::cuda_ring::kPostThenFail;
using gpubridge::testing::cuda_ring::kRelay;
using gpubridge::testing::cuda_ring::kTryPost;

namespace {

// The gate the kBlock/kGate* handlers wait on (one test at a time per process).
struct Gate {
  std::mutex mutex;
  std::condition_variable cv;
  bool is_open = false;
  std::atomic<int> entered{0};
  void wait() {
    entered.fetch_add(1);
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return is_open; });
  }
  void open() {
    {
      std::lock_guard lock(mutex);
      is_open = true;
    }
    cv.notify_all();
  }
  void wait_entered(int n = 1) const {
    while (entered.load() < n) std::this_thread::yield();
  }
};
std::atomic<Gate*> current_gate{nullptr};

}  // namespace

extern "C" void gb_host_test_gate_wait() {
  Gate* gate = current_gate.load();
  if (gate != nullptr) gate->wait();
}

namespace {

Clock::time_point far_deadline() { return Clock::now() + std::chrono::minutes(5); }

std::vector<std::byte> bytes_of(std::uint64_t value) {
  std::vector<std::byte> out(sizeof value);
  std::memcpy(out.data(), &value, sizeof value);
  return out;
}
std::vector<std::byte> words(std::initializer_list<std::uint32_t> values) {
  std::vector<std::byte> out(values.size() * 4);
  std::size_t at = 0;
  for (std::uint32_t v : values) {
    std::memcpy(out.data() + at, &v, 4);
    at += 4;
  }
  return out;
}
std::uint64_t u64_of(const std::vector<std::byte>& bytes, std::size_t at = 0) {
  std::uint64_t value = 0;
  std::memcpy(&value, bytes.data() + at, sizeof value);
  return value;
}

ring::RingClientOptions patient() {
  ring::RingClientOptions options;
  options.dead_after = std::chrono::minutes(10);  // gated handlers stop heartbeats on purpose
  return options;
}

ring::RingConfig config_of(std::uint32_t slots, std::uint32_t pool_chunks = 640, std::uint32_t actors = 4) {
  ring::RingConfig config;
  config.request_slots = slots;
  config.completion_slots = slots;
  config.pool_chunk_bytes = 4096;
  config.pool_chunks = pool_chunks;  // 640: a 1 MiB payload and its 1 MiB reply fit
  config.actor_types = {{kCounterType, 64, actors}, {kOtherType, 16, 1}};
  return config;
}

// Memory, server and client in destruction-safe order (client, then server, then memory).
struct Rig {
  std::unique_ptr<ring::RingMemory> memory;
  std::unique_ptr<HostKernelServer> server;
  std::unique_ptr<ring::RingClient> client;
  Gate gate;

  explicit Rig(ring::RingConfig config, ring::RingClientOptions client_options = {},
               ring::CudaRingServerOptions options = {}) {
    current_gate.store(&gate);
    memory = std::move(ring::RingMemory::create(config).value());
    auto created = HostKernelServer::create(*memory, gb_ring_serve_host_v1, options);
    if (!created) {
      ADD_FAILURE() << created.error().to_string();
      return;
    }
    server = std::move(created).value();
    client = std::move(ring::RingClient::create(*memory, client_options).value());
    Status started = server->start();
    EXPECT_TRUE(started.ok()) << started.error().to_string();
  }
  ~Rig() {
    gate.open();
    client.reset();
    server.reset();
    current_gate.store(nullptr);
  }
  std::uint32_t activate() { return client->activate(kCounterType, {}, far_deadline()).value(); }
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
  // The state the kernel copied back into the block when it finished.
  std::uint64_t block_counter(std::uint32_t actor) const {
    const ring::RingHeader& h = memory->header();
    const auto* table = reinterpret_cast<const ring::ActorEntry*>(memory->base() + h.actor_table_offset);
    std::uint64_t value = 0;
    std::memcpy(&value, memory->base() + table[actor].state_offset, sizeof value);
    return value;
  }
};

// ---- protocol (ring_protocol_test.cpp's cases) ----

TEST(CudaRingHostTest, OptionsAndBlockAreValidated) {
  auto memory = ring::RingMemory::create(config_of(8)).value();
  for (auto [slots, hops] : {std::pair{0u, 64u}, std::pair{1024u, 0u}, std::pair{ring::kMaxRingSlots + 1, 64u}}) {
    ring::CudaRingServerOptions options;
    options.internal_queue_slots = slots;
    options.max_hops = hops;
    auto created = HostKernelServer::create(*memory, gb_ring_serve_host_v1, options);
    ASSERT_FALSE(created.ok());
    EXPECT_EQ(created.error().code(), ErrorCode::invalid_argument);
    EXPECT_THAT(created.error().message(), HasSubstr(slots == 1024u ? "max_hops" : "internal_queue_slots"));
  }
  const ring::CudaRingServerOptions defaults;
  EXPECT_EQ(defaults.internal_queue_slots, ring::CpuRingServerOptions{}.internal_queue_slots);
  EXPECT_EQ(defaults.max_hops, ring::CpuRingServerOptions{}.max_hops);
}

TEST(CudaRingHostTest, RoundTripWrapsAroundOverManyLaps) {
  Rig rig(config_of(4));
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
}

TEST(CudaRingHostTest, FullRingFailsTrySendAndTimesOutSend) {
  Rig rig(config_of(8), patient());
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  std::vector<std::future<Result<ring::Reply>>> queued;
  queued.push_back(rig.client->try_send(actor, kBlock, {}).value());
  rig.gate.wait_entered();  // the kernel took it: its slot is free again
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
  rig.gate.open();
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

TEST(CudaRingHostTest, ManyProducersEveryMessageCompletesExactlyOnce) {
  Rig rig(config_of(64));
  ASSERT_NE(rig.server, nullptr);
  constexpr std::uint32_t kActors = 4;
  std::vector<std::uint32_t> actors;
  for (std::uint32_t i = 0; i < kActors; ++i) actors.push_back(rig.activate());
  constexpr std::uint64_t kThreads = 4;
  constexpr std::uint64_t kPerThread = 5'000;
  constexpr std::uint64_t kTotal = kThreads * kPerThread;
  std::vector<std::atomic<std::uint32_t>> seen(kTotal);
  std::atomic<std::uint64_t> completed{0}, wrong{0};
  std::vector<std::thread> producers;
  for (std::uint64_t t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (std::uint64_t i = 0; i < kPerThread; ++i) {
        const std::uint64_t id = t * kPerThread + i;
        std::vector<std::byte> payload = bytes_of(id);
        const auto tail = bytes_of(~id);
        payload.insert(payload.end(), tail.begin(), tail.end());
        Status sent = rig.client->send_async(
            actors[id % kActors], kEcho, payload, far_deadline(), [&, id](Result<ring::Reply> reply) {
              if (!reply.ok() || reply->size() != 16 || u64_of(*reply) != id || u64_of(*reply, 8) != ~id) {
                wrong.fetch_add(1);
              } else {
                seen[id].fetch_add(1);
              }
              completed.fetch_add(1);
            });
        if (!sent.ok()) {
          wrong.fetch_add(1);
          completed.fetch_add(1);
        }
      }
    });
  }
  for (auto& p : producers) p.join();
  while (completed.load() < kTotal) std::this_thread::yield();
  EXPECT_EQ(wrong.load(), 0u);
  std::uint64_t missing_or_duplicated = 0;
  for (auto& s : seen) missing_or_duplicated += s.load() != 1;
  EXPECT_EQ(missing_or_duplicated, 0u);
  std::uint64_t counted = 0;
  for (std::uint32_t actor : actors) counted += rig.deactivate_count(actor);
  EXPECT_EQ(counted, kTotal);
}

TEST(CudaRingHostTest, LargePayloadsTravelThroughThePool) {
  Rig rig(config_of(16));
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  const std::size_t inline_limit = ring::kInlinePayloadBytes;
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, inline_limit - 1, inline_limit, inline_limit + 1,
                           std::size_t{4095}, std::size_t{4096}, std::size_t{4097}, std::size_t{65536},
                           std::size_t{1} << 20}) {
    std::vector<std::byte> payload(size);
    for (std::size_t i = 0; i < size; ++i) payload[i] = static_cast<std::byte>((i * 31 + size) & 0xFF);
    ring::SendOptions options;
    options.reply_capacity = static_cast<std::uint32_t>(size);
    auto reply = rig.call(actor, kReverse, payload, options);
    ASSERT_TRUE(reply.ok()) << size << ": " << reply.error().to_string();
    std::reverse(payload.begin(), payload.end());
    EXPECT_EQ(*reply, payload) << "size " << size;
  }
  auto small_reply = rig.call(actor, kReverse, std::vector<std::byte>(1000, std::byte{1}));
  ASSERT_FALSE(small_reply.ok());
  EXPECT_EQ(small_reply.error().code(), ErrorCode::resource_exhausted);
  // Every pool chunk came back: the largest message fits again.
  std::vector<std::byte> whole(rig.memory->max_payload_bytes(), std::byte{2});
  auto again = rig.call(actor, kEcho, whole);
  ASSERT_FALSE(again.ok());  // echo of 2.5 MiB into a 200-byte reply: the handler refuses
  EXPECT_EQ(again.error().code(), ErrorCode::out_of_range);
}

TEST(CudaRingHostTest, PoolExhaustedIsAClearErrorAndPoolPayloadsReachTheKernel) {
  Rig rig(config_of(8, 4), patient());  // 16 KiB pool
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  auto blocked = rig.client->try_send(actor, kBlock, std::vector<std::byte>(4 * 4096)).value();  // whole pool
  auto exhausted = rig.client->try_send(actor, kEcho, std::vector<std::byte>(300));
  ASSERT_FALSE(exhausted.ok());
  EXPECT_EQ(exhausted.error().code(), ErrorCode::resource_exhausted);
  EXPECT_THAT(exhausted.error().message(), HasSubstr("payload pool exhausted"));
  rig.gate.open();
  EXPECT_TRUE(blocked.get().ok());
  ring::SendOptions reply300;
  reply300.reply_capacity = 300;
  auto fits = rig.call(actor, kEcho, std::vector<std::byte>(300, std::byte{5}), reply300);
  ASSERT_TRUE(fits.ok()) << fits.error().to_string();
  EXPECT_EQ(*fits, std::vector<std::byte>(300, std::byte{5}));
}

TEST(CudaRingHostTest, BadMessagesGetClearErrors) {
  Rig rig(config_of(8));
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
  expect(actor, kFail, ErrorCode::invalid_argument, "handler 4 failed with code 3");
  expect(actor, kOverclaim, ErrorCode::internal, "more than the capacity");
  const std::uint32_t other = rig.client->activate(kOtherType, {}, far_deadline()).value();
  expect(other, kEcho, ErrorCode::invalid_argument, "serves actor type 1");
  auto other_echo = rig.call(other, kOtherTypeEcho, bytes_of(3));
  ASSERT_TRUE(other_echo.ok()) << other_echo.error().to_string();
  auto fine = rig.call(actor, kEcho, bytes_of(5));
  ASSERT_TRUE(fine.ok());
  EXPECT_EQ(u64_of(*fine), 5u);
}

// ---- lifecycle (ring_lifecycle_test.cpp's cases) ----

TEST(CudaRingHostTest, StopWhileBusyCancelsQueuedMessages) {
  Rig rig(config_of(64), patient());
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  auto running = rig.client->try_send(actor, kBlock, {}).value();
  std::vector<std::future<Result<ring::Reply>>> queued;
  for (int i = 0; i < 40; ++i) queued.push_back(rig.client->try_send(actor, kCount, {}).value());
  rig.gate.wait_entered();

  rig.server->request_stop();
  auto refused = rig.client->try_send(actor, kCount, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::unavailable);
  rig.gate.open();
  Status waited = rig.server->wait();
  EXPECT_TRUE(waited.ok()) << waited.error().to_string();

  EXPECT_TRUE(running.get().ok());  // the message in progress finishes
  for (auto& f : queued) {
    Result<ring::Reply> reply = f.get();
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.error().code(), ErrorCode::cancelled);
    EXPECT_THAT(reply.error().message(), HasSubstr("stopped"));
  }
  EXPECT_EQ(rig.server->messages_served(), 42u);  // activate, blocked, 40 cancelled
  auto restart = rig.server->start();
  ASSERT_FALSE(restart.ok());
  EXPECT_EQ(restart.error().code(), ErrorCode::failed_precondition);
}

TEST(CudaRingHostTest, DrainWhileBusyFinishesQueuedMessagesAndCopiesStatesBack) {
  Rig rig(config_of(64), patient());
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  auto running = rig.client->try_send(actor, kBlock, {}).value();
  std::vector<std::future<Result<ring::Reply>>> queued;
  for (int i = 0; i < 40; ++i) queued.push_back(rig.client->try_send(actor, kCount, {}).value());

  rig.server->request_drain();
  auto refused = rig.client->try_send(actor, kCount, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::unavailable);
  rig.gate.open();
  Status drained = rig.server->wait();
  EXPECT_TRUE(drained.ok()) << drained.error().to_string();

  EXPECT_TRUE(running.get().ok());
  for (std::size_t i = 0; i < queued.size(); ++i) {
    Result<ring::Reply> reply = queued[i].get();
    ASSERT_TRUE(reply.ok()) << reply.error().to_string();
    EXPECT_EQ(u64_of(*reply), 1u);         // handler version
    EXPECT_EQ(u64_of(*reply, 8), i + 1);  // in order, each exactly once
  }
  EXPECT_EQ(rig.block_counter(actor), 40u);  // the "device" state is back in the block
  auto second = HostKernelServer::create(*rig.memory, gb_ring_serve_host_v1);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code(), ErrorCode::failed_precondition);
}

TEST(CudaRingHostTest, HotReloadWhileBusyKeepsStateAndQueuedMessages) {
  Rig rig(config_of(32));
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
  constexpr std::uint64_t kPerThread = 2'000;
  auto produce = [&] {
    for (std::uint64_t i = 0; i < kPerThread; ++i) {
      if (!rig.client->send_async(actor, kCount, {}, far_deadline(), record)) failed.fetch_add(1);
    }
  };
  std::thread a(produce), b(produce);
  while (completed.load() < kPerThread / 2) std::this_thread::yield();
  Status reloaded_status = rig.server->reload(gb_ring_serve_host_v2);
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
}

TEST(CudaRingHostTest, DeadKernelFailsWaitingCallersInsteadOfHanging) {
  ring::RingClientOptions options;
  options.dead_after = std::chrono::milliseconds(300);
  Rig rig(config_of(4), options);
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
  EXPECT_THAT(waited.error().message(), HasSubstr("trapped"));
}

TEST(CudaRingHostTest, DeactivationCopiesStateOutAndBackIn) {
  Rig rig(config_of(16));
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

// ---- device-side messaging ----

TEST(CudaRingHostTest, PostedMessagesRunBeforeTheNextHostMessage) {
  Rig rig(config_of(8));
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t a = rig.activate();
  const std::uint32_t b = rig.activate();
  for (int round = 1; round <= 20; ++round) {
    auto posted = rig.call(a, kPostAdds, words({b, 10}));
    ASSERT_TRUE(posted.ok()) << posted.error().to_string();
    EXPECT_TRUE(posted->empty());
    EXPECT_EQ(rig.counter(b), 10u * round);  // the whole chain ran before this host message
  }
  EXPECT_EQ(rig.counter(a), 0u);
  const ring::RingServerStats stats = rig.server->stats();
  EXPECT_EQ(stats.internal_messages, 200u);
  EXPECT_EQ(stats.internal_queue_peak, 10u);
  EXPECT_EQ(stats.internal_failures, 0u);
  EXPECT_EQ(rig.server->last_internal_error(), "");
}

TEST(CudaRingHostTest, ForwardChainsAnswerTheHostCall) {
  Rig rig(config_of(8));
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
}

TEST(CudaRingHostTest, HopLimitIsAClearError) {
  ring::CudaRingServerOptions options;
  options.max_hops = 4;
  Rig rig(config_of(8), {}, options);
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

TEST(CudaRingHostTest, FullInternalQueueIsAClearErrorAndDropsTheHandlersMessages) {
  ring::CudaRingServerOptions options;
  options.internal_queue_slots = 4;
  Rig rig(config_of(8), {}, options);
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t a = rig.activate();
  const std::uint32_t b = rig.activate();
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

TEST(CudaRingHostTest, RefusedAndFailedDeviceMessages) {
  Rig rig(config_of(8));
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t a = rig.activate();
  const std::uint32_t b = rig.activate();
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
  // poster's reply, and before any later host message: rig.counter() is the barrier.
  EXPECT_EQ(rig.server->stats().internal_failures, 0u);
  ASSERT_TRUE(rig.call(a, kTryPost, words({b, kFail, 0})).ok());
  ASSERT_TRUE(rig.call(a, kTryPost, words({999, kAdd, 0})).ok());
  rig.counter(b);
  EXPECT_EQ(rig.server->stats().internal_failures, 2u);
  EXPECT_THAT(rig.server->last_internal_error(), HasSubstr("actor 999 handler 20: unknown actor id 999"));
  ASSERT_TRUE(rig.call(a, kTryPost, words({b, kFail, 0})).ok());
  rig.counter(b);
  EXPECT_THAT(rig.server->last_internal_error(),
              HasSubstr("actor " + std::to_string(b) + " handler 4: handler 4 failed with code 3"));
}

TEST(CudaRingHostTest, DrainFinishesDeviceChainsFirst) {
  Rig rig(config_of(8));
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

TEST(CudaRingHostTest, StopCancelsQueuedDeviceMessages) {
  {
    Rig rig(config_of(8), patient());
    ASSERT_NE(rig.server, nullptr);
    const std::uint32_t a = rig.activate();
    auto forwarded = rig.client->try_send(a, kGateForward, {}).value();
    rig.gate.wait_entered();
    rig.server->request_stop();
    rig.gate.open();
    ASSERT_TRUE(rig.server->wait().ok());
    Result<ring::Reply> reply = forwarded.get();  // its forward ran after the stop
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.error().code(), ErrorCode::cancelled);
    EXPECT_THAT(reply.error().message(), HasSubstr("stopped"));
    EXPECT_EQ(rig.block_counter(a), 0u);
  }
  {
    Rig rig(config_of(8), patient());
    ASSERT_NE(rig.server, nullptr);
    const std::uint32_t a = rig.activate();
    auto posting = rig.client->try_send(a, kGatePostCounts, {}).value();
    rig.gate.wait_entered();
    rig.server->request_stop();
    rig.gate.open();
    ASSERT_TRUE(rig.server->wait().ok());
    EXPECT_TRUE(posting.get().ok());
    EXPECT_EQ(rig.server->stats().internal_failures, 3u);
    EXPECT_THAT(rig.server->last_internal_error(), HasSubstr("ring server stopped before the message ran"));
    EXPECT_EQ(rig.block_counter(a), 0u);
  }
}

TEST(CudaRingHostTest, QueuedDeviceMessagesSurviveAHotReload) {
  Rig rig(config_of(8), patient());
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t a = rig.activate();
  auto posting = rig.client->try_send(a, kGatePostCounts, {}).value();
  rig.gate.wait_entered();
  // The kernel sees the reload request right after the gated handler commits its 3 posts.
  std::thread reloader([&] { EXPECT_TRUE(rig.server->reload(gb_ring_serve_host_v2).ok()); });
  while (std::atomic_ref<std::uint32_t>(rig.server->control().yield).load() == 0) std::this_thread::yield();
  rig.gate.open();
  reloader.join();
  EXPECT_TRUE(posting.get().ok());
  auto after = rig.call(a, kCount, {});
  ASSERT_TRUE(after.ok()) << after.error().to_string();
  EXPECT_EQ(u64_of(*after), 2u);     // the new code
  EXPECT_EQ(u64_of(*after, 8), 4u);  // after the 3 queued kCount messages
  EXPECT_EQ(rig.server->stats().internal_messages, 3u);
}

}  // namespace
