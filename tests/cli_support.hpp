#pragma once
// Runs the gpubridge program as a user would (its path in $GPUBRIDGE_CLI, set by CTest) and
// captures its exit code and output, stdout and stderr together.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace gpubridge::testing {

struct CliRun {
  int exit_code;
  std::string out;  // stdout and stderr together
};

inline CliRun run_cli(const std::string& args) {
  const char* cli = std::getenv("GPUBRIDGE_CLI");
  EXPECT_NE(cli, nullptr) << "GPUBRIDGE_CLI must name the gpubridge binary";
  const std::string cmd = std::string(cli ? cli : "gpubridge") + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf{};
  while (p != nullptr && std::fgets(buf.data(), buf.size(), p)) out += buf.data();
  const int status = p != nullptr ? ::pclose(p) : -1;
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace gpubridge::testing
