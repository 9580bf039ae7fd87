// ActivationTable (src/runtime/directory/activation_table.hpp): the directory shard's open-
// addressing map. Checked against std::unordered_map over long random sequences of adds and
// removes - small key ranges, so that the table wraps around its end, grows, and shifts slots back
// on removal in every arrangement - and on the contracts of each operation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "directory/activation_table.hpp"

namespace gpubridge::runtime::internal {
namespace {

// The table never dereferences activations: distinct addresses stand for them.
struct alignas(64) Fake {
  std::byte bytes[64];
};
Activation* fake(std::vector<Fake>& pool, std::size_t i) { return reinterpret_cast<Activation*>(&pool.at(i)); }

GrainId id_of(std::int64_t key) { return GrainId(key % 3 == 0 ? "Worker" : "Single", key); }
bool stateless(std::int64_t key) { return key % 3 == 0; }

// Every listed id of `model` is found with exactly its activations, and nothing else is.
void expect_same(ActivationTable& table, const std::map<std::int64_t, std::vector<Activation*>>& model,
                 std::int64_t key_range) {
  ASSERT_EQ(table.ids(), model.size());
  for (std::int64_t k = 0; k < key_range; ++k) {
    ActivationTable::Slot* s = table.find(id_of(k));
    const auto it = model.find(k);
    if (it == model.end()) {
      ASSERT_EQ(s, nullptr) << "key " << k << " found after its removal";
      continue;
    }
    ASSERT_NE(s, nullptr) << "key " << k << " lost";
    EXPECT_EQ(s->id, id_of(k));
    EXPECT_EQ(s->first, it->second.front());
    if (stateless(k)) {
      ASSERT_TRUE(s->workers);
      EXPECT_EQ(*s->workers, it->second);
    } else {
      EXPECT_FALSE(s->workers);
    }
  }
  std::size_t seen = 0;
  table.for_each([&](const GrainId&, Activation*) { ++seen; });
  std::size_t listed = 0;
  for (const auto& [k, list] : model) listed += list.size();
  EXPECT_EQ(seen, listed);
}

TEST(ActivationTableTest, RandomAddsAndRemovesMatchAStandardMap) {
  for (const std::int64_t key_range : {5, 12, 40, 1000}) {
    SCOPED_TRACE("key range " + std::to_string(key_range));
    ActivationTable table;
    std::map<std::int64_t, std::vector<Activation*>> model;
    std::vector<Fake> pool(4096);
    std::size_t next = 0;
    std::mt19937_64 rng(static_cast<std::uint64_t>(key_range));
    for (int step = 0; step < 20000; ++step) {
      const auto k = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(key_range));
      auto it = model.find(k);
      const bool add = it == model.end() || (stateless(k) && it->second.size() < 4 && rng() % 2 == 0);
      if (add) {
        Activation* a = fake(pool, next++ % pool.size());
        if (it == model.end()) {
          table.add(id_of(k), a, stateless(k));
          model[k].push_back(a);
        } else {
          ActivationTable::Slot* s = table.find(id_of(k));
          ASSERT_NE(s, nullptr);
          ActivationTable::add_worker(*s, a);
          it->second.push_back(a);
        }
      } else {
        std::vector<Activation*>& list = it->second;
        Activation* a = list[rng() % list.size()];
        ASSERT_TRUE(table.remove(id_of(k), a));
        std::erase(list, a);
        if (list.empty()) model.erase(it);
      }
      if (step % 97 == 0) expect_same(table, model, key_range);
    }
    expect_same(table, model, key_range);
  }
}

TEST(ActivationTableTest, AnEqualIdFromAnotherRecordFindsTheSlot) {
  ActivationTable table;
  std::vector<Fake> pool(1);
  table.add(GrainId("Single", "twin-7"), fake(pool, 0), false);
  const GrainId other_record("Single", "twin-7");  // equal, not a copy
  ActivationTable::Slot* s = table.find(other_record);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->first, fake(pool, 0));
  EXPECT_EQ(table.find(GrainId("Other", "twin-7")), nullptr);  // same key, another type
}

TEST(ActivationTableTest, RemovingWhatIsNotListedChangesNothing) {
  ActivationTable table;
  std::vector<Fake> pool(3);
  EXPECT_FALSE(table.remove(id_of(1), fake(pool, 0)));  // empty table
  table.add(id_of(1), fake(pool, 0), false);
  table.add(id_of(3), fake(pool, 1), true);
  EXPECT_FALSE(table.remove(id_of(1), fake(pool, 1)));  // another activation
  EXPECT_FALSE(table.remove(id_of(3), fake(pool, 2)));  // not one of the workers
  EXPECT_FALSE(table.remove(id_of(4), fake(pool, 0)));  // an id not listed
  EXPECT_EQ(table.ids(), 2u);
  EXPECT_EQ(table.find(id_of(1))->first, fake(pool, 0));
  EXPECT_EQ(table.find(id_of(3))->first, fake(pool, 1));
}

TEST(ActivationTableTest, AStatelessIdsFirstFollowsItsRemainingWorkers) {
  ActivationTable table;
  std::vector<Fake> pool(3);
  table.add(id_of(3), fake(pool, 0), true);
  ActivationTable::add_worker(*table.find(id_of(3)), fake(pool, 1));
  ActivationTable::add_worker(*table.find(id_of(3)), fake(pool, 2));
  ASSERT_TRUE(table.remove(id_of(3), fake(pool, 0)));
  EXPECT_EQ(table.find(id_of(3))->first, fake(pool, 1));
  ASSERT_TRUE(table.remove(id_of(3), fake(pool, 1)));
  ASSERT_TRUE(table.remove(id_of(3), fake(pool, 2)));
  EXPECT_EQ(table.find(id_of(3)), nullptr);
  EXPECT_EQ(table.ids(), 0u);
}

TEST(ActivationTableTest, ACollectedPopulationDoesNotKeepItsPeaksSlots) {
  ActivationTable table;
  std::vector<Fake> pool(1);
  constexpr std::int64_t kPeak = 20000;
  for (std::int64_t k = 1; k <= kPeak; ++k) table.add(GrainId("Single", k), fake(pool, 0), false);
  EXPECT_GE(table.capacity(), static_cast<std::size_t>(kPeak));
  for (std::int64_t k = 11; k <= kPeak; ++k) ASSERT_TRUE(table.remove(GrainId("Single", k), fake(pool, 0)));
  EXPECT_LE(table.capacity(), 128u) << "10 ids left";
  for (std::int64_t k = 1; k <= 10; ++k) EXPECT_NE(table.find(GrainId("Single", k)), nullptr) << k;
  for (std::int64_t k = 1; k <= 10; ++k) ASSERT_TRUE(table.remove(GrainId("Single", k), fake(pool, 0)));
  EXPECT_EQ(table.capacity(), 0u);
  EXPECT_EQ(table.find(GrainId("Single", 1)), nullptr);
  table.add(GrainId("Single", 1), fake(pool, 0), false);  // usable again
  EXPECT_NE(table.find(GrainId("Single", 1)), nullptr);
}

}  // namespace
}  // namespace gpubridge::runtime::internal
