#pragma once
// ActivationDirectory: the local map grain id -> its activations (one, or several for a
// stateless worker). Sharded by id hash; each shard has its own ReadMostlyLock: calls look up and
// enqueue as readers (on their worker's own slot, so calls to one hot id from many workers do not
// serialise), creation and removal of activations are writers. The directory does not own
// activations: an activation removes itself (remove()) and frees itself when its last slice ends.
// Holding a shard's lock (either way) keeps every activation listed in it alive, which is what
// lets route() enqueue without reference counting.
//
// Lock order: shard lock, then an activation's mutex (never the reverse).
#include <cstddef>
#include <memory>
#include <mutex>
#include <string_view>

#include "activation_table.hpp"
#include "gpubridge/runtime/grain_id.hpp"
#include "read_mostly_lock.hpp"

namespace gpubridge::runtime::internal {

class Activation;

class ActivationDirectory {
 public:
  static constexpr std::size_t kShards = 32;
  struct Shard {
    explicit Shard(std::size_t reader_slots) : mu(reader_slots) {}
    // Shared for a lookup and an enqueue; exclusive to create or remove an activation.
    ReadMostlyLock mu;
    ActivationTable table;
  };

  // reader_slots: see ReadMostlyLock (the runtime's workers + 1).
  explicit ActivationDirectory(std::size_t reader_slots) {
    shards_.reserve(kShards);
    for (std::size_t i = 0; i < kShards; ++i) shards_.push_back(std::make_unique<Shard>(reader_slots));
  }

  Shard& shard_for(const GrainId& id) noexcept { return *shards_[(id.hash() >> 7) % kShards]; }

  // Unlists `a` (registered under `id`) and runs `then()` while the shard is still locked.
  // False when `a` was not listed (removed before).
  template <typename F>
  bool remove(const GrainId& id, Activation* a, F&& then) {
    Shard& s = shard_for(id);
    std::lock_guard lock(s.mu);
    const bool listed = s.table.remove(id, a);
    then();
    return listed;
  }

  // Calls fn(Activation*) for every listed activation, one shard locked at a time.
  template <typename F>
  void for_each(F&& fn) {
    for (auto& s : shards_) {
      std::lock_guard lock(s->mu);
      s->table.for_each([&](const GrainId&, Activation* a) { fn(a); });
    }
  }

  std::size_t count() {
    std::size_t n = 0;
    for_each([&](Activation*) { ++n; });
    return n;
  }
  std::size_t count(std::string_view type) {
    std::size_t n = 0;
    for (auto& s : shards_) {
      std::lock_guard lock(s->mu);
      s->table.for_each([&](const GrainId& id, Activation*) { n += id.type() == type ? 1 : 0; });
    }
    return n;
  }

 private:
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace gpubridge::runtime::internal
