// ReadMostlyLock (src/runtime/directory/read_mostly_lock.hpp): readers on their own slots run
// together, a writer excludes every reader (on owned slots and on the shared slot 0) and other
// writers, and a writer waits for readers already inside.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "directory/read_mostly_lock.hpp"

namespace gpubridge::runtime::internal {
namespace {

TEST(ReadMostlyLockTest, ReadersOfDifferentSlotsAreInsideTogether) {
  ReadMostlyLock lock(3);
  SharedSlotLock a(lock, 1);
  SharedSlotLock b(lock, 2);
  SharedSlotLock outside_one(lock, 0);
  SharedSlotLock outside_two(lock, 0);  // slot 0 is shared by threads outside the pool
  SharedSlotLock beyond(lock, 7);       // a slot beyond the count is slot 0
  SUCCEED();
}

TEST(ReadMostlyLockTest, AWriterWaitsForTheReadersInside) {
  ReadMostlyLock lock(2);
  std::promise<void> reading;
  std::atomic<bool> release{false}, written{false};
  std::thread reader([&] {
    SharedSlotLock read(lock, 1);
    reading.set_value();
    while (!release) std::this_thread::yield();
    EXPECT_FALSE(written.load()) << "the writer entered while a reader was inside";
  });
  reading.get_future().wait();
  std::thread writer([&] {
    std::lock_guard write(lock);
    written = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(written.load());
  release = true;
  reader.join();
  writer.join();
  EXPECT_TRUE(written.load());
}

// Readers on owned slots and on slot 0 increment a plain counter pair only while reading it
// consistently; writers change both halves. Any overlap of a writer with anyone shows as a torn pair.
TEST(ReadMostlyLockTest, WritersExcludeReadersAndEachOtherUnderLoad) {
  constexpr int kWorkers = 3;
  ReadMostlyLock lock(kWorkers + 1);
  long first = 0, second = 0;  // guarded by `lock`; equal whenever nobody writes
  std::atomic<long> torn{0}, reads{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int w = 1; w <= kWorkers; ++w) {  // one thread per owned slot
    threads.emplace_back([&, w] {
      while (!stop) {
        SharedSlotLock read(lock, static_cast<std::size_t>(w));
        if (first != second) ++torn;
        ++reads;
      }
    });
  }
  for (int o = 0; o < 2; ++o) {  // two outside threads on slot 0
    threads.emplace_back([&] {
      while (!stop) {
        SharedSlotLock read(lock, 0);
        if (first != second) ++torn;
        ++reads;
      }
    });
  }
  for (int wr = 0; wr < 2; ++wr) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        std::lock_guard write(lock);
        ++first;
        std::this_thread::yield();
        ++second;
      }
    });
  }
  threads[kWorkers + 2].join();
  threads[kWorkers + 3].join();
  stop = true;
  for (int i = 0; i < kWorkers + 2; ++i) threads[static_cast<std::size_t>(i)].join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(first, 4000);
  EXPECT_EQ(second, 4000);
  EXPECT_GT(reads.load(), 0);
}

}  // namespace
}  // namespace gpubridge::runtime::internal
