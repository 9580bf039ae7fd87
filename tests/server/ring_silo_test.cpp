// A silo hosting a ring from its configuration: ring programs registered in code, rings named in
// the configuration, ring grains reached through Silo::ring_host and called from other grains,
// states parked on deactivation and at stop, ring metrics, and bad ring configurations rejected
// before the silo starts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gpubridge/server/silo.hpp"
#include "gpubridge/telemetry/metrics.hpp"
#include "grains/ring_grain_program.hpp"
#include "ring_counter_grains.hpp"
#include "server/health.hpp"

namespace gpubridge::server {
namespace {

using namespace gpubridge::testing::ring_program;
using runtime::Task;
using ::testing::HasSubstr;

RingPrograms counter_programs() {
  RingPrograms programs;
  Status s = programs.add("counter", counter_program(/*max_actors=*/64));
  EXPECT_TRUE(s.ok()) << s.error().to_string();
  return programs;
}

SiloConfig ring_silo_config(const std::string& rings_json) {
  SiloConfig c;
  c.name = "ring-silo";
  c.workers = 2;
  c.enable_opencl = false;
  Status s = apply_json(c, rings_json, "test");
  EXPECT_TRUE(s.ok()) << s.error().to_string();
  return c;
}

constexpr const char* kCountersRing = R"({"rings": [{"name": "counters", "program": "counter", "placement": "auto",
  "request_slots": 256, "completion_slots": 256, "pool_chunks": 16, "actors": {"counter": 4}}]})";

void wait_for_parked(grains::RingHost& host, std::size_t count) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (host.parked_count() < count && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(host.parked_count(), count);
}

TEST(RingSilo, HostsTheConfiguredRingForGrainsCalledFromOtherGrains) {
  SiloConfig config = ring_silo_config(kCountersRing);
  config.http_enabled = true;
  config.http_port = 0;
  auto started = Silo::start(std::move(config), counter_programs());
  ASSERT_TRUE(started.ok()) << started.error().to_string();
  Silo& silo = **started;
  auto found = silo.ring_host("counters");
  ASSERT_TRUE(found.ok()) << found.error().to_string();
  grains::RingHost& host = **found;
  EXPECT_EQ(silo.ring_hosts().size(), 1u);
  const grains::RingHostPlacement placed = host.placement();
  EXPECT_EQ(placed.requested, grains::RingPlacement::automatic);
  if (placed.backend == grains::RingBackend::cpu) {
    EXPECT_TRUE(placed.fell_back()) << "auto on the CPU always says why";
  }

  runtime::Runtime& rt = silo.runtime();
  ASSERT_TRUE(rt.register_grain<Counter>({}, [&host] { return std::make_unique<Counter>(host); }).ok());
  ASSERT_TRUE(rt.register_grain<Tally>().ok());
  const std::vector<std::string> keys{"a", "b", "c"};
  EXPECT_EQ(rt.run(rt.get<Tally>("t").call<&Tally::add_to_each>(keys, std::int64_t{5})), 15);
  EXPECT_EQ(rt.run(rt.get<Tally>("t").call<&Tally::add_to_each>(keys, std::int64_t{2})), 21);
  EXPECT_EQ(rt.run(rt.get<Counter>("b").call<&Counter::total>()), 7);

  // The configuration's actor count (4) bounds the ring, not the program's default (64).
  EXPECT_EQ(rt.run(rt.get<Counter>("d").call<&Counter::add>(std::int64_t{1})), 1);
  try {
    rt.run(rt.get<Counter>("e").call<&Counter::add>(std::int64_t{1}));
    ADD_FAILURE() << "a fifth counter found an actor id";
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().code(), ErrorCode::resource_exhausted) << e.error().to_string();
  }

  // Deactivation parks the state; the next call restores it.
  rt.run(rt.get<Counter>("a").call<&Counter::evict>());
  wait_for_parked(host, 1);
  EXPECT_EQ(rt.run(rt.get<Counter>("a").call<&Counter::add>(std::int64_t{3})), 10);
  EXPECT_EQ(host.parked_count(), 0u);

  const std::string scrape = silo.metrics().prometheus_text();
  EXPECT_THAT(scrape, HasSubstr("gpubridge_ring_hosts{ring=\"counters\",backend=\"" +
                                std::string(grains::to_string(placed.backend)) + "\"} 1"));
  if (placed.fell_back()) {
    EXPECT_THAT(scrape, HasSubstr("gpubridge_ring_fallbacks_total{ring=\"counters\",reason=\"" + placed.fallback_reason +
                                  "\"} 1"));
  }
  EXPECT_THAT(scrape, HasSubstr("gpubridge_ring_messages_total{ring=\"counters\"}"));

  // The ring is one of the silo's health checks (GET /health, readiness).
  httplib::Client http(*silo.http_url());
  auto health = http.Get("/health");
  ASSERT_TRUE(health) << "GET /health failed";
  EXPECT_THAT(health->body, HasSubstr(R"("name":"ring:counters")"));
  EXPECT_THAT(health->body, HasSubstr("serving"));

  // Stop: the runtime deactivates a, b, c and d into the host while the ring serves, then the
  // ring drains and stops.
  silo.stop();
  EXPECT_EQ(host.parked_count(), 4u);
  EXPECT_TRUE(host.stopped());
  const std::pair<const char*, std::int64_t> expected[] = {{"a", 10}, {"b", 7}, {"c", 7}, {"d", 1}};
  for (const auto& [key, total] : expected) {
    auto parked = host.take_parked_state(std::string("Counter/") + key);  // grain ids read "type/key"
    ASSERT_TRUE(parked.has_value()) << key;
    ASSERT_EQ(parked->size(), kCounterStateBytes);
    EXPECT_EQ(i64_of(*parked), total) << key;
  }
  silo.stop();  // idempotent
}

TEST(RingSilo, UnknownRingNameIsNotFound) {
  auto started = Silo::start(ring_silo_config(kCountersRing), counter_programs());
  ASSERT_TRUE(started.ok()) << started.error().to_string();
  auto missing = (*started)->ring_host("gauges");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::not_found);
  EXPECT_THAT(missing.error().message(), HasSubstr("no ring named 'gauges' (hosted rings: counters)"));
}

TEST(RingSilo, BadRingConfigurationsDoNotStartTheSilo) {
  auto expect_refused = [](const std::string& rings, ErrorCode code, const std::string& needle) {
    auto started = Silo::start(ring_silo_config(rings), counter_programs());
    ASSERT_FALSE(started.ok()) << rings;
    EXPECT_EQ(started.error().code(), code) << started.error().to_string();
    EXPECT_THAT(started.error().to_string(), HasSubstr(needle));
  };
  expect_refused(R"({"rings": [{"name": "r", "program": "gauge"}]})", ErrorCode::invalid_argument,
                 "rings[0] ('r'): unknown program 'gauge' (registered programs: counter)");
  expect_refused(R"({"rings": [{"name": "r", "program": "counter", "actors": {"meter": 2}}]})",
                 ErrorCode::invalid_argument, "rings[0] ('r').actors: program 'counter' has no actor type 'meter'");
  SiloConfig cuda = ring_silo_config(
      R"({"rings": [{"name": "r", "program": "counter", "placement": "cuda", "cuda_device": 1000}]})");
  auto refused = Silo::start(cuda, counter_programs());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::unavailable) << refused.error().to_string();
  EXPECT_THAT(refused.error().to_string(), HasSubstr("placement cuda"));

  // Programs are checked when registered.
  RingPrograms programs;
  ASSERT_TRUE(programs.add("counter", counter_program(4)).ok());
  Status twice = programs.add("counter", counter_program(4));
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code(), ErrorCode::already_exists);
  grains::RingProgram broken = counter_program(4);
  broken.cuda_handlers->handlers.pop_back();
  Status invalid = programs.add("broken", std::move(broken));
  ASSERT_FALSE(invalid.ok());
  EXPECT_EQ(invalid.error().code(), ErrorCode::invalid_argument);
  EXPECT_THAT(invalid.error().to_string(), HasSubstr("ring program 'broken'"));
  EXPECT_FALSE(programs.add("", counter_program(4)).ok());
}

TEST(RingSilo, CudaDisabledInTheConfigurationKeepsAutoRingsOnTheCpu) {
  SiloConfig c = ring_silo_config(kCountersRing);
  c.enable_cuda = false;
  auto started = Silo::start(c, counter_programs());
  ASSERT_TRUE(started.ok()) << started.error().to_string();
  const grains::RingHostPlacement& placed = (*started)->ring_host("counters").value()->placement();
  EXPECT_EQ(placed.backend, grains::RingBackend::cpu);
  EXPECT_EQ(placed.fallback_reason, grains::kRingReasonDisabled);
}

const HealthCheck* find_check(const HealthReport& report, const std::string& name) {
  for (const auto& c : report.checks) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

TEST(RingSilo, RingHealthCheckPassesWhileServingAndFailsWhenDeadOrStopped) {
  auto started = Silo::start(ring_silo_config(kCountersRing), counter_programs());
  ASSERT_TRUE(started.ok()) << started.error().to_string();
  Silo& silo = **started;

  grains::RingHostOptions o;
  o.name = "doomed";
  o.placement = grains::RingPlacement::cpu;
  o.ring.request_slots = 16;
  o.ring.completion_slots = 16;
  o.ring.pool_chunks = 0;
  o.client.dead_after = std::chrono::milliseconds(100);
  auto doomed = grains::RingHost::create(o, counter_program(2));
  ASSERT_TRUE(doomed.ok()) << doomed.error().to_string();

  HealthMonitor monitor(silo.executor(), HealthOptions{});
  monitor.add_check("ring:counters", ring_health_check(*silo.ring_host("counters").value(), std::chrono::seconds(2)));
  monitor.add_check("ring:doomed", ring_health_check(**doomed, std::chrono::milliseconds(100)));
  HealthReport healthy = monitor.evaluate();
  ASSERT_NE(find_check(healthy, "ring:counters"), nullptr);
  EXPECT_EQ(find_check(healthy, "ring:counters")->status, HealthStatus::pass) << find_check(healthy, "ring:counters")->detail;
  EXPECT_THAT(find_check(healthy, "ring:counters")->detail, HasSubstr("serving"));
  EXPECT_EQ(find_check(healthy, "ring:doomed")->status, HealthStatus::pass);

  // The doomed ring's server traps (the CPU's stand-in for a kernel that died).
  auto& client = (*doomed)->client();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  const std::uint32_t actor = client.activate(kCounterType, {}, deadline).value();
  auto trapped = client.send(actor, kTrap, {}, deadline);
  ASSERT_TRUE(trapped.ok());
  EXPECT_FALSE(trapped->get().ok());
  HealthReport dead = monitor.evaluate();
  EXPECT_EQ(find_check(dead, "ring:doomed")->status, HealthStatus::fail);
  EXPECT_THAT(find_check(dead, "ring:doomed")->detail, HasSubstr("ring server dead"));
  EXPECT_EQ(dead.status, HealthStatus::fail);
  EXPECT_EQ(find_check(dead, "ring:counters")->status, HealthStatus::pass);

  silo.stop();
  HealthReport stopped = monitor.evaluate();
  EXPECT_EQ(find_check(stopped, "ring:counters")->status, HealthStatus::fail);
  EXPECT_THAT(find_check(stopped, "ring:counters")->detail, HasSubstr("stopped"));
}

}  // namespace
}  // namespace gpubridge::server
