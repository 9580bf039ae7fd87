// The gpubridge program, run as a user would: exit codes, text and JSON output.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "cli_support.hpp"

namespace {

using gpubridge::testing::CliRun;
using gpubridge::testing::run_cli;

TEST(Cli, DevicesJsonListsEveryBackend) {
  CliRun r = run_cli("devices --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["backends"].size(), 3u);
  bool cpu = false;
  for (const auto& b : j["backends"]) {
    if (!b["available"].get<bool>()) {
      EXPECT_FALSE(b["reason"].get<std::string>().empty());
    }
    if (b["backend"] == "cpu") {
      cpu = true;
      EXPECT_EQ(b["devices"][0]["id"], "cpu:0");
      EXPECT_TRUE(b["devices"][0]["capabilities"].contains("fp64"));
    }
  }
  EXPECT_TRUE(cpu);
}

TEST(Cli, DevicesTextNamesAbsentBackends) {
  CliRun r = run_cli("devices");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("cpu: 1 device(s)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cuda:"), std::string::npos) << r.out;
}

TEST(Cli, VerifyUnknownKernelExitsNonZeroWithMessage) {
  CliRun r = run_cli("verify --kernel vector.nope");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("unknown kernel id 'vector.nope'"), std::string::npos) << r.out;
}

TEST(Cli, VerifyUnknownBackendExitsNonZero) {
  CliRun r = run_cli("verify --backend tpu");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("unknown backend 'tpu'"), std::string::npos) << r.out;
}

TEST(Cli, VerifyCpuJsonHasTheDocumentedShape) {
  CliRun r = run_cli("verify --backend cpu --kernel vector.add --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_FALSE(j["results"].empty());
  for (const auto& row : j["results"]) {
    for (const char* key : {"kernel", "dtype", "backend", "device", "n", "status", "max_abs_error", "reason"}) {
      EXPECT_TRUE(row.contains(key)) << key;
    }
    EXPECT_EQ(row["kernel"], "vector.add");
    EXPECT_EQ(row["backend"], "cpu");
    EXPECT_EQ(row["status"], "pass");
  }
}

TEST(Cli, VerifyAllBackendsPasses) {
  CliRun r = run_cli("verify --kernel reduce.sum");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find(" 0 failed"), std::string::npos) << r.out;
}

TEST(Cli, MissingSubcommandIsAnError) {
  CliRun r = run_cli("");
  EXPECT_NE(r.exit_code, 0);
}

}  // namespace

namespace {

TEST(Cli, DemoRunsAndChecksItsResults) {
  CliRun r = run_cli("run --demo --duration 1 --sensors 64 --callers 16 --set silo.workers=2 --set http.port=0");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("demo: OK"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("p99"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(" 0 host recomputations"), std::string::npos) << "the demo must check some results: " << r.out;
}

TEST(Cli, RunRejectsBadConfiguration) {
  CliRun r = run_cli("run --demo --duration 1 --set batching.max_batch=0");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("batching.max_batch"), std::string::npos) << r.out;
  CliRun nodemo = run_cli("run");
  EXPECT_EQ(nodemo.exit_code, 2);
}

}  // namespace
