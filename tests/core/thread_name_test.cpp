// Thread names: what name_this_thread() sets is what the system reports for the thread, cut to
// the 15 characters Linux keeps, and it names only the calling thread.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <thread>

#include "gpubridge/core/thread_name.hpp"

namespace gpubridge {
namespace {

// The name a new thread reports after naming itself `name`.
std::string name_read_back(std::string_view name) {
  std::string seen;
  std::thread t([&] {
    name_this_thread(name);
    seen = this_thread_name();
  });
  t.join();
  return seen;
}

TEST(ThreadName, NamesTheCallingThreadOnly) {
#if !defined(__linux__)
  GTEST_SKIP() << "thread names are read back on Linux only";
#endif
  const std::string before = this_thread_name();
  EXPECT_EQ(name_read_back("gb-test"), "gb-test");
  EXPECT_EQ(this_thread_name(), before);
}

TEST(ThreadName, LongNamesAreCutTo15Characters) {
#if !defined(__linux__)
  GTEST_SKIP() << "thread names are read back on Linux only";
#endif
  EXPECT_EQ(name_read_back("gb-b:vector.normalize"), "gb-b:vector.nor");
}

}  // namespace
}  // namespace gpubridge
