#pragma once
// The dynamic batcher's intake: where submit() leaves a request for the dispatcher, without a lock.
//
// A bounded ring of slots, many producers, one consumer (the dispatcher). A producer takes a ticket
// (one atomic add), writes the request into the ticket's slot and publishes it through the slot's
// sequence number. The consumer reads the ring in ticket order, an array, so the requests' own
// cache lines are fetched in parallel; a linked intake (a lock-free stack through the requests)
// made it follow one pointer at a time, each a miss on a line the submitting core had just
// written (bench_compute batch/cpu/batcher: about 40 % of the dispatcher's time).
//
// A producer can be preempted between taking its ticket and publishing: its slot is then a hole.
// take() passes holes and takes the published requests after them, so one descheduled submitter
// never holds up the others; it takes the hole's request on a later call. Requests come out in
// ticket order except for such latecomers; one producer's requests always in its own order (a
// later ticket of it is only visible once its earlier ones are published).
//
// Sequence numbers (Vyukov's bounded queue): slot i starts at seq i. For ticket t in slot
// t % size: seq == t means free for t (or claimed, not yet published), t + 1 published, t + size
// taken (and free for ticket t + size). A producer whose slot is still held by the ticket one lap
// earlier (a hole the ring went all the way around, or more tickets out than slots) waits for it;
// the batcher's queue capacity keeps the ring at least that large, so the wait needs a hole that
// outlives a full lap of other requests.
//
// Closing: close() marks the tail; push() fails from then on. Tickets taken before the close are
// published soon (a producer does nothing else in between), so the closer waits for them with
// drain().
#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <thread>

#include "gpubridge/compute/batcher.hpp"
#include "gpubridge/core/cache_line.hpp"

namespace gpubridge::compute::detail {

class IntakeRing {
 public:
  // At least `min_slots` slots (a power of two).
  explicit IntakeRing(std::size_t min_slots)
      : size_(std::bit_ceil(std::max<std::size_t>(min_slots, 2))),
        mask_(size_ - 1),
        slots_(std::make_unique<Slot[]>(size_)) {
    for (std::uint64_t i = 0; i < size_; ++i) slots_[i].seq.store(i, std::memory_order_relaxed);
  }

  std::size_t slots() const noexcept { return size_; }
  // Tickets taken so far: pushes, including those refused after close().
  std::uint64_t tickets() const noexcept { return tail_.load(std::memory_order_relaxed) & ~kClosed; }
  // A counter of the owner's on the tail's cache line (the batcher counts its queue's places
  // there), so that a push and that count move one line between producers, not two.
  std::atomic<std::size_t>& tail_line_counter() noexcept { return tail_counter_; }

  // Any thread. False once closed (nothing was queued). seq_cst: the publication is ordered
  // before the caller's later seq_cst loads (the batcher's wake-up protocol relies on it).
  bool push(BatchRequest& r) noexcept {
    const std::optional<std::uint64_t> ticket = claim();
    if (!ticket) return false;
    publish(*ticket, r);
    return true;
  }

  // push() in its two steps, apart for tests of a producer stalled in between (a hole): takes a
  // ticket (nullopt once closed), then publishes the request in the ticket's slot.
  std::optional<std::uint64_t> claim() noexcept {
    const std::uint64_t t = tail_.fetch_add(1, std::memory_order_seq_cst);
    if ((t & kClosed) != 0) return std::nullopt;
    return t;
  }
  void publish(std::uint64_t ticket, BatchRequest& r) noexcept {
    Slot& s = slots_[ticket & mask_];
    for (int spins = 0; s.seq.load(std::memory_order_acquire) != ticket; ++spins) {
      if (spins % 64 == 63) {
        std::this_thread::yield();  // the slot's previous request is not taken yet (see above)
      }
    }
    s.request.store(&r, std::memory_order_relaxed);
    s.seq.store(ticket + 1, std::memory_order_seq_cst);
  }

  // Consumer only. Offers every published request not taken yet to fn(request) -> bool, in
  // ticket order, passing holes; a false leaves that request and the ones after it in the ring
  // (the consumer has no room now). Returns the number taken.
  template <class Fn>
  std::size_t take(Fn&& fn) noexcept {
    const std::uint64_t tail = tail_.load(std::memory_order_acquire) & ~kClosed;
    std::size_t taken = 0;
    bool hole = false;
    for (std::uint64_t t = head_; t < tail; ++t) {
      Slot& s = slots_[t & mask_];
      const std::uint64_t seq = s.seq.load(std::memory_order_acquire);
      if (seq == t + 1) {
        if (!fn(*s.request.load(std::memory_order_relaxed))) return taken;
        s.seq.store(t + size_, std::memory_order_release);  // free for ticket t + size
        ++taken;
      } else if (seq <= t) {
        hole = true;  // claimed, not published yet (or the slot's previous lap is a hole)
        continue;
      }
      // Otherwise seq >= t + size: taken on an earlier call (behind a hole), perhaps reused since.
      if (!hole) head_ = t + 1;
    }
    return taken;
  }

  // Consumer only: a published request is waiting to be taken. seq_cst (the batcher's last look
  // before it sleeps pairs with push()).
  bool ready() const noexcept {
    const std::uint64_t tail = tail_.load(std::memory_order_seq_cst) & ~kClosed;
    for (std::uint64_t t = head_; t < tail; ++t) {
      if (slots_[t & mask_].seq.load(std::memory_order_seq_cst) == t + 1) return true;
    }
    return false;
  }

  // push() fails from now on. Returns the number of tickets taken before the close (their
  // requests are queued or about to be). Once; consumer only.
  std::uint64_t close() noexcept { return tail_.fetch_or(kClosed, std::memory_order_seq_cst) & ~kClosed; }
  bool closed() const noexcept { return (tail_.load(std::memory_order_acquire) & kClosed) != 0; }

  // Consumer only, after close() returned `tickets`: takes every request pushed before the close,
  // waiting for producers that hold such a ticket but have not published yet. fn must return true.
  template <class Fn>
  void drain(std::uint64_t tickets, Fn&& fn) noexcept {
    for (;;) {
      take(fn);
      if (head_ >= tickets) return;
      std::this_thread::yield();
    }
  }

 private:
  static constexpr std::uint64_t kClosed = std::uint64_t{1} << 63;

  struct Slot {
    std::atomic<std::uint64_t> seq{0};
    std::atomic<BatchRequest*> request{nullptr};
  };

  const std::uint64_t size_;
  const std::uint64_t mask_;
  const std::unique_ptr<Slot[]> slots_;
  alignas(kCacheLine) std::atomic<std::uint64_t> tail_{0};  // next ticket; kClosed once closed
  std::atomic<std::size_t> tail_counter_{0};
  alignas(kCacheLine) std::uint64_t head_ = 0;  // consumer's: every ticket before it is taken
};

}  // namespace gpubridge::compute::detail
