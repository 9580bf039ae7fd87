// The samples as users run them: `gpubridge sample ...` and `gpubridge compare ...` (exit codes,
// the device named in the output, the checks against the host, and nothing written on bad input).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "cli_support.hpp"
#include "test_support.hpp"

namespace {

using gpubridge::testing::CliRun;
using gpubridge::testing::run_cli;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(SampleCli, VectorSamplesRunOnTheCpuAndCheckAgainstTheHost) {
  CliRun add = run_cli("sample vector-add --n 100003 --seed 7 --backend cpu");
  EXPECT_EQ(add.exit_code, 0) << add.out;
  EXPECT_TRUE(contains(add.out, "vector-add on cpu:0")) << add.out;
  EXPECT_TRUE(contains(add.out, "max |error| 0 over 100003 elements")) << add.out;
  EXPECT_TRUE(contains(add.out, "no fallback")) << add.out;

  CliRun dot = run_cli("sample vector-dot --n 4099 --backend cpu");
  EXPECT_EQ(dot.exit_code, 0) << dot.out;
  EXPECT_TRUE(contains(dot.out, "host (double)")) << dot.out;

  CliRun norm = run_cli("sample vector-normalize --n 65536 --backend cpu");
  EXPECT_EQ(norm.exit_code, 0) << norm.out;
}

// The three vector samples on a GPU backend, checked against the host; skipped where the backend
// is absent, unless GPUBRIDGE_REQUIRE_BACKENDS names it.
class VectorSamplesOn : public ::testing::TestWithParam<std::string> {};

TEST_P(VectorSamplesOn, EachRunsThereWithoutFallbackAndMatchesTheHost) {
  const std::string backend = GetParam();
  CliRun probe = run_cli("sample vector-add --n 1000003 --seed 3 --backend " + backend);
  ASSERT_EQ(probe.exit_code, 0) << probe.out;
  if (contains(probe.out, "fell back: no_device")) GB_SKIP_UNLESS_REQUIRED(backend, "no " + backend + " device: " + probe.out);
  EXPECT_TRUE(contains(probe.out, "vector-add on " + backend + ":")) << probe.out;
  EXPECT_TRUE(contains(probe.out, "max |error| 0 over 1000003 elements")) << probe.out;
  for (const std::string sample : {"vector-dot", "vector-normalize"}) {
    CliRun r = run_cli("sample " + sample + " --n 1000003 --backend " + backend);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(contains(r.out, sample + " on " + backend + ":")) << r.out;
    EXPECT_TRUE(contains(r.out, "placement: asked " + backend + "; no fallback")) << r.out;
    EXPECT_TRUE(contains(r.out, "check: ")) << r.out;
  }
}

INSTANTIATE_TEST_SUITE_P(GpuBackends, VectorSamplesOn, ::testing::Values("opencl", "cuda"));

TEST(SampleCli, AnAbsentBackendFallsBackAndSaysWhy) {
  CliRun r = run_cli("sample vector-add --n 1000 --backend cuda");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  if (contains(r.out, "on cuda:")) GTEST_SKIP() << "this machine has a CUDA device";
  EXPECT_TRUE(contains(r.out, "fell back: no_device")) << r.out;
}

TEST(SampleCli, BadArgumentsExitWithTwo) {
  EXPECT_EQ(run_cli("sample vector-add --n 0").exit_code, 2);
  EXPECT_EQ(run_cli("sample vector-add --n 10 --backend tpu").exit_code, 2);
  EXPECT_NE(run_cli("sample no-such-sample").exit_code, 0);
  EXPECT_NE(run_cli("sample").exit_code, 0);
}

TEST(SampleCli, CompareRunsEveryAvailableBackendAndNamesAbsentOnes) {
  CliRun r = run_cli("compare vector-dot --n 50000 --repeat 2");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "cpu      cpu:0")) << r.out;
  EXPECT_TRUE(contains(r.out, "(reference)")) << r.out;
  for (const char* backend : {"cuda", "opencl"}) {
    const bool ran = contains(r.out, std::string("\n") + backend + "     " + backend + ":") ||
                     contains(r.out, std::string("\n") + backend + "   " + backend + ":");
    const bool absent = contains(r.out, std::string("\n") + backend + " ") && contains(r.out, "absent:");
    EXPECT_TRUE(ran || absent) << backend << ": " << r.out;
  }
}

}  // namespace
