// The batcher's intake ring (compute/intake_ring.hpp): ticket order across many laps, holes left
// by a stalled producer, closing while a producer holds a ticket, and many producers against one
// consumer with fewer slots than requests in flight (every request taken exactly once, each
// producer's in its order).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "compute/intake_ring.hpp"

namespace gpubridge::compute::detail {
namespace {

std::vector<BatchRequest*> take_all(IntakeRing& ring) {
  std::vector<BatchRequest*> taken;
  ring.take([&](BatchRequest& r) {
    taken.push_back(&r);
    return true;
  });
  return taken;
}

TEST(IntakeRing, SizesToAPowerOfTwoAtLeastTheCapacity) {
  EXPECT_EQ(IntakeRing(1).slots(), 2u);
  EXPECT_EQ(IntakeRing(5).slots(), 8u);
  EXPECT_EQ(IntakeRing(64).slots(), 64u);
}

TEST(IntakeRing, TakesInTicketOrderOverManyLaps) {
  IntakeRing ring(4);
  std::vector<BatchRequest> requests(3);
  for (int lap = 0; lap < 50; ++lap) {  // 150 tickets through 4 slots
    EXPECT_FALSE(ring.ready());
    for (auto& r : requests) ASSERT_TRUE(ring.push(r));
    EXPECT_TRUE(ring.ready());
    const auto taken = take_all(ring);
    ASSERT_EQ(taken.size(), 3u) << "lap " << lap;
    for (std::size_t i = 0; i < taken.size(); ++i) EXPECT_EQ(taken[i], &requests[i]);
  }
  EXPECT_EQ(ring.tickets(), 150u);
}

TEST(IntakeRing, AHoleDoesNotHoldUpLaterRequestsAndIsTakenOnceFilled) {
  IntakeRing ring(8);
  BatchRequest a, late, c, d;
  ASSERT_TRUE(ring.push(a));
  const auto hole = ring.claim();  // a producer stalled between its ticket and its publication
  ASSERT_TRUE(hole.has_value());
  ASSERT_TRUE(ring.push(c));
  EXPECT_EQ(take_all(ring), (std::vector<BatchRequest*>{&a, &c}));
  EXPECT_FALSE(ring.ready());
  EXPECT_TRUE(take_all(ring).empty()) << "c must not come out twice";
  ASSERT_TRUE(ring.push(d));
  EXPECT_EQ(take_all(ring), (std::vector<BatchRequest*>{&d}));
  ring.publish(*hole, late);
  EXPECT_TRUE(ring.ready());
  EXPECT_EQ(take_all(ring), (std::vector<BatchRequest*>{&late}));
  // The ring keeps working past the hole, over several laps of its slots.
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(ring.push(a));
    ASSERT_EQ(take_all(ring), (std::vector<BatchRequest*>{&a})) << i;
  }
}

TEST(IntakeRing, ARefusedRequestStaysForTheNextTake) {
  IntakeRing ring(8);
  BatchRequest a, b, c;
  for (BatchRequest* r : {&a, &b, &c}) ASSERT_TRUE(ring.push(*r));
  std::vector<BatchRequest*> taken;
  EXPECT_EQ(ring.take([&](BatchRequest& r) {
              if (&r == &b) return false;  // no room for b (and what follows) now
              taken.push_back(&r);
              return true;
            }),
            1u);
  EXPECT_EQ(taken, (std::vector<BatchRequest*>{&a}));
  EXPECT_TRUE(ring.ready());
  EXPECT_EQ(take_all(ring), (std::vector<BatchRequest*>{&b, &c}));
}

TEST(IntakeRing, ClosingRefusesNewPushesAndDrainWaitsForTicketsTakenBefore) {
  IntakeRing ring(8);
  BatchRequest a, b, refused;
  ASSERT_TRUE(ring.push(a));
  const auto held = ring.claim();
  ASSERT_TRUE(held.has_value());
  const std::uint64_t tickets = ring.close();
  EXPECT_EQ(tickets, 2u);
  EXPECT_TRUE(ring.closed());
  EXPECT_FALSE(ring.push(refused));
  EXPECT_FALSE(ring.claim().has_value());
  std::thread late([&] { ring.publish(*held, b); });  // publishes while drain() waits, or before
  std::vector<BatchRequest*> drained;
  ring.drain(tickets, [&](BatchRequest& r) {
    drained.push_back(&r);
    return true;
  });
  late.join();
  EXPECT_EQ(drained, (std::vector<BatchRequest*>{&a, &b}));
}

TEST(IntakeRing, ManyProducersFewSlotsEveryRequestTakenExactlyOnce) {
  constexpr int kProducers = 4;
  constexpr int kEach = 5000;
  IntakeRing ring(16);  // far fewer slots than requests in flight: producers wait for slots
  std::vector<BatchRequest> requests(kProducers * kEach);
  std::vector<int> seen(requests.size(), 0);
  std::vector<int> last_of_producer(kProducers, -1);
  std::atomic<int> producing{kProducers};
  std::atomic<std::size_t> pushed{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kEach; ++i) {
        if (!ring.push(requests[static_cast<std::size_t>(p * kEach + i)])) break;  // counted below
        pushed.fetch_add(1);
      }
      producing.fetch_sub(1);
    });
  }
  std::size_t taken = 0;
  std::size_t out_of_order = 0;
  const auto on_take = [&](BatchRequest& r) {
    const auto index = static_cast<int>(&r - requests.data());
    ++seen[static_cast<std::size_t>(index)];
    // A producer's own requests come out in its order: a later ticket of a producer is only
    // seen once its earlier ones were published (holes are other producers' tickets).
    int& last = last_of_producer[static_cast<std::size_t>(index / kEach)];
    if (index < last) ++out_of_order;
    last = index;
    ++taken;
    return true;
  };
  while (producing.load() > 0 || taken < pushed.load()) {
    ring.take(on_take);
    std::this_thread::yield();
  }
  for (auto& t : producers) t.join();
  ASSERT_EQ(pushed.load(), requests.size());
  EXPECT_EQ(taken, requests.size());
  for (std::size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], 1) << "request " << i;
  EXPECT_EQ(out_of_order, 0u);
  EXPECT_EQ(ring.tickets(), requests.size());
}

}  // namespace
}  // namespace gpubridge::compute::detail
