#pragma once
// ObserverSet<Event>: the subscribers of a grain (Orleans' ObserverManager), held as a member
// of the grain that publishes events.
//
// An observer is either a grain (a GrainRef and the method that receives the event, called
// one-way) or a plain callback (called inline, in the publisher's turn). Subscribing the same
// grain twice returns the existing subscription.
//
// Thread-safety: none; use it from the owning grain's turns only (the activation serialises
// them). Callbacks run inside the publisher's turn: they must not block.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <utility>
#include <vector>

#include "gpubridge/runtime/grain_ref.hpp"
#include "gpubridge/runtime/task.hpp"

namespace gpubridge::runtime {

template <typename Event>
class ObserverSet {
 public:
  using SubscriptionId = std::uint64_t;

  SubscriptionId subscribe(std::function<void(const Event&)> callback) {
    const SubscriptionId id = next_id_++;
    entries_.push_back(Entry{id, GrainId(), nullptr, std::move(callback), {}, {}});
    return id;
  }

  // M: a method of G taking the event (by value or const reference) and returning Task<void>.
  template <auto M, typename G>
  SubscriptionId subscribe(const GrainRef<G>& observer) {
    for (const Entry& e : entries_) {
      if (e.grain.valid() && e.grain == observer.id()) return e.id;
    }
    const SubscriptionId id = next_id_++;
    entries_.push_back(Entry{id, observer.id(), observer.runtime(), {},
                             [observer](const Event& event) {
                               return internal::discard_result(observer.template call<M>(event));
                             },
                             [observer](const Event& event) { observer.template send<M>(event); }});
    return id;
  }

  bool unsubscribe(SubscriptionId id) {
    return std::erase_if(entries_, [&](const Entry& e) { return e.id == id; }) > 0;
  }
  template <typename G>
  bool unsubscribe(const GrainRef<G>& observer) {
    return std::erase_if(entries_, [&](const Entry& e) { return e.grain.valid() && e.grain == observer.id(); }) > 0;
  }

  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }

  // Callbacks run now, in subscription order; grain observers get a one-way call. Returns the
  // number of observers notified. An exception from a callback propagates (later observers are
  // not notified).
  std::size_t notify(const Event& event) {
    const std::vector<Entry> snapshot = entries_;  // observers may unsubscribe while notified
    for (const Entry& e : snapshot) {
      if (e.callback) {
        e.callback(event);
      } else if (e.runtime != nullptr) {
        e.send(event);
      }
    }
    return snapshot.size();
  }

  // Like notify(), but completes when every grain observer has processed the event (in
  // subscription order); rethrows the first exception after all were notified.
  Task<void> notify_and_wait(Event event) {
    const std::vector<Entry> snapshot = entries_;
    std::exception_ptr first;
    for (const Entry& e : snapshot) {
      try {
        if (e.callback) {
          e.callback(event);
        } else {
          co_await e.call(event);
        }
      } catch (...) {
        if (!first) first = std::current_exception();
      }
    }
    if (first) std::rethrow_exception(first);
  }

 private:
  struct Entry {
    SubscriptionId id;
    GrainId grain;                                   // grain observers
    Runtime* runtime;                                // grain observers
    std::function<void(const Event&)> callback;      // callback observers
    std::function<Task<void>(const Event&)> call;    // grain observers: the call
    std::function<void(const Event&)> send;          // grain observers: the call, one-way
  };

  std::vector<Entry> entries_;
  SubscriptionId next_id_ = 1;
};

}  // namespace gpubridge::runtime
