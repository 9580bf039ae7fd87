#pragma once
// ActivationDirectory: the local map grain id -> its activations (one, or several for a
// stateless worker). Sharded by id hash; each shard has its own (spin) lock. The directory does not
// own activations: an activation removes itself (remove()) and frees itself when its last slice
// ends. Holding a shard's lock keeps every activation listed in it alive, which is what lets
// route() enqueue without reference counting.
//
// Lock order: shard mutex, then an activation's mutex (never the reverse).
#include <array>
#include <cstddef>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gpubridge/runtime/grain_id.hpp"
#include "spin_lock.hpp"

namespace gpubridge::runtime::internal {

class Activation;

class ActivationDirectory {
 public:
  static constexpr std::size_t kShards = 32;
  struct Shard {
    SpinLock mu;  // held for a lookup and an enqueue; rarely for creating an activation
    std::unordered_map<GrainId, std::vector<Activation*>, GrainIdHash> map;
  };

  Shard& shard_for(const GrainId& id) noexcept { return shards_[(id.hash() >> 7) % kShards]; }

  // Unlists `a` (registered under `id`) and runs `then()` while the shard is still locked.
  template <typename F>
  void remove(const GrainId& id, Activation* a, F&& then) {
    Shard& s = shard_for(id);
    std::lock_guard lock(s.mu);
    auto it = s.map.find(id);
    if (it != s.map.end()) {
      std::erase(it->second, a);
      if (it->second.empty()) s.map.erase(it);
    }
    then();
  }

  // Calls fn(Activation*) for every listed activation, one shard locked at a time.
  template <typename F>
  void for_each(F&& fn) {
    for (Shard& s : shards_) {
      std::lock_guard lock(s.mu);
      for (auto& [id, list] : s.map) {
        for (Activation* a : list) fn(a);
      }
    }
  }

  std::size_t count() {
    std::size_t n = 0;
    for_each([&](Activation*) { ++n; });
    return n;
  }
  std::size_t count(std::string_view type) {
    std::size_t n = 0;
    for (Shard& s : shards_) {
      std::lock_guard lock(s.mu);
      for (auto& [id, list] : s.map) {
        if (id.type() == type) n += list.size();
      }
    }
    return n;
  }

 private:
  std::array<Shard, kShards> shards_;
};

}  // namespace gpubridge::runtime::internal
