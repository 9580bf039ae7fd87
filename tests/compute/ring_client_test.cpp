// RingClient's call table and dispatcher threads on the CPU server: option checks, the bound on
// calls in flight (try_send refused, send waiting for a free entry or timing out), exactly-once
// delivery with several dispatcher threads over 4 shards under many producers (with a small table,
// so entries are reused constantly), callbacks on the dispatcher thread that serves the shard, and
// stop, drain, a dead server and a destroyed client while several threads dispatch (every callback
// runs exactly once).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>
#include <vector>

#include "gpubridge/compute/ring.hpp"
#include "cpu_ring_rig.hpp"
#include "ring_test_support.hpp"

namespace ring = gpubridge::compute::ring;
using gpubridge::ErrorCode;
using gpubridge::Result;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

namespace {

using namespace gpubridge::testing::ring_support;  // words, bytes_of, handlers, Gate, ...

constexpr std::uint32_t kShards = 4;
constexpr std::uint32_t kCounterType = 1;
constexpr std::uint32_t kEcho = 1;  // counts the message in the actor state, echoes the payload
constexpr std::uint32_t kHold = 2;  // waits on the test's gate
constexpr std::uint32_t kTrap = 3;  // kills the server (HandlerTrap)

ring::HandlerTable make_handlers(Gate* gate) {
  ring::HandlerTable table;
  EXPECT_TRUE(table.add(counting_echo(kEcho, kCounterType)));
  EXPECT_TRUE(table.add(waiting_on(kHold, kCounterType, gate)));
  EXPECT_TRUE(table.add(trapping(kTrap, kCounterType)));
  return table;
}

ring::RingConfig config_of(std::uint32_t shards, std::uint32_t slots, std::uint32_t actors = 16) {
  ring::RingConfig config;
  config.shards = shards;
  config.request_slots = slots;
  config.completion_slots = slots;
  config.pool_chunk_bytes = 4096;
  config.pool_chunks = 64;
  config.actor_types = {{kCounterType, 64, actors}};
  return config;
}

ring::RingClientOptions options_of(std::uint32_t dispatcher_threads, std::uint32_t max_pending_calls = 0,
                                   std::chrono::milliseconds dead_after = std::chrono::minutes(10)) {
  ring::RingClientOptions options;
  options.dispatcher_threads = dispatcher_threads;
  options.max_pending_calls = max_pending_calls;
  options.dead_after = dead_after;  // long by default: held handlers stop heartbeats on purpose
  return options;
}

struct Rig : gpubridge::testing::ring_support::CpuRingRig {
  Rig(const ring::RingConfig& config, ring::RingClientOptions options)
      : CpuRingRig(config, [](Gate* g) { return make_handlers(g); }, options) {}
  // Activates n actors (ids 0..n-1: actor i is on shard i % shards).
  std::vector<std::uint32_t> activate_all(std::uint32_t n) {
    std::vector<std::uint32_t> ids;
    for (std::uint32_t i = 0; i < n; ++i) ids.push_back(client->activate(kCounterType, {}, far_deadline()).value());
    return ids;
  }
  std::uint64_t deactivate_count(std::uint32_t actor) {
    return u64_of(client->deactivate(actor, far_deadline()).value());
  }
};

// Counts callbacks per message id and wakes a waiter when `expected` have run.
class Tally {
 public:
  explicit Tally(std::size_t ids) : runs_(ids) {}
  void ran(std::size_t id, const Result<ring::Reply>& result) {
    runs_[id].fetch_add(1);
    // Notified under the lock: once a waiter sees the count, this call no longer touches the tally.
    std::lock_guard lock(mutex_);
    if (result.ok()) {
      ++ok_;
    } else {
      ++failures_[result.error().code()];
    }
    ++total_;
    cv_.notify_all();
  }
  // Waits until `count` callbacks have run; false if that takes longer than a minute (a lost call).
  bool wait_for(std::size_t count) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, std::chrono::minutes(1), [&] { return total_ >= count; });
  }
  std::size_t runs(std::size_t id) const { return runs_[id].load(); }
  std::size_t ok() {
    std::lock_guard lock(mutex_);
    return ok_;
  }
  std::size_t failures(ErrorCode code) {
    std::lock_guard lock(mutex_);
    return failures_[code];
  }
  std::size_t total() {
    std::lock_guard lock(mutex_);
    return total_;
  }

 private:
  std::vector<std::atomic<std::size_t>> runs_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::size_t ok_ = 0;
  std::size_t total_ = 0;
  std::map<ErrorCode, std::size_t> failures_;
};

TEST(RingClientTest, OptionsAreValidatedWithClearErrors) {
  auto memory = ring::RingMemory::create(config_of(kShards, 8)).value();
  auto expect_invalid = [&](ring::RingClientOptions options, const std::string& text) {
    auto client = ring::RingClient::create(*memory, options);
    ASSERT_FALSE(client.ok()) << text;
    EXPECT_EQ(client.error().code(), ErrorCode::invalid_argument);
    EXPECT_THAT(client.error().message(), HasSubstr(text));
  };
  expect_invalid(options_of(0), "dispatcher_threads = 0 is outside 1..4");
  expect_invalid(options_of(kShards + 1), "dispatcher_threads = 5 is outside 1..4");
  expect_invalid(options_of(1, ring::kMaxPendingCalls + 1),
                 "max_pending_calls = " + std::to_string(ring::kMaxPendingCalls + 1) + " is outside 1..");
  for (std::uint32_t threads = 1; threads <= kShards; ++threads) {
    EXPECT_TRUE(ring::RingClient::create(*memory, options_of(threads, 1)).ok()) << threads;
  }
}

TEST(RingClientTest, PendingBoundRefusesTrySendAndMakesSendWait) {
  Rig rig(config_of(1, 8), options_of(1, /*max_pending_calls=*/3));
  const std::uint32_t actor = rig.activate_all(1)[0];
  std::vector<std::future<Result<ring::Reply>>> queued;
  queued.push_back(rig.client->try_send(actor, kHold, {}).value());
  rig.gate.wait_entered();
  queued.push_back(rig.client->try_send(actor, kEcho, bytes_of(1)).value());
  queued.push_back(rig.client->try_send(actor, kEcho, bytes_of(2)).value());
  EXPECT_EQ(rig.client->pending_calls(), 3u);

  // Ring slots are free (8 of them), the table is not.
  auto refused = rig.client->try_send(actor, kEcho, bytes_of(3));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::resource_exhausted);
  EXPECT_THAT(refused.error().message(), HasSubstr("too many calls in flight (3)"));
  gpubridge::Status refused_async = rig.client->try_send_async(actor, kEcho, bytes_of(3), [](Result<ring::Reply>) {
    ADD_FAILURE() << "a refused call's callback ran";
  });
  ASSERT_FALSE(refused_async.ok());
  EXPECT_EQ(refused_async.error().code(), ErrorCode::resource_exhausted);
  EXPECT_THAT(refused_async.error().message(), HasSubstr("too many calls in flight (3)"));

  auto late = rig.client->send(actor, kEcho, bytes_of(4), Clock::now() + std::chrono::milliseconds(20));
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code(), ErrorCode::deadline_exceeded);
  EXPECT_THAT(late.error().message(), HasSubstr("free call entry"));
  EXPECT_EQ(rig.client->pending_calls(), 3u);  // refusals gave their entries back

  // A sender with a distant deadline gets in once a call completes.
  std::thread waiter([&] {
    auto sent = rig.client->send(actor, kEcho, bytes_of(1234), far_deadline());
    ASSERT_TRUE(sent.ok()) << sent.error().to_string();
    EXPECT_EQ(u64_of(sent->get().value()), 1234u);
  });
  rig.gate.open();
  waiter.join();
  for (std::size_t i = 0; i < queued.size(); ++i) {
    Result<ring::Reply> reply = queued[i].get();
    ASSERT_TRUE(reply.ok()) << reply.error().to_string();
    if (i > 0) {
      EXPECT_EQ(u64_of(*reply), i);
    }
  }
  EXPECT_EQ(rig.client->pending_calls(), 0u);
  EXPECT_EQ(rig.deactivate_count(actor), 3u);  // two queued echoes and the waiter's
}

// (dispatcher threads, max_pending_calls: 0 = default from the geometry)
class ManyProducers : public ::testing::TestWithParam<std::tuple<std::uint32_t, std::uint32_t>> {};

TEST_P(ManyProducers, EveryMessageCompletesExactlyOnceOnItsShardsDispatcher) {
  const auto [threads, max_pending] = GetParam();
  Rig rig(config_of(kShards, 64), options_of(threads, max_pending));
  constexpr std::uint32_t kActors = 16;
  const std::vector<std::uint32_t> actors = rig.activate_all(kActors);

  constexpr std::size_t kProducers = 8;
  constexpr std::size_t kPerProducer = 10'000;
  constexpr std::size_t kTotal = kProducers * kPerProducer;
  Tally tally(kTotal);
  std::atomic<std::size_t> wrong{0};
  std::mutex where_mutex;
  std::map<std::uint32_t, std::set<std::thread::id>> callback_threads;  // by shard
  std::vector<std::thread> producers;
  for (std::size_t p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (std::size_t i = 0; i < kPerProducer; ++i) {
        const std::size_t id = p * kPerProducer + i;
        const std::uint32_t actor = actors[id % kActors];
        auto callback = [&, id, actor](Result<ring::Reply> reply) {
          if (!reply.ok() || u64_of(*reply) != id) wrong.fetch_add(1);
          {
            std::lock_guard lock(where_mutex);
            callback_threads[ring::shard_of(actor, kShards)].insert(std::this_thread::get_id());
          }
          tally.ran(id, reply);
        };
        // Alternate the waiting and the non-waiting forms; a refused try is retried with a wait.
        gpubridge::Status sent = i % 2 == 0 ? rig.client->try_send_async(actor, kEcho, bytes_of(id), callback)
                                            : gpubridge::Status{gpubridge::Error(ErrorCode::resource_exhausted, "")};
        if (!sent.ok()) {
          ASSERT_EQ(sent.error().code(), ErrorCode::resource_exhausted) << sent.error().to_string();
          sent = rig.client->send_async(actor, kEcho, bytes_of(id), far_deadline(), callback);
        }
        ASSERT_TRUE(sent.ok()) << sent.error().to_string();
      }
    });
  }
  for (auto& producer : producers) producer.join();
  ASSERT_TRUE(tally.wait_for(kTotal)) << tally.total() << " of " << kTotal << " callbacks ran";
  EXPECT_EQ(wrong.load(), 0u);
  std::size_t not_once = 0;
  for (std::size_t id = 0; id < kTotal; ++id) not_once += tally.runs(id) != 1;
  EXPECT_EQ(not_once, 0u);
  EXPECT_EQ(rig.client->pending_calls(), 0u);
  std::uint64_t counted = 0;
  for (std::uint32_t actor : actors) counted += rig.deactivate_count(actor);
  EXPECT_EQ(counted, kTotal);  // the server ran every message exactly once

  // Each shard's callbacks ran on one thread; shards s and s' share it iff s % threads == s' % threads.
  ASSERT_EQ(callback_threads.size(), kShards);
  for (std::uint32_t s = 0; s < kShards; ++s) {
    ASSERT_EQ(callback_threads[s].size(), 1u) << "shard " << s;
    for (std::uint32_t other = 0; other < kShards; ++other) {
      EXPECT_EQ(*callback_threads[s].begin() == *callback_threads[other].begin(), s % threads == other % threads)
          << "shards " << s << " and " << other;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(DispatchersAndBounds, ManyProducers,
                         ::testing::Values(std::make_tuple(1u, 0u), std::make_tuple(2u, 0u),
                                           std::make_tuple(4u, 0u), std::make_tuple(2u, 16u),
                                           std::make_tuple(4u, 5u)),
                         [](const auto& test_param) {
                           return "threads" + std::to_string(std::get<0>(test_param.param)) + "_bound" +
                                  std::to_string(std::get<1>(test_param.param));
                         });

// Producers keep every shard busy; producer 0 runs `interrupt` a quarter of the way through its
// messages (so the rest of its messages, and the others', meet the interrupted server). Returns
// once every accepted call's callback has run, with the tally of outcomes.
struct Storm {
  static constexpr std::size_t kProducers = 4;
  static constexpr std::size_t kPerProducer = 5'000;
  static constexpr std::size_t kTotal = kProducers * kPerProducer;
  Tally tally{kTotal};
  std::atomic<std::size_t> accepted{0};
  std::atomic<std::size_t> refused{0};

  template <class Interrupt>
  void run(Rig& rig, const std::vector<std::uint32_t>& actors, Interrupt interrupt) {
    std::vector<std::thread> producers;
    for (std::size_t p = 0; p < kProducers; ++p) {
      producers.emplace_back([&, p] {
        for (std::size_t i = 0; i < kPerProducer; ++i) {
          if (p == 0 && i == kPerProducer / 4) interrupt();
          const std::size_t id = p * kPerProducer + i;
          gpubridge::Status sent =
              rig.client->send_async(actors[id % actors.size()], kEcho, bytes_of(id), far_deadline(),
                                     [this, id](Result<ring::Reply> reply) { tally.ran(id, reply); });
          if (sent.ok()) {
            accepted.fetch_add(1);
          } else {
            EXPECT_EQ(sent.error().code(), ErrorCode::unavailable) << sent.error().to_string();
            refused.fetch_add(1);
          }
        }
      });
    }
    for (auto& producer : producers) producer.join();
    ASSERT_TRUE(tally.wait_for(accepted.load())) << tally.total() << " of " << accepted.load() << " callbacks ran";
  }
  // Every accepted call ran its callback exactly once; refused ones never.
  void expect_exactly_once() {
    EXPECT_EQ(accepted.load() + refused.load(), kTotal);
    EXPECT_EQ(tally.total(), accepted.load());
    std::size_t not_once = 0;
    for (std::size_t id = 0; id < kTotal; ++id) not_once += tally.runs(id) > 1;
    EXPECT_EQ(not_once, 0u);
  }
};

class Interrupted : public ::testing::TestWithParam<std::uint32_t> {};  // dispatcher threads

TEST_P(Interrupted, StopWhileDispatchingDeliversEveryCallOnce) {
  Rig rig(config_of(kShards, 64), options_of(GetParam()));
  const std::vector<std::uint32_t> actors = rig.activate_all(16);
  Storm storm;
  storm.run(rig, actors, [&] { rig.server->request_stop(); });
  rig.server->wait();
  storm.expect_exactly_once();
  EXPECT_EQ(storm.tally.ok() + storm.tally.failures(ErrorCode::cancelled), storm.accepted.load());
  EXPECT_EQ(rig.client->pending_calls(), 0u);
}

TEST_P(Interrupted, DrainWhileDispatchingCompletesEveryAcceptedCall) {
  Rig rig(config_of(kShards, 64), options_of(GetParam()));
  const std::vector<std::uint32_t> actors = rig.activate_all(16);
  Storm storm;
  storm.run(rig, actors, [&] { rig.server->request_drain(); });
  rig.server->wait();
  storm.expect_exactly_once();
  // Drain finishes what was queued; a call published after the last shard stopped is cancelled.
  EXPECT_EQ(storm.tally.ok() + storm.tally.failures(ErrorCode::cancelled), storm.accepted.load());
  EXPECT_GT(storm.tally.ok(), 0u);
  EXPECT_EQ(rig.client->pending_calls(), 0u);
}

TEST_P(Interrupted, DeadServerWhileDispatchingFailsEveryPendingCallOnce) {
  Rig rig(config_of(kShards, 64), options_of(GetParam(), 0, std::chrono::milliseconds(300)));
  const std::vector<std::uint32_t> actors = rig.activate_all(16);
  Storm storm;
  std::future<Result<ring::Reply>> trapped;
  storm.run(rig, actors, [&] { trapped = rig.client->send(actors[1], kTrap, {}, far_deadline()).value(); });
  Result<ring::Reply> trap_result = trapped.get();
  ASSERT_FALSE(trap_result.ok());
  EXPECT_EQ(trap_result.error().code(), ErrorCode::unavailable);
  EXPECT_THAT(trap_result.error().message(), HasSubstr("ring server dead"));
  storm.expect_exactly_once();
  EXPECT_EQ(storm.tally.ok() + storm.tally.failures(ErrorCode::unavailable), storm.accepted.load());
  // Producer 0's later messages to the trapped shard queue behind the trap: none of them runs.
  EXPECT_GT(storm.tally.failures(ErrorCode::unavailable) + storm.refused.load(), 0u);
  EXPECT_EQ(rig.client->pending_calls(), 0u);
}

TEST_P(Interrupted, DestroyedClientFailsItsPendingCallsOnce) {
  Rig rig(config_of(kShards, 64), options_of(GetParam()));
  const std::vector<std::uint32_t> actors = rig.activate_all(8);
  Tally tally(64);
  // Every shard's thread holds a message; more wait behind each.
  for (std::uint32_t s = 0; s < kShards; ++s) {
    ASSERT_TRUE(rig.client->try_send_async(actors[s], kHold, {}, [&tally, s](Result<ring::Reply> r) {
      tally.ran(s, r);
    }));
  }
  rig.gate.wait_entered(static_cast<int>(kShards));
  for (std::size_t id = kShards; id < 64; ++id) {
    ASSERT_TRUE(rig.client->try_send_async(actors[id % actors.size()], kEcho, bytes_of(id),
                                           [&tally, id](Result<ring::Reply> r) { tally.ran(id, r); }));
  }
  EXPECT_EQ(rig.client->pending_calls(), 64u);
  rig.client.reset();
  EXPECT_EQ(tally.total(), 64u);
  EXPECT_EQ(tally.failures(ErrorCode::cancelled), 64u);
  for (std::size_t id = 0; id < 64; ++id) EXPECT_EQ(tally.runs(id), 1u) << id;
  // The server still finishes them; nobody is told twice.
  rig.gate.open();
  rig.server->drain();
  EXPECT_EQ(tally.total(), 64u);
}

INSTANTIATE_TEST_SUITE_P(DispatcherThreads, Interrupted, ::testing::Values(1u, 2u, 4u),
                         [](const auto& test_param) { return "threads" + std::to_string(test_param.param); });

}  // namespace
