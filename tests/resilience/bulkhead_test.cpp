// Bulkhead: capacity, release on destruction, rejection count, concurrent acquisition.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "gpubridge/resilience/bulkhead.hpp"

namespace gpubridge::resilience {
namespace {

TEST(BulkheadTest, AdmitsUpToCapacityAndCountsRejections) {
  Bulkhead bulkhead(2);
  EXPECT_EQ(bulkhead.capacity(), 2u);
  auto a = bulkhead.try_acquire();
  auto b = bulkhead.try_acquire();
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(bulkhead.in_use(), 2u);
  EXPECT_FALSE(bulkhead.try_acquire().has_value());
  EXPECT_FALSE(bulkhead.try_acquire().has_value());
  EXPECT_EQ(bulkhead.rejected(), 2u);
  EXPECT_EQ(bulkhead.in_use(), 2u);
}

TEST(BulkheadTest, PermitsAreReleasedOnDestruction) {
  Bulkhead bulkhead(1);
  {
    auto permit = bulkhead.try_acquire();
    ASSERT_TRUE(permit.has_value());
    EXPECT_EQ(bulkhead.in_use(), 1u);
  }
  EXPECT_EQ(bulkhead.in_use(), 0u);
  EXPECT_TRUE(bulkhead.try_acquire().has_value());  // destroyed at once: slot free again
  EXPECT_EQ(bulkhead.in_use(), 0u);
  EXPECT_EQ(bulkhead.rejected(), 0u);
}

TEST(BulkheadTest, MovingAPermitKeepsOneSlot) {
  Bulkhead bulkhead(1);
  auto first = bulkhead.try_acquire();
  ASSERT_TRUE(first.has_value());
  Bulkhead::Permit moved = std::move(*first);
  first.reset();  // the moved-from permit releases nothing
  EXPECT_EQ(bulkhead.in_use(), 1u);
  EXPECT_FALSE(bulkhead.try_acquire().has_value());
  moved.release();
  EXPECT_EQ(bulkhead.in_use(), 0u);
  moved.release();  // idempotent
  EXPECT_EQ(bulkhead.in_use(), 0u);

  Bulkhead other(2);
  auto x = other.try_acquire();
  auto y = other.try_acquire();
  ASSERT_TRUE(x && y);
  *x = std::move(*y);  // x gives its own slot back and takes y's
  EXPECT_EQ(other.in_use(), 1u);
}

TEST(BulkheadTest, ZeroCapacityIsUnlimited) {
  Bulkhead bulkhead(0);
  std::vector<Bulkhead::Permit> permits;
  for (int i = 0; i < 1000; ++i) {
    auto permit = bulkhead.try_acquire();
    ASSERT_TRUE(permit.has_value());
    permits.push_back(std::move(*permit));
  }
  EXPECT_EQ(bulkhead.in_use(), 1000u);
  EXPECT_EQ(bulkhead.rejected(), 0u);
  permits.clear();
  EXPECT_EQ(bulkhead.in_use(), 0u);
}

TEST(BulkheadTest, ConcurrentAcquireNeverExceedsCapacity) {
  constexpr std::size_t kCapacity = 3;
  constexpr int kThreads = 8;
  constexpr int kRounds = 20000;
  Bulkhead bulkhead(kCapacity);
  std::atomic<std::size_t> holding{0};
  std::atomic<std::size_t> max_holding{0};
  std::atomic<std::uint64_t> admitted{0}, refused{0};
  std::barrier sync(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      sync.arrive_and_wait();
      for (int i = 0; i < kRounds; ++i) {
        auto permit = bulkhead.try_acquire();
        if (!permit) {
          refused.fetch_add(1);
          continue;
        }
        admitted.fetch_add(1);
        const std::size_t now = holding.fetch_add(1) + 1;
        std::size_t seen = max_holding.load();
        while (now > seen && !max_holding.compare_exchange_weak(seen, now)) {
        }
        EXPECT_LE(bulkhead.in_use(), kCapacity);
        holding.fetch_sub(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(max_holding.load(), kCapacity);
  EXPECT_EQ(bulkhead.in_use(), 0u);
  EXPECT_EQ(bulkhead.rejected(), refused.load());
  EXPECT_EQ(admitted.load() + refused.load(), static_cast<std::uint64_t>(kThreads) * kRounds);
}

}  // namespace
}  // namespace gpubridge::resilience
