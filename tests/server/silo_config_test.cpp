// Silo configuration: defaults, JSON file, overrides; every bad input is a clear error.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "gpubridge/server/silo_config.hpp"

namespace gpubridge::server {
namespace {

TEST(SiloConfig, DefaultsWithoutFile) {
  auto c = load_silo_config("", {});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->backend, "auto");
  EXPECT_EQ(c->max_batch, 1024u);
}

TEST(SiloConfig, FileThenOverridesInOrder) {
  const std::string path = ::testing::TempDir() + "/silo_config_test.json";
  std::ofstream(path) << R"({"silo": {"name": "edge-1"}, "batching": {"max_batch": 64, "adaptive": true}})";
  auto c = load_silo_config(path, {"batching.max_batch=4096", "compute.backend=cpu", "silo.name=\"edge-2\""});
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->name, "edge-2");
  EXPECT_EQ(c->max_batch, 4096u);
  EXPECT_TRUE(c->adaptive);
  EXPECT_EQ(c->backend, "cpu");
  std::remove(path.c_str());
}

TEST(SiloConfig, UnknownKeyIsAnErrorNamingIt) {
  SiloConfig c;
  Status s = apply_json(c, R"({"batching": {"max_bacth": 3}})", "test.json");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("batching.max_bacth"), std::string::npos);
  EXPECT_NE(s.error().message().find("unknown key"), std::string::npos);
}

TEST(SiloConfig, WrongTypesAndRangesAreErrorsAndChangeNothing) {
  SiloConfig c;
  EXPECT_EQ(apply_json(c, R"({"batching": {"max_batch": "big"}})", "f").error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(apply_json(c, R"({"batching": {"max_batch": 0}})", "f").error().code(), ErrorCode::out_of_range);
  EXPECT_EQ(apply_json(c, R"({"batching": {"max_batch": -5}})", "f").error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(apply_json(c, R"({"compute": {"backend": "tpu"}})", "f").error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(apply_json(c, R"({"batching": {"max_batch": 8}, "compute": {"enable_cuda": "yes"}})", "f").error().code(),
            ErrorCode::invalid_argument);
  EXPECT_EQ(c.max_batch, 1024u) << "a rejected document changes nothing";
  EXPECT_FALSE(apply_json(c, "{not json", "f").ok());
  EXPECT_FALSE(apply_json(c, "[1,2]", "f").ok());
}

TEST(SiloConfig, InflightBatchesWithinTheBatchersBound) {
  SiloConfig c;
  EXPECT_EQ(c.max_inflight_batches, 4u);
  ASSERT_TRUE(apply_override(c, "batching.max_inflight_batches=16").ok());
  EXPECT_EQ(c.max_inflight_batches, 16u);
  EXPECT_EQ(apply_override(c, "batching.max_inflight_batches=0").error().code(), ErrorCode::out_of_range);
  const Status over = apply_override(c, "batching.max_inflight_batches=65");
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code(), ErrorCode::out_of_range);
  EXPECT_NE(over.error().message().find("batching.max_inflight_batches"), std::string::npos) << over.error().to_string();
  EXPECT_EQ(c.max_inflight_batches, 16u) << "a rejected override changes nothing";
}

TEST(SiloConfig, MalformedOverrideAndMissingFile) {
  SiloConfig c;
  EXPECT_FALSE(apply_override(c, "batching.max_batch").ok());
  EXPECT_FALSE(apply_override(c, "=3").ok());
  EXPECT_FALSE(apply_override(c, "compute.allow_fallback=maybe").ok());
  EXPECT_TRUE(apply_override(c, "compute.allow_fallback=false").ok());
  EXPECT_FALSE(c.allow_fallback);
  auto missing = load_silo_config("/nonexistent/silo.json", {});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::not_found);
}

TEST(SiloConfig, ToJsonRoundTrips) {
  SiloConfig c;
  c.name = "x";
  c.max_delay_us = 77;
  SiloConfig back;
  ASSERT_TRUE(apply_json(back, to_json(c), "roundtrip").ok());
  EXPECT_EQ(back.name, "x");
  EXPECT_EQ(back.max_delay_us, 77u);
}

}  // namespace
}  // namespace gpubridge::server
