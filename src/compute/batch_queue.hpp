#pragma once
// The dynamic batcher's request queue: one FIFO of request pointers per priority, in rings that
// only grow, so queuing allocates nothing once the rings are as deep as the queue gets. pop()
// serves high before normal before low (strict priority), first in first out within a priority.
// Not thread-safe: only the batcher's dispatcher uses it (and stop() once the dispatcher is gone).
// The queue never owns a request.
#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <new>
#include <vector>

#include "gpubridge/compute/batcher.hpp"

namespace gpubridge::compute::detail {

// The batching step, as data in and a decision out (no clock reads, so it is testable with manual
// time): send a batch now, or wait until `wake` unless something changes first.
struct BatchDecision {
  bool send = false;
  SteadyTime wake = SteadyTime::max();
};

// `queued` requests wait, the oldest since `oldest`; a batch closes at `limit` requests or once
// the oldest has waited `max_delay`.
inline BatchDecision decide_batch(std::size_t queued, std::size_t limit, SteadyTime oldest, SteadyTime now,
                                  std::chrono::microseconds max_delay) noexcept {
  if (queued == 0) return {false, SteadyTime::max()};
  const SteadyTime close = oldest + max_delay;
  if (queued >= limit || now >= close) return {true, now};
  return {false, close};
}

// Adaptive mode (AIMD): the next batch-size limit after a batch whose oldest request took
// `latency` (queueing + execution): + additive_step while at or under the target, halved when
// over, kept within [min_batch, max_batch].
inline std::size_t next_batch_limit(std::size_t current, std::chrono::nanoseconds latency,
                                    const BatchPolicy& policy) noexcept {
  const std::size_t next = latency > policy.latency_target ? current / 2 : current + policy.additive_step;
  return std::clamp(next, policy.min_batch, policy.max_batch);
}

// The limit adaptive mode starts from: the middle of [min_batch, max_batch].
inline std::size_t initial_batch_limit(const BatchPolicy& policy) noexcept {
  return policy.adaptive ? policy.min_batch + (policy.max_batch - policy.min_batch) / 2 : policy.max_batch;
}

class BatchQueue {
 public:
  // Room for `reserve` requests of normal priority (the usual case) before any growth.
  explicit BatchQueue(std::size_t reserve = 0) {
    if (reserve > 0) fifos_[static_cast<std::size_t>(Priority::normal)].grow_to(reserve);
  }

  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }

  // False when the queue had to grow and could not (out of memory): nothing changed.
  [[nodiscard]] bool push(BatchRequest& r) noexcept {
    if (!fifo(r).push_back(r)) return false;
    ++size_;
    return true;
  }

  // Undoes pop(): `r` goes back to the front of its priority's FIFO (where pop() took it, so
  // there is room).
  void push_front(BatchRequest& r) noexcept {
    fifo(r).push_front(r);
    ++size_;
  }

  // The request pop() would return, or nullptr.
  BatchRequest* front() const noexcept {
    for (std::size_t p = kPriorityCount; p-- > 0;) {
      if (!fifos_[p].empty()) return fifos_[p].front();
    }
    return nullptr;
  }

  BatchRequest* pop() noexcept {
    for (std::size_t p = kPriorityCount; p-- > 0;) {
      if (fifos_[p].empty()) continue;
      --size_;
      return fifos_[p].pop_front();
    }
    return nullptr;
  }

  // Enqueue time of the request that has waited longest (the oldest FIFO head). Not empty().
  SteadyTime oldest_enqueued() const noexcept {
    SteadyTime oldest = SteadyTime::max();
    for (const Fifo& f : fifos_) {
      if (!f.empty()) oldest = std::min(oldest, f.front()->enqueued_);
    }
    return oldest;
  }

  // Empties the queue; returns its requests as a list linked through next_ (high priority first).
  BatchRequest* take_all() noexcept {
    BatchRequest* head = nullptr;
    BatchRequest** tail = &head;
    for (std::size_t p = kPriorityCount; p-- > 0;) {
      while (!fifos_[p].empty()) {
        BatchRequest* r = fifos_[p].pop_front();
        r->next_ = nullptr;
        *tail = r;
        tail = &r->next_;
      }
    }
    size_ = 0;
    return head;
  }

  // Takes out every request whose deadline is at or before `now` and returns them as a list
  // linked through next_; `earliest` becomes the earliest deadline left in the queue (max() if
  // none). O(size): the batcher calls it only once a deadline it knows of has passed.
  BatchRequest* remove_expired(SteadyTime now, SteadyTime& earliest) noexcept {
    BatchRequest* expired = nullptr;
    BatchRequest** expired_tail = &expired;
    earliest = SteadyTime::max();
    for (Fifo& f : fifos_) {
      const std::size_t n = f.size();
      for (std::size_t i = 0; i < n; ++i) {  // one turn around: each request once, order kept
        BatchRequest* r = f.pop_front();
        if (r->deadline <= now) {
          r->next_ = nullptr;
          *expired_tail = r;
          expired_tail = &r->next_;
          --size_;
        } else {
          earliest = std::min(earliest, r->deadline);
          f.push_back_unchecked(*r);  // the slot it just left
        }
      }
    }
    return expired;
  }

 private:
  // A FIFO of request pointers in a ring that only grows (a power of two). An array rather than
  // a list through the requests, so that forming a batch reads the requests' fields in parallel
  // instead of following one pointer (one cache miss) after another.
  class Fifo {
   public:
    bool empty() const noexcept { return size_ == 0; }
    std::size_t size() const noexcept { return size_; }
    BatchRequest* front() const noexcept { return ring_[head_ & mask()]; }

    bool push_back(BatchRequest& r) noexcept {
      if (size_ == ring_.size() && !grow_to(std::max<std::size_t>(2 * size_, kInitial))) return false;
      push_back_unchecked(r);
      return true;
    }
    void push_back_unchecked(BatchRequest& r) noexcept {
      ring_[(head_ + size_) & mask()] = &r;
      ++size_;
    }
    void push_front(BatchRequest& r) noexcept {
      head_ = (head_ - 1) & mask();
      ring_[head_] = &r;
      ++size_;
    }
    BatchRequest* pop_front() noexcept {
      BatchRequest* r = ring_[head_];
      head_ = (head_ + 1) & mask();
      --size_;
      return r;
    }

    // Capacity for at least `n` (a power of two), order kept. False: out of memory, unchanged.
    bool grow_to(std::size_t n) noexcept {
      const std::size_t capacity = std::bit_ceil(n);
      if (capacity <= ring_.size()) return true;
      try {
        std::vector<BatchRequest*> bigger(capacity);
        for (std::size_t i = 0; i < size_; ++i) bigger[i] = ring_[(head_ + i) & mask()];
        ring_.swap(bigger);
        head_ = 0;
        return true;
      } catch (const std::bad_alloc&) {
        return false;
      }
    }

   private:
    static constexpr std::size_t kInitial = 64;
    std::size_t mask() const noexcept { return ring_.size() - 1; }
    std::vector<BatchRequest*> ring_;
    std::size_t head_ = 0;  // index of the front, always < ring_.size() once non-empty
    std::size_t size_ = 0;
  };

  Fifo& fifo(const BatchRequest& r) noexcept { return fifos_[static_cast<std::size_t>(r.priority)]; }

  std::array<Fifo, kPriorityCount> fifos_{};  // indexed by Priority
  std::size_t size_ = 0;
};

}  // namespace gpubridge::compute::detail
