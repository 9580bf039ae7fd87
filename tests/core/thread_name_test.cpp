// Thread names: what name_this_thread() sets is what the system reports for the thread, cut to
// the 15 characters Linux keeps; every thread of a started runtime is named (gb-...).
#include <gtest/gtest.h>

#include <thread>

#include "gpubridge/core/thread_name.hpp"

namespace gpubridge {
namespace {

TEST(ThreadName, NamesTheCallingThreadOnly) {
#if !defined(__linux__)
  GTEST_SKIP() << "thread names are read back on Linux only";
#endif
  const std::string before = this_thread_name();
  std::string inside;
  std::thread t([&] {
    name_this_thread("gb-test");
    inside = this_thread_name();
  });
  t.join();
  EXPECT_EQ(inside, "gb-test");
  EXPECT_EQ(this_thread_name(), before);
}

TEST(ThreadName, LongNamesAreCutTo15Characters) {
#if !defined(__linux__)
  GTEST_SKIP() << "thread names are read back on Linux only";
#endif
  std::string inside;
  std::thread t([&] {
    name_this_thread("gb-b:vector.normalize");
    inside = this_thread_name();
  });
  t.join();
  EXPECT_EQ(inside, "gb-b:vector.nor");
}

}  // namespace
}  // namespace gpubridge
