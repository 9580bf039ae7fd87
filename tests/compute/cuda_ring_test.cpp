// The ring protocol against the CUDA persistent kernel (the CPU server's tests, on a device):
// round trip and activation, many producers, large payloads through the pool, stop / drain / hot
// reload while busy, a hung kernel and a dead kernel seen by the client's watchdog; device-side
// messaging (posts, forward chains, hop limit, full internal queue, failures, drain after chains).
// The same kernel source runs host-compiled in cuda_ring_host_test (unit) without a GPU.
// Skips without a CUDA device (fails when GPUBRIDGE_REQUIRE_BACKENDS names cuda).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include "cuda_ring_handlers.hpp"
#include "gpubridge/compute/cuda_ring.hpp"
#include "test_support.hpp"

namespace ring = gpubridge::compute::ring;
using gpubridge::ErrorCode;
using gpubridge::Result;
using gpubridge::Status;
using gpubridge::compute::BackendKind;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

namespace {

using namespace gpubridge::testing::cuda_ring;

Clock::time_point far_deadline() { return Clock::now() + std::chrono::minutes(2); }

std::vector<std::byte> bytes_of(std::uint64_t value) {
  std::vector<std::byte> out(sizeof value);
  std::memcpy(out.data(), &value, sizeof value);
  return out;
}
std::uint64_t u64_of(const std::vector<std::byte>& bytes, std::size_t at = 0) {
  std::uint64_t value = 0;
  std::memcpy(&value, bytes.data() + at, sizeof value);
  return value;
}

ring::RingClientOptions patient() {
  ring::RingClientOptions options;
  options.dead_after = std::chrono::minutes(10);  // spinning handlers stop heartbeats on purpose
  return options;
}

struct Rig {
  std::unique_ptr<ring::RingMemory> memory;
  std::unique_ptr<ring::CudaRingServer> server;
  std::unique_ptr<ring::RingClient> client;

  Rig(std::uint32_t slots, ring::RingClientOptions options, std::uint32_t actors = 4,
      ring::CudaRingServerOptions server_options = {}) {
    ring::RingConfig config;
    config.request_slots = slots;
    config.completion_slots = slots;
    config.pool_chunks = 64;
    config.pool_chunk_bytes = 4096;
    config.actor_types = {{kCounterType, 32, actors}};
    memory = std::move(ring::RingMemory::create(config).value());
    auto created = ring::CudaRingServer::create(*memory, handlers(1), server_options);
    if (!created) {
      ADD_FAILURE() << created.error().to_string();
      return;
    }
    server = std::move(created).value();
    client = std::move(ring::RingClient::create(*memory, options).value());
    Status started = server->start();
    EXPECT_TRUE(started.ok()) << started.error().to_string();
  }
  ~Rig() {
    client.reset();
    server.reset();
  }
  // The kernel frees a request's slot before serving it: `n` requests have been taken.
  void wait_until_taken(std::uint64_t n) const {
    auto& dequeue = memory->header().request_dequeue;
    while (std::atomic_ref<std::uint64_t>(dequeue).load(std::memory_order_acquire) < n) std::this_thread::yield();
  }
  Result<ring::Reply> call(std::uint32_t actor, std::uint32_t handler, std::span<const std::byte> payload,
                           ring::SendOptions send_options = {}) {
    auto sent = client->send(actor, handler, payload, far_deadline(), send_options);
    if (!sent) return sent.error();
    return sent->get();
  }
  std::uint64_t counter(std::uint32_t actor) { return u64_of(call(actor, kAdd, bytes_of(0)).value()); }
  // The state the kernel copied back into the block when it finished.
  std::uint64_t block_counter(std::uint32_t actor) const {
    const ring::RingHeader& h = memory->header();
    const auto* table = reinterpret_cast<const ring::ActorEntry*>(memory->base() + h.actor_table_offset);
    std::uint64_t value = 0;
    std::memcpy(&value, memory->base() + table[actor].state_offset, sizeof value);
    return value;
  }
};

std::vector<std::byte> words(std::initializer_list<std::uint32_t> values) {
  std::vector<std::byte> out(values.size() * 4);
  std::size_t at = 0;
  for (std::uint32_t v : values) {
    std::memcpy(out.data() + at, &v, 4);
    at += 4;
  }
  return out;
}

#define GB_REQUIRE_CUDA()                                         \
  auto gb_executor_ = gpubridge::testing::make_executor();        \
  ASSERT_NE(gb_executor_, nullptr);                               \
  GB_REQUIRE_BACKEND(gb_executor_, BackendKind::cuda)

TEST(CudaRingTest, RoundTripActivationAndErrors) {
  GB_REQUIRE_CUDA();
  Rig rig(64, {});
  ASSERT_NE(rig.server, nullptr);
  EXPECT_FALSE(rig.server->mode().description.empty());
  EXPECT_FALSE(rig.server->mode().device_name.empty());
  std::cout << "mode: " << rig.server->mode().description << "\n";

  const std::uint32_t actor = rig.client->activate(kCounterType, bytes_of(41), far_deadline()).value();
  for (std::uint64_t i = 0; i < 300; ++i) {  // wraps the 64-slot rings several times
    auto reply = rig.client->send(actor, kEcho, bytes_of(i * 7), far_deadline()).value().get();
    ASSERT_TRUE(reply.ok()) << reply.error().to_string();
    ASSERT_EQ(reply->size(), 8u);
    EXPECT_EQ(u64_of(*reply), i * 7);
  }
  auto failed = rig.client->send(actor, kFail, {}, far_deadline()).value().get();
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code(), ErrorCode::invalid_argument);
  EXPECT_THAT(failed.error().message(), HasSubstr("handler 4 failed"));
  auto unknown = rig.client->send(actor, 77, {}, far_deadline()).value().get();
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code(), ErrorCode::not_found);
  EXPECT_THAT(unknown.error().message(), HasSubstr("unknown handler id 77"));
  auto inactive = rig.client->send(actor + 1, kEcho, {}, far_deadline()).value().get();
  ASSERT_FALSE(inactive.ok());
  EXPECT_EQ(inactive.error().code(), ErrorCode::failed_precondition);

  Result<ring::Reply> state = rig.client->deactivate(actor, far_deadline());
  ASSERT_TRUE(state.ok()) << state.error().to_string();
  ASSERT_EQ(state->size(), 32u);
  EXPECT_EQ(u64_of(*state), 41u + 301u);  // 300 echoes and the failing call
  EXPECT_TRUE(rig.server->kernel_status().ok());
  EXPECT_GE(rig.server->messages_served(), 305u);
}

TEST(CudaRingTest, ManyProducersEveryMessageCompletesExactlyOnce) {
  GB_REQUIRE_CUDA();
  Rig rig(256, {});
  ASSERT_NE(rig.server, nullptr);
  std::vector<std::uint32_t> actors;
  for (int i = 0; i < 4; ++i) actors.push_back(rig.client->activate(kCounterType, {}, far_deadline()).value());
  constexpr int kThreads = 4;
  constexpr std::uint64_t kPerThread = 5000;
  std::mutex seen_mutex;
  std::vector<int> seen(kThreads * kPerThread, 0);
  std::atomic<std::uint64_t> done{0}, failures{0};
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (std::uint64_t i = 0; i < kPerThread; ++i) {
        const std::uint64_t tag = t * kPerThread + i;
        Status s = rig.client->send_async(actors[i % actors.size()], kEcho, bytes_of(tag), far_deadline(),
                                          [&](Result<ring::Reply> r) {
                                            if (r.ok() && r->size() == 8) {
                                              std::lock_guard lock(seen_mutex);
                                              ++seen[u64_of(*r)];
                                            } else {
                                              failures.fetch_add(1);
                                            }
                                            done.fetch_add(1);
                                          });
        if (!s) {
          failures.fetch_add(1);
          done.fetch_add(1);
        }
      }
    });
  }
  for (auto& p : producers) p.join();
  while (done.load() < kThreads * kPerThread) std::this_thread::yield();
  EXPECT_EQ(failures.load(), 0u);
  for (std::size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], 1) << "message " << i;
  std::uint64_t total = 0;
  for (std::uint32_t a : actors) total += u64_of(rig.client->deactivate(a, far_deadline()).value());
  EXPECT_EQ(total, kThreads * kPerThread);
}

TEST(CudaRingTest, LargePayloadsTravelThroughThePool) {
  GB_REQUIRE_CUDA();
  Rig rig(16, {});
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.client->activate(kCounterType, {}, far_deadline()).value();
  for (std::size_t size : {std::size_t{201}, std::size_t{4096}, std::size_t{70000}}) {
    std::vector<std::byte> payload(size);
    for (std::size_t i = 0; i < size; ++i) payload[i] = static_cast<std::byte>(i * 31 + size);
    ring::SendOptions options;
    options.reply_capacity = static_cast<std::uint32_t>(size);
    auto reply = rig.client->send(actor, kEcho, payload, far_deadline(), options).value().get();
    ASSERT_TRUE(reply.ok()) << size << ": " << reply.error().to_string();
    EXPECT_EQ(*reply, payload) << size;
  }
  // A reply that does not fit the capacity the caller reserved is the handler's error.
  auto small = rig.client->send(actor, kEcho, std::vector<std::byte>(300), far_deadline()).value().get();
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.error().code(), ErrorCode::out_of_range);
}

TEST(CudaRingTest, StopWhileBusyCancelsQueuedMessages) {
  GB_REQUIRE_CUDA();
  Rig rig(64, patient());
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.client->activate(kCounterType, {}, far_deadline()).value();
  auto running = rig.client->try_send(actor, kSpin, bytes_of(500'000'000)).value();  // 0.5 s
  std::vector<std::future<Result<ring::Reply>>> queued;
  for (int i = 0; i < 40; ++i) queued.push_back(rig.client->try_send(actor, kCount, {}).value());
  rig.wait_until_taken(2);  // activation and the spinning message

  rig.server->request_stop();
  auto refused = rig.client->try_send(actor, kCount, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::unavailable);
  Status waited = rig.server->wait();
  EXPECT_TRUE(waited.ok()) << waited.error().to_string();

  EXPECT_TRUE(running.get().ok());
  for (auto& f : queued) {
    Result<ring::Reply> reply = f.get();
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.error().code(), ErrorCode::cancelled);
    EXPECT_THAT(reply.error().message(), HasSubstr("stopped"));
  }
  EXPECT_EQ(rig.server->messages_served(), 42u);
  auto restart = rig.server->start();
  ASSERT_FALSE(restart.ok());
  EXPECT_EQ(restart.error().code(), ErrorCode::failed_precondition);
}

TEST(CudaRingTest, DrainWhileBusyFinishesQueuedMessagesAndCopiesStatesBack) {
  GB_REQUIRE_CUDA();
  Rig rig(64, patient());
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.client->activate(kCounterType, {}, far_deadline()).value();
  auto running = rig.client->try_send(actor, kSpin, bytes_of(300'000'000)).value();
  std::vector<std::future<Result<ring::Reply>>> queued;
  for (int i = 0; i < 40; ++i) queued.push_back(rig.client->try_send(actor, kCount, {}).value());
  rig.wait_until_taken(2);

  rig.server->request_drain();
  auto refused = rig.client->try_send(actor, kCount, {});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::unavailable);
  Status drained = rig.server->wait();
  EXPECT_TRUE(drained.ok()) << drained.error().to_string();

  EXPECT_TRUE(running.get().ok());
  for (std::size_t i = 0; i < queued.size(); ++i) {
    Result<ring::Reply> reply = queued[i].get();
    ASSERT_TRUE(reply.ok()) << reply.error().to_string();
    EXPECT_EQ(u64_of(*reply, 8), i + 1);  // in order, each exactly once
  }
  // The device states are back in the block after the kernel finished.
  const ring::RingHeader& h = rig.memory->header();
  const auto* table = reinterpret_cast<const ring::ActorEntry*>(rig.memory->base() + h.actor_table_offset);
  EXPECT_EQ(table[actor].active, 1u);
  std::uint64_t counter = 0;
  std::memcpy(&counter, rig.memory->base() + table[actor].state_offset, sizeof counter);
  EXPECT_EQ(counter, 40u);
}

TEST(CudaRingTest, HotReloadWhileBusyKeepsStateAndQueuedMessages) {
  GB_REQUIRE_CUDA();
  Rig rig(32, {});
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.client->activate(kCounterType, {}, far_deadline()).value();
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
  Status reloaded_status = rig.server->reload(handlers(2));
  ASSERT_TRUE(reloaded_status.ok()) << reloaded_status.error().to_string();
  a.join();
  b.join();
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
    ASSERT_EQ(order[i].first, reloaded ? 2u : 1u) << "old handler ran after the new one at " << i;
  }
  EXPECT_TRUE(reloaded);
  EXPECT_EQ(order.back().first, 2u);

  // A reload that does not compile leaves the running kernel in place.
  ring::CudaHandlerSource broken = handlers(3);
  broken.source += "__device__ int nope(const gb_ring_call&) { return undefined_name; }\n";
  Status refused = rig.server->reload(broken);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message(), HasSubstr("undefined_name"));
  auto after = rig.client->send(actor, kCount, {}, far_deadline()).value().get();
  ASSERT_TRUE(after.ok()) << after.error().to_string();
  EXPECT_EQ(u64_of(*after), 2u);
  EXPECT_EQ(u64_of(*after, 8), kTotal + 1);
}

TEST(CudaRingTest, HungKernelFailsWaitingCallersInsteadOfHanging) {
  GB_REQUIRE_CUDA();
  ring::RingClientOptions options;
  options.dead_after = std::chrono::milliseconds(300);
  Rig rig(4, options);
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.client->activate(kCounterType, {}, far_deadline()).value();
  auto hung = rig.client->try_send(actor, kSpin, bytes_of(2'000'000'000)).value();  // 2 s, no heartbeat
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

TEST(CudaRingTest, DeviceSidePostsAndForwardChains) {
  GB_REQUIRE_CUDA();
  Rig rig(16, {});
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t a = rig.client->activate(kCounterType, {}, far_deadline()).value();
  const std::uint32_t b = rig.client->activate(kCounterType, {}, far_deadline()).value();
  for (int round = 1; round <= 20; ++round) {
    auto posted = rig.call(a, kPostAdds, words({b, 10}));
    ASSERT_TRUE(posted.ok()) << posted.error().to_string();
    EXPECT_EQ(rig.counter(b), 10u * round);  // the chain ran before the next host message
  }
  auto relay = rig.call(a, kRelay, words({b, a, 5}));  // a -> b -> a -> b -> a -> b
  ASSERT_TRUE(relay.ok()) << relay.error().to_string();
  EXPECT_EQ(u64_of(*relay), 5u);
  EXPECT_EQ(u64_of(*relay, 8), 200u + 3u);
  auto twice = rig.call(a, kForwardTwice, {});
  ASSERT_TRUE(twice.ok()) << twice.error().to_string();
  EXPECT_EQ(u64_of(*twice), 4u);  // kAdd's reply: a's counter (3 relay hops + this add)
  for (std::uint32_t capacity : {4096u, 200u}) {
    std::vector<std::byte> payload = words({b});
    for (int i = 0; i < 150; ++i) payload.push_back(static_cast<std::byte>(i * 7));
    ring::SendOptions options;
    options.reply_capacity = capacity;
    auto echoed = rig.call(a, kForwardEcho, payload, options);
    ASSERT_TRUE(echoed.ok()) << echoed.error().to_string();
    EXPECT_EQ(*echoed, std::vector<std::byte>(payload.begin() + 4, payload.end())) << capacity;
  }
  EXPECT_EQ(rig.counter(a), 4u);  // a later host call: the device-side counters are published
  const ring::RingServerStats stats = rig.server->stats();
  EXPECT_EQ(stats.internal_messages, 200u + 5u + 1u + 2u);
  EXPECT_EQ(stats.internal_queue_peak, 10u);
  EXPECT_EQ(stats.internal_failures, 0u);
  EXPECT_TRUE(rig.server->kernel_status().ok());
}

TEST(CudaRingTest, DeviceSideHopLimitFullQueueAndFailures) {
  GB_REQUIRE_CUDA();
  ring::CudaRingServerOptions options;
  options.max_hops = 4;
  options.internal_queue_slots = 4;
  Rig rig(16, {}, 4, options);
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t a = rig.client->activate(kCounterType, {}, far_deadline()).value();
  const std::uint32_t b = rig.client->activate(kCounterType, {}, far_deadline()).value();
  ASSERT_TRUE(rig.call(a, kRelay, words({a, a, 4})).ok());
  auto beyond = rig.call(a, kRelay, words({a, a, 5}));
  ASSERT_FALSE(beyond.ok());
  EXPECT_EQ(beyond.error().code(), ErrorCode::resource_exhausted);
  EXPECT_THAT(beyond.error().message(), HasSubstr("device-side hop limit of 4 exceeded"));
  auto full = rig.call(a, kPostAdds, words({b, 5}));
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code(), ErrorCode::resource_exhausted);
  EXPECT_THAT(full.error().message(), HasSubstr("server-internal message queue full (4 slots)"));
  EXPECT_EQ(rig.counter(b), 0u);
  ASSERT_TRUE(rig.call(a, kPostAdds, words({b, 4})).ok());
  EXPECT_EQ(rig.counter(b), 4u);

  auto reserved = rig.call(a, kTryPost, words({b, ring::kDeactivateHandler, 0}));
  ASSERT_FALSE(reserved.ok());
  EXPECT_EQ(reserved.error().code(), ErrorCode::invalid_argument);
  EXPECT_THAT(reserved.error().message(), HasSubstr("reserved handler id"));
  auto too_long = rig.call(a, kTryPost, words({b, kAdd, 201}));
  ASSERT_FALSE(too_long.ok());
  EXPECT_THAT(too_long.error().message(), HasSubstr("inline limit"));
  auto aborted = rig.call(a, kPostThenFail, words({b}));
  ASSERT_FALSE(aborted.ok());
  EXPECT_EQ(aborted.error().code(), ErrorCode::aborted);
  EXPECT_EQ(rig.counter(b), 4u);  // the failing handler's post was dropped
  ASSERT_TRUE(rig.call(a, kTryPost, words({b, kFail, 0})).ok());
  rig.counter(b);  // the posted message ran after its poster's reply, before this call
  EXPECT_EQ(rig.server->stats().internal_failures, 1u);
  EXPECT_THAT(rig.server->last_internal_error(), HasSubstr("handler 4 failed with code 3"));
}

TEST(CudaRingTest, DrainFinishesDeviceChainsFirst) {
  GB_REQUIRE_CUDA();
  Rig rig(16, {});
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t a = rig.client->activate(kCounterType, {}, far_deadline()).value();
  const std::uint32_t b = rig.client->activate(kCounterType, {}, far_deadline()).value();
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

// Last in the file: a trapped kernel leaves the process's CUDA context unusable.
TEST(CudaRingTest, ZZDeadKernelIsReportedByWatchdogAndKernelStatus) {
  GB_REQUIRE_CUDA();
  ring::RingClientOptions options;
  options.dead_after = std::chrono::milliseconds(300);
  Rig rig(4, options);
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.client->activate(kCounterType, {}, far_deadline()).value();
  auto crash = rig.client->try_send(actor, kTrap, {}).value();
  Result<ring::Reply> reply = crash.get();
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.error().code(), ErrorCode::unavailable);
  EXPECT_THAT(reply.error().message(), HasSubstr("ring server dead"));
  Status waited = rig.server->wait();
  ASSERT_FALSE(waited.ok());
  EXPECT_FALSE(rig.server->kernel_status().ok());
}

}  // namespace
