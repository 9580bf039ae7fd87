// Grain identity: GUIDs, keys of the three kinds (int64, GUID, string), ids as cheap shared
// values, and grains addressed by each kind of key.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "runtime_test_support.hpp"

namespace gpubridge::runtime {
namespace {

TEST(Guid, ParsesAndPrintsTheCanonicalForm) {
  auto g = Guid::parse("00112233-4455-6677-8899-AABBCCDDEEFF");
  ASSERT_TRUE(g.ok()) << g.error().to_string();
  EXPECT_EQ(g->to_string(), "00112233-4455-6677-8899-aabbccddeeff");
  EXPECT_EQ(g->bytes[0], 0x00);
  EXPECT_EQ(g->bytes[15], 0xff);
  for (const char* bad : {"", "00112233-4455-6677-8899-AABBCCDDEEF", "00112233x4455-6677-8899-AABBCCDDEEFF",
                          "0011223g-4455-6677-8899-AABBCCDDEEFF"}) {
    auto r = Guid::parse(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  }
  EXPECT_TRUE(Guid{}.is_nil());
}

TEST(Guid, RandomIsVersion4AndUnique) {
  std::set<Guid> seen;
  for (int i = 0; i < 1000; ++i) {
    const Guid g = Guid::random();
    EXPECT_EQ(g.bytes[6] >> 4, 4);
    EXPECT_EQ(g.bytes[8] >> 6, 2);
    seen.insert(g);
    EXPECT_EQ(*Guid::parse(g.to_string()), g);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(GrainKey, KindsAccessorsAndText) {
  const Guid g = Guid::random();
  const GrainKey i = 42;
  const GrainKey s = "42";
  const GrainKey u = g;
  EXPECT_EQ(i.kind(), KeyKind::integer);
  EXPECT_EQ(s.kind(), KeyKind::string);
  EXPECT_EQ(u.kind(), KeyKind::guid);
  EXPECT_EQ(i.as_integer(), 42);
  EXPECT_EQ(s.as_string(), "42");
  EXPECT_EQ(u.as_guid(), g);
  EXPECT_EQ(i.to_string(), "42");
  EXPECT_EQ(u.to_string(), g.to_string());
  EXPECT_NE(i, s) << "an integer key and a string key with the same text are different keys";
  try {
    (void)s.as_integer();
    FAIL();
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().code(), ErrorCode::invalid_argument);
  }
}

TEST(GrainId, CopiesShareOneRecordAndCompareByValue) {
  const GrainId a("Counter", 7);
  const GrainId b = a;
  const GrainId c("Counter", 7);
  const GrainId d("Counter", "7");
  const GrainId e("Other", 7);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, c);
  EXPECT_EQ(a.hash(), c.hash());
  EXPECT_NE(a, d);
  EXPECT_NE(a, e);
  EXPECT_EQ(a.to_string(), "Counter/7");
  EXPECT_FALSE(GrainId().valid());
  std::unordered_set<GrainId, GrainIdHash> set{a, b, c, d, e};
  EXPECT_EQ(set.size(), 3u);
}

// thread_copy() gives an equal id from every thread, whether the id is widely shared (the
// per-thread record) or not (a plain copy), and keeps the id alive after every ref is gone.
TEST(GrainId, ThreadCopiesAreEqualOnEveryThreadAndOutliveTheOriginal) {
  EXPECT_FALSE(GrainId().thread_copy().valid());
  const GrainId lone("Counter", "lone");
  EXPECT_EQ(lone.thread_copy(), lone);
  GrainId shared("Counter", 9);
  std::vector<GrainId> holders(16, shared);  // widely shared: copies go to the per-thread records
  std::vector<GrainId> copies(4);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < copies.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) copies[t] = shared.thread_copy();
    });
  }
  for (auto& th : threads) th.join();
  for (const GrainId& c : copies) {
    EXPECT_EQ(c, shared);
    EXPECT_EQ(c.hash(), shared.hash());
    EXPECT_EQ(c.to_string(), "Counter/9");
  }
  // More widely shared ids than the per-thread cache holds: entries collide, and every copy is
  // still the right id.
  std::vector<std::vector<GrainId>> many;
  for (int k = 0; k < 200; ++k) many.emplace_back(8, GrainId("Many", k));
  for (int round = 0; round < 3; ++round) {
    for (int k = 0; k < 200; ++k) {
      const GrainId c = many[static_cast<std::size_t>(k)][0].thread_copy();
      ASSERT_EQ(c, GrainId("Many", k));
      ASSERT_EQ(c.key().as_integer(), k);
    }
  }
  const GrainId mine = shared.thread_copy();
  holders.clear();
  shared = GrainId();
  EXPECT_EQ(mine.to_string(), "Counter/9");
  EXPECT_EQ(mine, GrainId("Counter", 9));
}

class Keyed : public Grain {
 public:
  Task<std::string> describe() {
    switch (id().key().kind()) {
      case KeyKind::integer: co_return "int:" + std::to_string(id().key().as_integer() * 2);
      case KeyKind::guid: co_return "guid:" + id().key().as_guid().to_string();
      case KeyKind::string: co_return "string:" + id().key().as_string();
    }
    co_return "?";
  }
};

TEST(GrainId, GrainsAreAddressedByEveryKindOfKey) {
  auto rt = testing::make_runtime();
  ASSERT_TRUE(rt->register_grain<Keyed>().ok());
  const Guid g = Guid::random();
  EXPECT_EQ(rt->run(rt->get<Keyed>(21).call<&Keyed::describe>()), "int:42");
  EXPECT_EQ(rt->run(rt->get<Keyed>(std::int64_t{-5}).call<&Keyed::describe>()), "int:-10");
  EXPECT_EQ(rt->run(rt->get<Keyed>("21").call<&Keyed::describe>()), "string:21");
  EXPECT_EQ(rt->run(rt->get<Keyed>(std::string("user@example")).call<&Keyed::describe>()), "string:user@example");
  EXPECT_EQ(rt->run(rt->get<Keyed>(g).call<&Keyed::describe>()), "guid:" + g.to_string());
  EXPECT_EQ(rt->activation_count("Keyed"), 5u);
}

}  // namespace
}  // namespace gpubridge::runtime
