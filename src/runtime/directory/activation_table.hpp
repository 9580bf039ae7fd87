#pragma once
// ActivationTable: one directory shard's map grain id -> its activations. Open addressing with
// linear probing over a power-of-two array of slots; a slot holds the id's hash, the id and its
// activation inline, so that finding a listed id reads one slot - usually one cache line - and
// then the activation. (A node-based map read a bucket, one or two list nodes, an id record per
// node passed and a vector before reaching the activation: with hundreds of thousands of grains,
// each a cache miss on almost every call.) Erasing shifts the following slots back, so there are
// no tombstones and a lookup stops at the first free slot. The table grows when 3/4 full and
// halves when under 1/8 full (all of it is freed with its last id), so a population that was
// collected does not keep its peak's slots.
//
// Not thread-safe: the owning shard's lock guards it. Slot pointers stay valid until the next
// add() or remove().
#include <cstddef>
#include <memory>
#include <vector>

#include "gpubridge/runtime/grain_id.hpp"

namespace gpubridge::runtime::internal {

class Activation;

class ActivationTable {
 public:
  struct Slot {
    std::size_t hash = 0;
    GrainId id;  // not valid(): the slot is free
    // The id's activation; for a stateless worker type the first of `workers`.
    Activation* first = nullptr;
    // A stateless worker type's activations (null for other types).
    std::unique_ptr<std::vector<Activation*>> workers;
  };

  ActivationTable() = default;
  ActivationTable(const ActivationTable&) = delete;
  ActivationTable& operator=(const ActivationTable&) = delete;

  // The slot of a listed id, or null.
  Slot* find(const GrainId& id) noexcept {
    if (size_ == 0) return nullptr;
    const std::size_t hash = id.hash();
    for (std::size_t i = home(hash);; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (!s.id.valid()) return nullptr;
      if (s.hash == hash && s.id == id) return &s;
    }
  }

  // Lists `a` as the first activation of `id`, which is not listed (stateless: whether the id's
  // type is a stateless worker). May throw bad_alloc, and then lists nothing.
  void add(const GrainId& id, Activation* a, bool stateless);
  // Lists `a` as one more activation of a stateless worker id (s.workers is set). May throw
  // bad_alloc, and then lists nothing.
  static void add_worker(Slot& s, Activation* a) { s.workers->push_back(a); }
  // Unlists `a` from `id`'s activations (frees the slot with its last one). False when `a` is not
  // listed under `id`.
  bool remove(const GrainId& id, const Activation* a) noexcept;

  // fn(id, Activation*) for every listed activation.
  template <typename F>
  void for_each(F&& fn) const {
    for (std::size_t i = 0; i < capacity(); ++i) {
      const Slot& s = slots_[i];
      if (!s.id.valid()) continue;
      if (s.workers) {
        for (Activation* a : *s.workers) fn(s.id, a);
      } else {
        fn(s.id, s.first);
      }
    }
  }

  std::size_t ids() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return slots_ ? mask_ + 1 : 0; }  // slots allocated

 private:
  // Fibonacci hashing: spreads the id's hash over the table by its high product bits.
  std::size_t home(std::size_t hash) const noexcept { return (hash * 0x9E3779B97F4A7C15ull) >> shift_; }
  static constexpr std::size_t kMinCapacity = 16;
  void rehash(std::size_t new_capacity);  // a power of two that holds every id; may throw bad_alloc
  void erase_slot(std::size_t i) noexcept;

  std::unique_ptr<Slot[]> slots_;
  std::size_t mask_ = 0;
  unsigned shift_ = 64;
  std::size_t size_ = 0;  // listed ids
};

}  // namespace gpubridge::runtime::internal
