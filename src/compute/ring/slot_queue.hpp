#pragma once
// Internal: the slot-queue primitives of the ring protocol (see gpubridge/compute/ring.hpp) over a
// RingMemory block, with std::atomic_ref on the shared words. Non-owning views; the block must
// outlive them.
#include <atomic>
#include <cstdint>

#include "gpubridge/compute/ring.hpp"

namespace gpubridge::compute::ring::detail {

static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free);

inline std::uint64_t load_acquire(std::uint64_t& word) {
  return std::atomic_ref<std::uint64_t>(word).load(std::memory_order_acquire);
}
inline std::uint32_t load_acquire(std::uint32_t& word) {
  return std::atomic_ref<std::uint32_t>(word).load(std::memory_order_acquire);
}
inline void store_release(std::uint64_t& word, std::uint64_t value) {
  std::atomic_ref<std::uint64_t>(word).store(value, std::memory_order_release);
}
inline void store_release(std::uint32_t& word, std::uint32_t value) {
  std::atomic_ref<std::uint32_t>(word).store(value, std::memory_order_release);
}

// One ring of slots. Producers: try_claim + publish. The single consumer: try_peek + release.
class SlotQueue {
 public:
  SlotQueue(RingSlot* slots, std::uint32_t capacity, std::uint64_t& enqueue, std::uint64_t& dequeue)
      : slots_(slots), mask_(capacity - 1), capacity_(capacity), enqueue_(enqueue),
        dequeue_(dequeue) {}

  // Claims the next free slot for writing (lock-free, many producers); nullptr when full.
  RingSlot* try_claim(std::uint64_t& position) {
    std::atomic_ref<std::uint64_t> enqueue(enqueue_);
    std::uint64_t pos = enqueue.load(std::memory_order_relaxed);
    for (;;) {
      RingSlot& slot = slots_[pos & mask_];
      const std::uint64_t turn = load_acquire(slot.turn);
      const auto lag = static_cast<std::int64_t>(turn - pos);
      if (lag == 0) {
        if (enqueue.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          position = pos;
          return &slot;
        }
      } else if (lag < 0) {
        return nullptr;  // the slot still holds a message from the previous lap: full
      } else {
        pos = enqueue.load(std::memory_order_relaxed);  // another producer moved on
      }
    }
  }
  // Makes a claimed, filled slot visible to the consumer.
  static void publish(RingSlot& slot, std::uint64_t position) {
    store_release(slot.turn, position + 1);
  }

  // The next published slot for the single consumer; nullptr when none is ready.
  RingSlot* try_peek(std::uint64_t& position) {
    const std::uint64_t pos = std::atomic_ref<std::uint64_t>(dequeue_).load(std::memory_order_relaxed);
    RingSlot& slot = slots_[pos & mask_];
    if (load_acquire(slot.turn) != pos + 1) return nullptr;
    position = pos;
    return &slot;
  }
  // Frees a slot the consumer has finished reading.
  void release(RingSlot& slot, std::uint64_t position) {
    store_release(slot.turn, position + capacity_);
    store_release(dequeue_, position + 1);
  }
  // True when no slot is claimed or published beyond the consumer (claims in progress count).
  bool empty() const {
    return std::atomic_ref<std::uint64_t>(enqueue_).load(std::memory_order_acquire) ==
           std::atomic_ref<std::uint64_t>(dequeue_).load(std::memory_order_acquire);
  }

 private:
  RingSlot* slots_;
  std::uint64_t mask_;
  std::uint64_t capacity_;
  std::uint64_t& enqueue_;
  std::uint64_t& dequeue_;
};

// Shard `shard`'s rings (shard < memory.shard_count()).
inline SlotQueue request_queue(const RingMemory& memory, std::uint32_t shard) {
  RingShardHeader& sh = memory.shard(shard);
  return SlotQueue(reinterpret_cast<RingSlot*>(memory.base() + sh.request_slots_offset),
                   memory.header().request_capacity, sh.request_enqueue, sh.request_dequeue);
}
inline SlotQueue completion_queue(const RingMemory& memory, std::uint32_t shard) {
  RingShardHeader& sh = memory.shard(shard);
  return SlotQueue(reinterpret_cast<RingSlot*>(memory.base() + sh.completion_slots_offset),
                   memory.header().completion_capacity, sh.completion_enqueue, sh.completion_dequeue);
}
inline ActorEntry* actor_table(const RingMemory& memory) {
  return reinterpret_cast<ActorEntry*>(memory.base() + memory.header().actor_table_offset);
}

}  // namespace gpubridge::compute::ring::detail
