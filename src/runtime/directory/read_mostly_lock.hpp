#pragma once
// ReadMostlyLock: a reader-writer lock for data that every grain call reads and few operations
// write (a directory shard: calls look activations up, creation and removal change the map).
// Each reader slot - a worker's own, threads outside the pool share slot 0 - counts its readers on
// a cache line of its own, so readers on different workers never write a shared line and never
// wait for each other. A worker's slot has one writer (the worker), so it is counted with plain
// stores (one fenced store to announce, a plain release store to leave); slot 0 with atomic RMW. A writer announces itself, then waits until every slot is empty; a reader
// that sees a writer announced backs off until the writer is done (writers go first).
//
// Use only for critical sections that never block, never run user code and never take the same
// lock again (as reader or writer). lock()/unlock() meet Lockable (std::lock_guard).
// Thread-safety: any thread; slot 0 from any thread, slot i >= 1 only from the one thread that
// owns it; the slot passed to lock_shared must be passed to its unlock_shared. A slot beyond the
// slot count is taken as slot 0.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "spin_lock.hpp"

namespace gpubridge::runtime::internal {

class ReadMostlyLock {
 public:
  explicit ReadMostlyLock(std::size_t reader_slots)
      : slots_(std::make_unique<Slot[]>(reader_slots == 0 ? 1 : reader_slots)),
        slot_count_(reader_slots == 0 ? 1 : reader_slots) {}
  ReadMostlyLock(const ReadMostlyLock&) = delete;
  ReadMostlyLock& operator=(const ReadMostlyLock&) = delete;

  void lock_shared(std::size_t slot) noexcept {
    if (slot >= slot_count_) slot = 0;
    std::atomic<std::uint32_t>& readers = slots_[slot].readers;
    for (;;) {
      // Announce, then look for a writer (both seq_cst): a writer that announced itself first
      // is seen here, or it sees this reader when it checks the slots.
      if (slot == 0) {
        readers.fetch_add(1, std::memory_order_seq_cst);
      } else {
        readers.store(readers.load(std::memory_order_relaxed) + 1, std::memory_order_seq_cst);
      }
      if (!writer_.load(std::memory_order_seq_cst)) return;
      leave(slot, readers);
      for (int spins = 0; writer_.load(std::memory_order_relaxed);) wait_a_little(spins);
    }
  }
  void unlock_shared(std::size_t slot) noexcept {
    if (slot >= slot_count_) slot = 0;
    leave(slot, slots_[slot].readers);
  }

  void lock() noexcept {
    writers_.lock();
    writer_.store(true, std::memory_order_seq_cst);
    for (std::size_t i = 0; i < slot_count_; ++i) {
      for (int spins = 0; slots_[i].readers.load(std::memory_order_seq_cst) != 0;) wait_a_little(spins);
    }
  }
  void unlock() noexcept {
    writer_.store(false, std::memory_order_release);
    writers_.unlock();
  }

 private:
  struct alignas(64) Slot {
    std::atomic<std::uint32_t> readers{0};
  };
  static void leave(std::size_t slot, std::atomic<std::uint32_t>& readers) noexcept {
    if (slot == 0) {
      readers.fetch_sub(1, std::memory_order_release);
    } else {
      readers.store(readers.load(std::memory_order_relaxed) - 1, std::memory_order_release);
    }
  }
  static void wait_a_little(int& spins) noexcept {
    if (++spins < 64) {
      cpu_relax();
    } else {
      std::this_thread::yield();  // the other side may have been preempted
    }
  }

  std::unique_ptr<Slot[]> slots_;
  std::size_t slot_count_;
  alignas(64) std::atomic<bool> writer_{false};  // read by every reader: written only by writers
  SpinLock writers_;                             // one writer at a time
};

// Holds a ReadMostlyLock as a reader for a scope.
class SharedSlotLock {
 public:
  SharedSlotLock(ReadMostlyLock& lock, std::size_t slot) noexcept : lock_(lock), slot_(slot) { lock_.lock_shared(slot_); }
  ~SharedSlotLock() { lock_.unlock_shared(slot_); }
  SharedSlotLock(const SharedSlotLock&) = delete;
  SharedSlotLock& operator=(const SharedSlotLock&) = delete;

 private:
  ReadMostlyLock& lock_;
  std::size_t slot_;
};

}  // namespace gpubridge::runtime::internal
