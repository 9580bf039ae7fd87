// FramePool: blocks come from the huge-page frame region, are recycled across threads (also
// after a burst larger than the transfer store and after the thread that held them exited), and
// the heap takes over once the region is used up or cannot be reserved. The pool is process-wide
// and keeps its region, so each case runs in a fresh process of its own (in_fresh_process).
#include "gpubridge/runtime/frame_pool.hpp"

#include <gtest/gtest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <thread>
#include <utility>
#include <vector>

namespace gpubridge::runtime {
namespace {

constexpr std::size_t kFrame = 200;  // the 256-byte class

std::vector<void*> allocate_n(std::size_t n, std::size_t size = kFrame) {
  std::vector<void*> blocks;
  blocks.reserve(n);
  for (std::size_t i = 0; i < n; ++i) blocks.push_back(FramePool::allocate(size));
  return blocks;
}

void free_all(std::vector<void*>& blocks, std::size_t size = kFrame) {
  for (void* p : blocks) FramePool::deallocate(p, size);
  blocks.clear();
}

// Runs `body` in a new process started from this test binary (gtest's "threadsafe" death-test
// style re-executes it), where the pool is untouched; a failure there fails the test.
template <typename F>
void in_fresh_process(F body) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        body();
        std::_Exit(::testing::Test::HasFailure() ? 1 : 0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(FramePool, NewBlocksAreCarvedFromTheRegionOnCacheLines) {
  in_fresh_process([] {
    EXPECT_EQ(FramePool::region_bytes(), 0u) << "nothing carved before the first allocation";
    auto blocks = allocate_n(100);
    for (void* p : blocks) {
      EXPECT_TRUE(FramePool::in_region(p));
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u);
    }
    EXPECT_EQ(FramePool::region_bytes(), FramePool::kChunkBytes) << "one chunk for one size class";
    void* big = FramePool::allocate(4000);  // another class: its own chunk
    EXPECT_TRUE(FramePool::in_region(big));
    EXPECT_EQ(FramePool::region_bytes(), 2 * FramePool::kChunkBytes);
    FramePool::deallocate(big, 4000);
    void* huge = FramePool::allocate(FramePool::kMaxPooledSize + 1);  // not pooled
    EXPECT_FALSE(FramePool::in_region(huge));
    FramePool::deallocate(huge, FramePool::kMaxPooledSize + 1);
    free_all(blocks);
  });
}

TEST(FramePool, RegionBlocksKnowTheirSizeClass) {
  in_fresh_process([] {
    struct Case {
      std::size_t size, class_bytes;
    };
    std::vector<std::pair<void*, std::size_t>> blocks;
    for (const Case c : {Case{1, 64}, Case{64, 64}, Case{65, 128}, Case{200, 256}, Case{560, 1024}, Case{4096, 4096}}) {
      for (int i = 0; i < 3; ++i) {  // the first, and later blocks of the class's chunk
        void* p = FramePool::allocate(c.size);
        EXPECT_EQ(FramePool::block_bytes(p), c.class_bytes) << "allocated for " << c.size << " bytes";
        FramePool::prefetch(p);  // a hint: any block, any time
        blocks.emplace_back(p, c.size);
      }
    }
    void* huge = FramePool::allocate(FramePool::kMaxPooledSize + 1);
    EXPECT_EQ(FramePool::block_bytes(huge), 0u) << "not pooled: size unknown";
    FramePool::prefetch(huge);
    FramePool::deallocate(huge, FramePool::kMaxPooledSize + 1);
    int local = 0;
    EXPECT_EQ(FramePool::block_bytes(&local), 0u);
    EXPECT_EQ(FramePool::block_bytes(nullptr), 0u);
    FramePool::prefetch(nullptr);
    for (auto [p, size] : blocks) FramePool::deallocate(p, size);
  });
}

TEST(FramePool, BlocksOfAnExitedThreadAreReused) {
  in_fresh_process([] {
    constexpr std::size_t kN = 5000;
    std::thread([] {
      auto blocks = allocate_n(kN);
      free_all(blocks);  // most go to the store; the thread keeps the rest until it exits
    }).join();
    const auto before = FramePool::new_blocks();
    auto blocks = allocate_n(kN);
    EXPECT_EQ(FramePool::new_blocks(), before) << "every block the exited thread held is reused";
    free_all(blocks);
  });
}

TEST(FramePool, ABurstLargerThanTheStoreIsReusedAfterwards) {
  in_fresh_process([] {
    // 100000 blocks allocated on one thread and freed on another: far more batches than the store
    // keeps as recent ones; the oldest move to its spare batches instead of back to the heap.
    constexpr std::size_t kN = 100'000;
    auto blocks = allocate_n(kN);
    std::thread([&] { free_all(blocks); }).join();
    const auto before = FramePool::new_blocks();
    std::thread([&] {
      auto again = allocate_n(kN);
      EXPECT_EQ(FramePool::new_blocks(), before) << "the burst's blocks are all reused";
      free_all(again);
    }).join();
  });
}

TEST(FramePool, TheHeapServesOnceTheRegionIsUsedUp) {
  in_fresh_process([] {
    // Blocks of the largest class until one is not from the region (carving touches no memory).
    constexpr std::size_t kSize = FramePool::kMaxPooledSize;
    std::vector<void*> blocks;
    void* beyond = nullptr;
    for (std::size_t i = 0; i < FramePool::kRegionBytes / kSize + 1024; ++i) {
      void* p = FramePool::allocate(kSize);
      if (!FramePool::in_region(p)) {
        beyond = p;
        break;
      }
      blocks.push_back(p);
    }
    ASSERT_NE(beyond, nullptr) << "the region never ran out";
    EXPECT_EQ(FramePool::region_bytes(), FramePool::kRegionBytes);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(beyond) % 64, 0u);
    static_cast<char*>(beyond)[kSize - 1] = 1;  // usable memory
    blocks.push_back(beyond);
    // Freed on a thread that then exits: region blocks are kept, the heap block goes back to the
    // heap (an AddressSanitizer build reports a mismatched or double free).
    std::thread([&] { free_all(blocks, kSize); }).join();
    const auto before = FramePool::new_blocks();
    auto again = allocate_n(1000, kSize);
    EXPECT_EQ(FramePool::new_blocks(), before) << "freed region blocks are reused";
    free_all(again, kSize);
  });
}

TEST(FramePool, WithoutAddressSpaceForTheRegionTheHeapServes) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "an address-space limit breaks the sanitizer's own reservations";
#else
  in_fresh_process([] {
    // Room for 64 MiB more than the process maps now: less than the region needs.
    std::ifstream statm("/proc/self/statm");
    std::size_t pages = 0;
    ASSERT_TRUE(statm >> pages);
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const rlimit limit{pages * page + (std::size_t{64} << 20), RLIM_INFINITY};
    ASSERT_EQ(::setrlimit(RLIMIT_AS, &limit), 0);
    auto blocks = allocate_n(1000);
    for (void* p : blocks) {
      EXPECT_FALSE(FramePool::in_region(p));
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u);
      static_cast<char*>(p)[kFrame - 1] = 1;  // usable memory
    }
    EXPECT_EQ(FramePool::region_bytes(), 0u);
    free_all(blocks);
    const auto before = FramePool::new_blocks();
    blocks = allocate_n(1000);
    EXPECT_EQ(FramePool::new_blocks(), before) << "heap blocks are recycled like region blocks";
    free_all(blocks);
  });
#endif
}

}  // namespace
}  // namespace gpubridge::runtime
