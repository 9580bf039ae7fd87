// The "rings" section of the silo configuration: JSON, overrides and their errors (each names the
// ring entry and key), and the round trip through to_json.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "gpubridge/server/silo_config.hpp"

namespace gpubridge::server {
namespace {

using ::testing::HasSubstr;

constexpr const char* kTwoRings = R"({"rings": [
  {"name": "counters", "program": "counter", "placement": "cpu", "request_slots": 256, "completion_slots": 512,
   "pool_chunk_bytes": 128, "pool_chunks": 16, "cuda_device": 1, "dead_after_ms": 300, "internal_queue_slots": 8, "max_hops": 3,
   "shards": 4, "dispatcher_threads": 2, "actors": {"counter": 32}},
  {"name": "meters", "program": "counter"}]})";

TEST(RingConfig, RingsAreReadWithDefaultsForWhatIsLeftOut) {
  SiloConfig c;
  Status s = apply_json(c, kTwoRings, "test.json");
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  ASSERT_EQ(c.rings.size(), 2u);
  const RingHostConfig& a = c.rings[0];
  EXPECT_EQ(a.name, "counters");
  EXPECT_EQ(a.program, "counter");
  EXPECT_EQ(a.placement, "cpu");
  EXPECT_EQ(a.request_slots, 256u);
  EXPECT_EQ(a.completion_slots, 512u);
  EXPECT_EQ(a.pool_chunk_bytes, 128u);
  EXPECT_EQ(a.pool_chunks, 16u);
  EXPECT_EQ(a.cuda_device, 1u);
  EXPECT_EQ(a.dead_after_ms, 300u);
  EXPECT_EQ(a.internal_queue_slots, 8u);
  EXPECT_EQ(a.max_hops, 3u);
  EXPECT_EQ(a.shards, 4u);
  EXPECT_EQ(a.dispatcher_threads, 2u);
  EXPECT_EQ(a.actors.at("counter"), 32u);
  const RingHostConfig& b = c.rings[1];
  EXPECT_EQ(b.placement, "auto");
  EXPECT_EQ(b.request_slots, 1024u);
  EXPECT_EQ(b.internal_queue_slots, 1024u);
  EXPECT_EQ(b.max_hops, 64u);
  EXPECT_EQ(b.shards, 1u);
  EXPECT_EQ(b.dispatcher_threads, 1u);
  EXPECT_TRUE(b.actors.empty());
}

TEST(RingConfig, BadRingsAreErrorsNamingEntryAndKeyAndChangeNothing) {
  auto expect_error = [](const std::string& json, ErrorCode code, const std::string& needle) {
    SiloConfig c;
    ASSERT_TRUE(apply_json(c, kTwoRings, "good.json").ok());
    Status s = apply_json(c, json, "bad.json");
    ASSERT_FALSE(s.ok()) << json;
    EXPECT_EQ(s.error().code(), code) << s.error().to_string();
    EXPECT_THAT(s.error().message(), HasSubstr(needle));
    EXPECT_EQ(c.rings.size(), 2u) << "a rejected document changes nothing";
  };
  const ErrorCode bad = ErrorCode::invalid_argument;
  expect_error(R"({"rings": [{"name": "a", "program": "p", "request_slots": 100}]})", bad,
               "bad.json: rings[0].request_slots: 100 is not a power of two");
  expect_error(R"({"rings": [{"name": "a", "program": "p", "completion_slots": 1}]})", ErrorCode::out_of_range,
               "rings[0].completion_slots: 1 is outside [2, 16777216]");
  expect_error(R"({"rings": [{"name": "a", "program": "p", "pool_chunk_bytes": 100}]})", bad, "not a multiple of 64");
  expect_error(R"({"rings": [{"name": "a", "program": "p", "max_hops": 0}]})", ErrorCode::out_of_range,
               "rings[0].max_hops");
  expect_error(R"({"rings": [{"name": "a", "program": "p", "shards": 0}]})", ErrorCode::out_of_range,
               "rings[0].shards: 0 is outside [1, 64]");
  expect_error(R"({"rings": [{"name": "a", "program": "p", "shards": 65}]})", ErrorCode::out_of_range,
               "rings[0].shards: 65 is outside [1, 64]");
  expect_error(R"({"rings": [{"name": "a", "program": "p", "dispatcher_threads": 0}]})", ErrorCode::out_of_range,
               "rings[0].dispatcher_threads: 0 is outside [1, 64]");
  expect_error(R"({"rings": [{"name": "a", "program": "p", "shards": 2, "dispatcher_threads": 3}]})",
               ErrorCode::out_of_range, "bad.json: rings[0].dispatcher_threads: 3 is more than the ring's shards (2)");
  expect_error(R"({"rings": [{"name": "a", "program": "p", "actors": {"counter": 0}}]})", ErrorCode::out_of_range,
               "rings[0].actors.counter: 0 is outside");
  expect_error(R"({"rings": [{"name": "a", "program": "p", "actors": [1]}]})", bad, "rings[0].actors: expected an object");
  expect_error(R"({"rings": [{"name": "a", "program": "p", "placement": "gpu"}]})", bad,
               "rings[0].placement: 'gpu' is not one of auto, cpu, cuda");
  expect_error(R"({"rings": [{"name": "a", "program": "p", "slots": 4}]})", bad, "rings[0].slots: unknown key");
  expect_error(R"({"rings": [{"program": "p"}]})", bad, "rings[0]: \"name\" is required");
  expect_error(R"({"rings": [{"name": "a"}]})", bad, "\"program\" is required");
  expect_error(R"({"rings": [{"name": "a b", "program": "p"}]})", bad, "letters, digits");
  expect_error(R"({"rings": [{"name": "a", "program": "p"}, {"name": "a", "program": "q"}]})", bad,
               "ring name 'a' is used twice (rings[0] and rings[1])");
  expect_error(R"({"rings": {"name": "a"}})", bad, "rings: expected an array");
  expect_error(R"({"rings": ["a"]})", bad, "rings[0]: expected an object");
}

TEST(RingConfig, OverridesChangeOneRingOrReplaceTheList) {
  const std::string path = ::testing::TempDir() + "/ring_config_test.json";
  std::ofstream(path) << kTwoRings;
  auto c = load_silo_config(path, {"rings.counters.placement=auto", "rings.counters.actors.counter=64",
                                   "rings.meters.request_slots=64", R"(rings.meters.actors={"counter": 5})"});
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->rings[0].placement, "auto");
  EXPECT_EQ(c->rings[0].actors.at("counter"), 64u);
  EXPECT_EQ(c->rings[1].request_slots, 64u);
  EXPECT_EQ(c->rings[1].actors.at("counter"), 5u);

  auto unknown = load_silo_config(path, {"rings.gauges.placement=cpu"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code(), ErrorCode::not_found);
  EXPECT_THAT(unknown.error().message(), HasSubstr("no ring named 'gauges' (configured rings: counters, meters)"));
  auto bad_value = load_silo_config(path, {"rings.counters.request_slots=3"});
  ASSERT_FALSE(bad_value.ok());
  EXPECT_THAT(bad_value.error().message(), HasSubstr("override: rings.counters.request_slots: 3 is not a power of two"));
  auto rename_clash = load_silo_config(path, {"rings.meters.name=counters"});
  ASSERT_FALSE(rename_clash.ok());
  EXPECT_THAT(rename_clash.error().message(), HasSubstr("'counters' is used twice"));
  auto too_few_shards = load_silo_config(path, {"rings.counters.shards=1"});  // it has 2 dispatcher threads
  ASSERT_FALSE(too_few_shards.ok());
  EXPECT_THAT(too_few_shards.error().message(),
              HasSubstr("rings[0].dispatcher_threads: 2 is more than the ring's shards (1)"));
  auto no_key = load_silo_config(path, {"rings.counters=cpu"});
  ASSERT_FALSE(no_key.ok());
  EXPECT_THAT(no_key.error().message(), HasSubstr("expected rings.<name>.<key>"));

  auto replaced = load_silo_config(path, {R"(rings=[{"name": "only", "program": "counter", "placement": "cpu"}])"});
  ASSERT_TRUE(replaced.ok()) << replaced.error().to_string();
  ASSERT_EQ(replaced->rings.size(), 1u);
  EXPECT_EQ(replaced->rings[0].name, "only");
  auto cleared = load_silo_config(path, {"rings=[]"});
  ASSERT_TRUE(cleared.ok());
  EXPECT_TRUE(cleared->rings.empty());
  auto not_json = load_silo_config(path, {"rings=counters"});
  ASSERT_FALSE(not_json.ok());
  EXPECT_THAT(not_json.error().message(), HasSubstr("expected a JSON array"));
  std::remove(path.c_str());
}

TEST(RingConfig, ToJsonRoundTripsRings) {
  SiloConfig c;
  ASSERT_TRUE(apply_json(c, kTwoRings, "test.json").ok());
  SiloConfig back;
  Status s = apply_json(back, to_json(c), "roundtrip");
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  ASSERT_EQ(back.rings.size(), 2u);
  EXPECT_EQ(back.rings[0].completion_slots, 512u);
  EXPECT_EQ(back.rings[0].dispatcher_threads, 2u);
  EXPECT_EQ(back.rings[0].actors, c.rings[0].actors);
  EXPECT_EQ(back.rings[1].name, "meters");
  EXPECT_THAT(to_json(SiloConfig{}), HasSubstr("\"rings\": []"));
}

}  // namespace
}  // namespace gpubridge::server
