#pragma once
// The dynamic batcher's request queue: one intrusive FIFO per priority, linked through
// BatchRequest::next_, so queuing allocates nothing. pop() serves high before normal before low
// (strict priority), first in first out within a priority. Not thread-safe: only the batcher's
// dispatcher uses it (and stop() once the dispatcher is gone). The queue never owns a request; it
// only links the ones the batcher accepted.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>

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
  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }

  void push(BatchRequest& r) noexcept {
    Fifo& f = fifos_[static_cast<std::size_t>(r.priority)];
    r.next_ = nullptr;
    (f.tail == nullptr ? f.head : f.tail->next_) = &r;
    f.tail = &r;
    ++size_;
  }

  // Undoes pop(): `r` goes back to the front of its priority's FIFO.
  void push_front(BatchRequest& r) noexcept {
    Fifo& f = fifos_[static_cast<std::size_t>(r.priority)];
    r.next_ = f.head;
    f.head = &r;
    if (f.tail == nullptr) f.tail = &r;
    ++size_;
  }

  // The request pop() would return, or nullptr.
  BatchRequest* front() const noexcept {
    for (std::size_t p = kPriorityCount; p-- > 0;) {
      if (fifos_[p].head != nullptr) return fifos_[p].head;
    }
    return nullptr;
  }

  BatchRequest* pop() noexcept {
    for (std::size_t p = kPriorityCount; p-- > 0;) {
      Fifo& f = fifos_[p];
      if (f.head == nullptr) continue;
      BatchRequest* r = f.head;
      f.head = r->next_;
      if (f.head == nullptr) f.tail = nullptr;
      r->next_ = nullptr;
      --size_;
      return r;
    }
    return nullptr;
  }

  // Moves every request of `other` to the back of this queue's FIFO of the same priority. O(1).
  void append(BatchQueue& other) noexcept {
    for (std::size_t p = 0; p < kPriorityCount; ++p) {
      Fifo& src = other.fifos_[p];
      if (src.head == nullptr) continue;
      Fifo& dst = fifos_[p];
      (dst.tail == nullptr ? dst.head : dst.tail->next_) = src.head;
      dst.tail = src.tail;
      src = {};
    }
    size_ += other.size_;
    other.size_ = 0;
  }

  // Enqueue time of the request that has waited longest (the oldest FIFO head). Not empty().
  SteadyTime oldest_enqueued() const noexcept {
    SteadyTime oldest = SteadyTime::max();
    for (const Fifo& f : fifos_) {
      if (f.head != nullptr) oldest = std::min(oldest, f.head->enqueued_);
    }
    return oldest;
  }

  // Empties the queue; returns its requests as a list linked through next_ (high priority first).
  BatchRequest* take_all() noexcept {
    BatchRequest* head = nullptr;
    BatchRequest** tail = &head;
    for (std::size_t p = kPriorityCount; p-- > 0;) {
      Fifo& f = fifos_[p];
      if (f.head == nullptr) continue;
      *tail = f.head;
      tail = &f.tail->next_;
      f = {};
    }
    size_ = 0;
    return head;
  }

  // Unlinks every request whose deadline is at or before `now` and returns them as a list linked
  // through next_; `earliest` becomes the earliest deadline left in the queue (max() if none).
  // O(size): the batcher calls it only once a deadline it knows of has passed.
  BatchRequest* remove_expired(SteadyTime now, SteadyTime& earliest) noexcept {
    BatchRequest* expired = nullptr;
    BatchRequest** expired_tail = &expired;
    earliest = SteadyTime::max();
    for (Fifo& f : fifos_) {
      BatchRequest* kept_tail = nullptr;
      BatchRequest** link = &f.head;
      while (BatchRequest* r = *link) {
        if (r->deadline <= now) {
          *link = r->next_;
          r->next_ = nullptr;
          *expired_tail = r;
          expired_tail = &r->next_;
          --size_;
        } else {
          earliest = std::min(earliest, r->deadline);
          kept_tail = r;
          link = &r->next_;
        }
      }
      f.tail = kept_tail;
    }
    return expired;
  }

 private:
  struct Fifo {
    BatchRequest* head = nullptr;
    BatchRequest* tail = nullptr;
  };
  std::array<Fifo, kPriorityCount> fifos_{};  // indexed by Priority
  std::size_t size_ = 0;
};

}  // namespace gpubridge::compute::detail
