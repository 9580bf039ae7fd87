// Ring grains on the CPU ring server: grain calls travel as ring messages, state survives
// deactivation, failures of the server reach callers; device-side messaging (forward chains,
// fan-out posts) stays inside the server, with its bounds reported as clear errors.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gpubridge/grains/ring_grain.hpp"
#include "gpubridge/runtime/runtime.hpp"

namespace gpubridge::grains {
namespace {

namespace ring = compute::ring;
using runtime::Task;
using Bytes = std::vector<std::byte>;

constexpr std::uint32_t kCounterType = 1;
constexpr std::uint32_t kCallers = 4;
// Counter state: int64 total, then the last sequence number seen from each caller.
constexpr std::uint32_t kStateBytes = 8 + 4 * kCallers;

constexpr std::uint32_t kAdd = 1;         // int64 delta -> int64 total
constexpr std::uint32_t kGet = 2;         // -> int64 total
constexpr std::uint32_t kOrderedAdd = 3;  // {u32 caller, u32 seq, i64 delta} -> int64 total
constexpr std::uint32_t kRelay = 10;      // {i64 delta, u32 next...}: add, forward to next
constexpr std::uint32_t kFanOut = 11;     // {i64 delta, u32 target...}: post kAdd to each
constexpr std::uint32_t kPostToUnknown = 12;
constexpr std::uint32_t kForwardTwice = 13;
constexpr std::uint32_t kCrash = 20;
constexpr std::uint32_t kUnknownHandler = 99;

template <typename T>
void put(Bytes& out, T value) {
  const auto* p = reinterpret_cast<const std::byte*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}
template <typename T>
T get(std::span<const std::byte> in, std::size_t offset) {
  T value{};
  std::memcpy(&value, in.data() + offset, sizeof(T));
  return value;
}
Result<std::size_t> reply_total(std::span<const std::byte> state, std::span<std::byte> out) {
  std::memcpy(out.data(), state.data(), 8);
  return std::size_t{8};
}

ring::HandlerTable counter_handlers() {
  ring::HandlerTable t;
  auto add = [&t](std::uint32_t id, ring::HandlerFn fn) {
    EXPECT_TRUE(t.add({id, kCounterType, std::move(fn)}).ok());
  };
  auto add_messaging = [&t](std::uint32_t id, ring::MessagingHandlerFn fn) {
    ring::HandlerSpec spec;
    spec.handler_id = id;
    spec.actor_type = kCounterType;
    spec.messaging_fn = std::move(fn);
    EXPECT_TRUE(t.add(std::move(spec)).ok());
  };
  add(kAdd, [](std::span<std::byte> state, std::span<const std::byte> in, std::span<std::byte> out) -> Result<std::size_t> {
    const auto total = get<std::int64_t>(state, 0) + get<std::int64_t>(in, 0);
    std::memcpy(state.data(), &total, 8);
    return reply_total(state, out);
  });
  add(kGet, [](std::span<std::byte> state, std::span<const std::byte>, std::span<std::byte> out) {
    return reply_total(state, out);
  });
  add(kOrderedAdd, [](std::span<std::byte> state, std::span<const std::byte> in, std::span<std::byte> out) -> Result<std::size_t> {
    const auto caller = get<std::uint32_t>(in, 0);
    const auto seq = get<std::uint32_t>(in, 4);
    const std::size_t seen_at = 8 + 4 * std::size_t{caller};
    const auto last = get<std::uint32_t>(state, seen_at);
    if (seq != last + 1) {
      return Error(ErrorCode::failed_precondition,
                   "caller " + std::to_string(caller) + " sent " + std::to_string(seq) + " after " + std::to_string(last));
    }
    std::memcpy(state.data() + seen_at, &seq, 4);
    const auto total = get<std::int64_t>(state, 0) + get<std::int64_t>(in, 8);
    std::memcpy(state.data(), &total, 8);
    return reply_total(state, out);
  });
  add(kCrash, [](std::span<std::byte>, std::span<const std::byte>, std::span<std::byte>) -> Result<std::size_t> {
    throw ring::HandlerTrap{};
  });
  // Adds delta to this counter; forwards the rest of the chain to the next actor, or replies with
  // {this counter's total, hops taken} at the end of the chain.
  add_messaging(kRelay, [](ring::HandlerContext& ctx) -> Result<std::size_t> {
    const auto in = ctx.payload();
    const auto delta = get<std::int64_t>(in, 0);
    const auto total = get<std::int64_t>(ctx.state(), 0) + delta;
    std::memcpy(ctx.state().data(), &total, 8);
    if (in.size() > 8) {
      Bytes rest;
      put(rest, delta);
      rest.insert(rest.end(), in.begin() + 12, in.end());
      if (Status s = ctx.forward(get<std::uint32_t>(in, 8), kRelay, rest); !s) return s.error();
      return std::size_t{0};
    }
    std::memcpy(ctx.reply_area().data(), &total, 8);
    const std::uint32_t hops = ctx.hops();
    std::memcpy(ctx.reply_area().data() + 8, &hops, 4);
    return std::size_t{12};
  });
  add_messaging(kFanOut, [](ring::HandlerContext& ctx) -> Result<std::size_t> {
    const auto in = ctx.payload();
    Bytes delta(in.begin(), in.begin() + 8);
    std::uint32_t posted = 0;
    for (std::size_t at = 8; at + 4 <= in.size(); at += 4, ++posted) {
      if (Status s = ctx.post(get<std::uint32_t>(in, at), kAdd, delta); !s) return s.error();
    }
    std::memcpy(ctx.reply_area().data(), &posted, 4);
    return std::size_t{4};
  });
  add_messaging(kPostToUnknown, [](ring::HandlerContext& ctx) -> Result<std::size_t> {
    if (Status s = ctx.post(ctx.actor_id(), kUnknownHandler, {}); !s) return s.error();
    return std::size_t{0};
  });
  add_messaging(kForwardTwice, [](ring::HandlerContext& ctx) -> Result<std::size_t> {
    Bytes one;
    put(one, std::int64_t{1});
    if (Status s = ctx.forward(ctx.actor_id(), kAdd, one); !s) return s.error();
    if (Status s = ctx.forward(ctx.actor_id(), kAdd, one); !s) return s.error();
    return std::size_t{0};
  });
  return t;
}

struct HostSetup {
  RingHostOptions options;
  std::uint32_t max_actors = 0;
};

HostSetup host_options(std::uint32_t max_actors) {
  HostSetup setup;
  RingHostOptions& o = setup.options;
  o.placement = RingPlacement::cpu;
  o.ring.request_slots = 256;
  o.ring.completion_slots = 256;
  o.ring.pool_chunks = 16;
  setup.max_actors = max_actors;
  return setup;
}

std::unique_ptr<RingHost> make_host(HostSetup setup) {
  RingProgram program;
  program.actor_types = {{"counter", kCounterType, kStateBytes, setup.max_actors}};
  program.cpu_handlers = counter_handlers();
  auto host = RingHost::create(std::move(setup.options), std::move(program));
  EXPECT_TRUE(host.ok()) << (host.ok() ? "" : host.error().to_string());
  if (host.ok()) {
    EXPECT_EQ((*host)->placement().backend, RingBackend::cpu);
    EXPECT_FALSE((*host)->placement().fell_back());
  }
  return host.ok() ? std::move(host).value() : nullptr;
}

struct Silo {
  std::unique_ptr<RingHost> host;
  std::unique_ptr<runtime::Runtime> rt;  // destroyed first: its grains deactivate into the host
  std::atomic<int> unhandled{0};
};

void start_runtime(Silo& silo) {
  runtime::RuntimeOptions ro;
  ro.worker_threads = 2;
  ro.on_unhandled_error = [&silo](std::string_view) { silo.unhandled.fetch_add(1); };
  auto rt = runtime::Runtime::create(ro);
  ASSERT_TRUE(rt.ok());
  silo.rt = std::move(rt).value();
  RingHost& host = *silo.host;
  ASSERT_TRUE(silo.rt->register_grain<RingGrain>({}, [&host] {
    return std::make_unique<RingGrain>(host, RingGrainKind{kCounterType, {}});
  }).ok());
}

Bytes i64(std::int64_t v) {
  Bytes b;
  put(b, v);
  return b;
}

std::int64_t call_total(runtime::Runtime& rt, const std::string& key, std::uint32_t handler, Bytes payload) {
  Bytes reply = rt.run(rt.get<RingGrain>(key).call<&RingGrain::call>(handler, std::move(payload),
                                                                      std::uint32_t{64}));
  EXPECT_EQ(reply.size(), 8u);
  return reply.size() == 8 ? get<std::int64_t>(reply, 0) : -1;
}

ErrorCode failure_of(runtime::Runtime& rt, const std::string& key, std::uint32_t handler, Bytes payload,
                     std::string& message) {
  try {
    rt.run(rt.get<RingGrain>(key).call<&RingGrain::call>(handler, std::move(payload), std::uint32_t{64}));
  } catch (const ErrorException& e) {
    message = e.error().to_string();
    return e.error().code();
  }
  message = "call succeeded";
  return ErrorCode::ok;
}

void wait_for_parked(RingHost& host, std::size_t count) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (host.parked_count() < count && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_EQ(host.parked_count(), count);
}

TEST(RingGrain, ManyCallersKeepPerGrainStateAndOrder) {
  Silo silo;
  silo.host = make_host(host_options(16));
  ASSERT_NE(silo.host, nullptr);
  start_runtime(silo);
  constexpr int kGrains = 8;
  constexpr std::uint32_t kCalls = 25;
  std::atomic<int> done{0};
  std::atomic<int> errors{0};
  for (int g = 0; g < kGrains; ++g) {
    for (std::uint32_t c = 0; c < kCallers; ++c) {
      ASSERT_TRUE(silo.rt->spawn([](runtime::Runtime& rt, std::string key, std::uint32_t caller,
                                    std::atomic<int>& d, std::atomic<int>& e) -> Task<void> {
        auto grain = rt.get<RingGrain>(key);
        for (std::uint32_t seq = 1; seq <= kCalls; ++seq) {
          Bytes payload;
          put(payload, caller);
          put(payload, seq);
          put(payload, std::int64_t{caller + 1});
          try {
            co_await grain.call<&RingGrain::call>(kOrderedAdd, std::move(payload), std::uint32_t{64});
          } catch (const ErrorException&) {
            e.fetch_add(1);
          }
        }
        d.fetch_add(1);
      }(*silo.rt, "g" + std::to_string(g), c, done, errors)));
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (done.load() < kGrains * static_cast<int>(kCallers) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_EQ(done.load(), kGrains * static_cast<int>(kCallers));
  EXPECT_EQ(errors.load(), 0);
  // Each caller c adds c + 1 per call: 25 * (1 + 2 + 3 + 4) per grain.
  for (int g = 0; g < kGrains; ++g) EXPECT_EQ(call_total(*silo.rt, "g" + std::to_string(g), kGet, {}), 250);
  EXPECT_EQ(silo.host->cpu_server()->stats().internal_messages, 0u);
}

// A host over 4 shards: grains land on every shard (actor id % 4), each keeps its state, and the
// liveness check watches every shard's heartbeat.
TEST(RingGrain, ShardedHostServesGrainsOnEveryShard) {
  Silo silo;
  HostSetup setup = host_options(16);
  setup.options.ring.shards = 4;
  silo.host = make_host(std::move(setup));
  ASSERT_NE(silo.host, nullptr);
  ASSERT_EQ(silo.host->memory().shard_count(), 4u);
  start_runtime(silo);
  constexpr int kGrains = 8;
  for (int round = 1; round <= 10; ++round) {
    for (int g = 0; g < kGrains; ++g) {
      EXPECT_EQ(call_total(*silo.rt, "g" + std::to_string(g), kAdd, i64(g + 1)), (g + 1) * round);
    }
  }
  for (std::uint32_t s = 0; s < 4; ++s) {
    EXPECT_GT(std::atomic_ref<std::uint64_t>(silo.host->memory().shard(s).request_dequeue).load(), 0u) << s;
  }
  EXPECT_TRUE(silo.host->server_status(std::chrono::milliseconds(2000)).ok());
  EXPECT_EQ(silo.host->cpu_server()->stats().host_messages, kGrains * 11u);  // activations and adds
}

TEST(RingGrain, DeactivationParksStateAndReactivationRestoresIt) {
  Silo silo;
  silo.host = make_host(host_options(2));  // two actor ids: grains must give theirs back
  ASSERT_NE(silo.host, nullptr);
  start_runtime(silo);
  runtime::Runtime& rt = *silo.rt;
  EXPECT_EQ(call_total(rt, "a", kAdd, i64(5)), 5);
  rt.run(rt.get<RingGrain>("a").call<&RingGrain::evict>());
  wait_for_parked(*silo.host, 1);

  EXPECT_EQ(call_total(rt, "b", kAdd, i64(7)), 7);
  EXPECT_EQ(call_total(rt, "c", kAdd, i64(9)), 9);  // uses the id "a" gave back
  // Every id is taken: "a" cannot activate; its parked state waits.
  std::string message;
  EXPECT_EQ(failure_of(rt, "a", kGet, {}, message), ErrorCode::resource_exhausted);
  EXPECT_NE(message.find("in use"), std::string::npos) << message;
  EXPECT_EQ(silo.host->parked_count(), 1u);

  rt.run(rt.get<RingGrain>("b").call<&RingGrain::evict>());
  wait_for_parked(*silo.host, 2);
  EXPECT_EQ(call_total(rt, "a", kAdd, i64(1)), 6);
  EXPECT_EQ(silo.host->parked_count(), 1u);  // "b" still parked

  silo.rt->stop();  // deactivates "a" and "c" into the host
  EXPECT_EQ(silo.host->parked_count(), 3u);
  EXPECT_EQ(silo.unhandled.load(), 0);
}

TEST(RingGrain, UnknownHandlerAndStoppedServerFailCalls) {
  Silo silo;
  silo.host = make_host(host_options(4));
  ASSERT_NE(silo.host, nullptr);
  start_runtime(silo);
  std::string message;
  EXPECT_EQ(failure_of(*silo.rt, "x", kUnknownHandler, {}, message), ErrorCode::not_found);
  EXPECT_NE(message.find("unknown handler id 99"), std::string::npos) << message;
  EXPECT_EQ(call_total(*silo.rt, "x", kAdd, i64(2)), 2);  // the grain still works

  ASSERT_TRUE(silo.host->stop().ok());
  EXPECT_EQ(failure_of(*silo.rt, "x", kAdd, i64(1), message), ErrorCode::unavailable);
  EXPECT_NE(message.find("stopped"), std::string::npos) << message;
  silo.rt->stop();  // "x" cannot copy its state out: reported, not hung
  EXPECT_GE(silo.unhandled.load(), 1);
}

TEST(RingGrain, DeadServerFailsCallsWithUnavailableInsteadOfHanging) {
  Silo silo;
  HostSetup o = host_options(4);
  o.options.client.dead_after = std::chrono::milliseconds(200);
  silo.host = make_host(o);
  ASSERT_NE(silo.host, nullptr);
  start_runtime(silo);
  EXPECT_EQ(call_total(*silo.rt, "x", kAdd, i64(1)), 1);
  std::string message;
  EXPECT_EQ(failure_of(*silo.rt, "x", kCrash, {}, message), ErrorCode::unavailable);
  EXPECT_NE(message.find("dead"), std::string::npos) << message;
  EXPECT_EQ(failure_of(*silo.rt, "x", kGet, {}, message), ErrorCode::unavailable);
  EXPECT_EQ(failure_of(*silo.rt, "y", kGet, {}, message), ErrorCode::unavailable);  // cannot activate
  silo.rt->stop();
}

// Activates `count` grains and returns their actor ids.
std::vector<std::uint32_t> activate_grains(runtime::Runtime& rt, int count) {
  std::vector<std::uint32_t> ids;
  for (int i = 0; i < count; ++i) {
    ids.push_back(rt.run(rt.get<RingGrain>("n" + std::to_string(i)).call<&RingGrain::actor_id>()));
  }
  return ids;
}

TEST(RingGrainMessaging, ChainCrossesTheHostBoundaryOnlyAtItsEnds) {
  Silo silo;
  silo.host = make_host(host_options(8));
  ASSERT_NE(silo.host, nullptr);
  start_runtime(silo);
  runtime::Runtime& rt = *silo.rt;
  constexpr int kActors = 6;
  const std::vector<std::uint32_t> ids = activate_grains(rt, kActors);
  Bytes chain = i64(3);
  for (int i = 1; i < kActors; ++i) put(chain, ids[static_cast<std::size_t>(i)]);

  const ring::RingServerStats before = silo.host->cpu_server()->stats();
  Bytes reply = rt.run(rt.get<RingGrain>("n0").call<&RingGrain::call>(kRelay, std::move(chain), std::uint32_t{64}));
  const ring::RingServerStats after = silo.host->cpu_server()->stats();
  ASSERT_EQ(reply.size(), 12u);
  EXPECT_EQ(get<std::int64_t>(reply, 0), 3);  // the last actor's total
  EXPECT_EQ(get<std::uint32_t>(reply, 8), static_cast<std::uint32_t>(kActors - 1));
  EXPECT_EQ(after.host_messages - before.host_messages, 1u);
  EXPECT_EQ(after.completions - before.completions, 1u);
  EXPECT_EQ(after.internal_messages - before.internal_messages, static_cast<std::uint64_t>(kActors - 1));
  for (int i = 0; i < kActors; ++i) EXPECT_EQ(call_total(rt, "n" + std::to_string(i), kGet, {}), 3);
}

TEST(RingGrainMessaging, FanOutPostsLandBeforeTheNextHostMessage) {
  Silo silo;
  silo.host = make_host(host_options(8));
  ASSERT_NE(silo.host, nullptr);
  start_runtime(silo);
  runtime::Runtime& rt = *silo.rt;
  const std::vector<std::uint32_t> ids = activate_grains(rt, 6);
  Bytes fan = i64(4);
  for (std::size_t i = 1; i < ids.size(); ++i) put(fan, ids[i]);
  const ring::RingServerStats before = silo.host->cpu_server()->stats();
  for (int round = 0; round < 10; ++round) {
    Bytes reply = rt.run(rt.get<RingGrain>("n0").call<&RingGrain::call>(kFanOut, fan, std::uint32_t{64}));
    ASSERT_EQ(reply.size(), 4u);
    EXPECT_EQ(get<std::uint32_t>(reply, 0), 5u);
  }
  const ring::RingServerStats after = silo.host->cpu_server()->stats();
  EXPECT_EQ(after.host_messages - before.host_messages, 10u);
  EXPECT_EQ(after.internal_messages - before.internal_messages, 50u);
  EXPECT_EQ(after.internal_failures, 0u);
  for (int i = 1; i < 6; ++i) EXPECT_EQ(call_total(rt, "n" + std::to_string(i), kGet, {}), 40);
  EXPECT_EQ(call_total(rt, "n0", kGet, {}), 0);
}

TEST(RingGrainMessaging, BoundsExceededAreClearErrors) {
  Silo silo;
  HostSetup o = host_options(8);
  o.options.cpu_server.internal_queue_slots = 4;
  o.options.cpu_server.max_hops = 3;
  silo.host = make_host(o);
  ASSERT_NE(silo.host, nullptr);
  start_runtime(silo);
  runtime::Runtime& rt = *silo.rt;
  const std::vector<std::uint32_t> ids = activate_grains(rt, 6);
  std::string message;

  // Five posts into a queue of four: the handler fails and none of its posts is delivered.
  Bytes fan = i64(1);
  for (std::size_t i = 1; i < ids.size(); ++i) put(fan, ids[i]);
  EXPECT_EQ(failure_of(rt, "n0", kFanOut, fan, message), ErrorCode::resource_exhausted);
  EXPECT_NE(message.find("queue full (4 slots)"), std::string::npos) << message;
  for (int i = 1; i < 6; ++i) EXPECT_EQ(call_total(rt, "n" + std::to_string(i), kGet, {}), 0);

  // Four forwards with a hop limit of three: the caller gets the limit's error.
  Bytes chain = i64(1);
  for (std::size_t i = 1; i < 5; ++i) put(chain, ids[i]);
  EXPECT_EQ(failure_of(rt, "n0", kRelay, chain, message), ErrorCode::resource_exhausted);
  EXPECT_NE(message.find("hop limit of 3 exceeded"), std::string::npos) << message;

  EXPECT_EQ(failure_of(rt, "n0", kForwardTwice, {}, message), ErrorCode::failed_precondition);
  EXPECT_NE(message.find("forward() already called"), std::string::npos) << message;

  // A failed post has nobody to answer: it is counted and its error kept.
  rt.run(rt.get<RingGrain>("n0").call<&RingGrain::call>(kPostToUnknown, Bytes{}, std::uint32_t{64}));
  // Internal messages run before the next host message: after this get, the post has failed.
  EXPECT_EQ(call_total(rt, "n0", kGet, {}), 1);  // the relay's own add; forward-twice added nothing
  EXPECT_EQ(silo.host->cpu_server()->stats().internal_failures, 1u);
  EXPECT_NE(silo.host->cpu_server()->last_internal_error().find("unknown handler id 99"), std::string::npos)
      << silo.host->cpu_server()->last_internal_error();
}

}  // namespace
}  // namespace gpubridge::grains
