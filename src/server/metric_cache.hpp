#pragma once
// A per-thread cache of metric children by label values, so hot paths that know their labels only
// as strings (a kernel id, a device id, a grain type) reach the child without the family's lock
// and without allocating. A hit costs a hash and a comparison of the label strings; a miss takes
// the family's lock once (and allocates once, to remember the labels).
//
// Entries are tagged with the cache's unique id, so a thread's entries from a destroyed cache (a
// silo stopped and another started in the same process) never match. Thread-safe.
#include <array>
#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "gpubridge/telemetry/metrics.hpp"

namespace gpubridge::server {

class MetricCache {
 public:
  MetricCache() : id_(next_id().fetch_add(1, std::memory_order_relaxed)) {}
  MetricCache(const MetricCache&) = delete;
  MetricCache& operator=(const MetricCache&) = delete;

  // The child of `family` for `labels` (at most kMaxLabels), or null when the family refuses the
  // labels (counted in errors()).
  template <typename Metric>
  Metric* child(telemetry::Family<Metric>& family, std::initializer_list<std::string_view> labels) {
    return static_cast<Metric*>(lookup(&family, labels, [&family, labels]() -> void* {
      auto r = family.with(telemetry::LabelValues(labels));
      return r ? static_cast<void*>(*r) : nullptr;
    }));
  }
  std::uint64_t errors() const noexcept { return errors_.load(std::memory_order_relaxed); }

  static constexpr std::size_t kMaxLabels = 4;

 private:
  struct Entry {
    std::uint64_t owner = 0;
    const void* family = nullptr;
    std::uint64_t hash = 0;
    std::array<std::string, kMaxLabels> labels;
    std::size_t count = 0;
    void* metric = nullptr;
  };
  static constexpr std::size_t kEntries = 256;

  template <typename Create>
  void* lookup(const void* family, std::initializer_list<std::string_view> labels, Create&& create) {
    if (labels.size() > kMaxLabels) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
    std::uint64_t h = 1469598103934665603ull ^ reinterpret_cast<std::uintptr_t>(family);
    for (std::string_view l : labels) {
      for (char c : l) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
      h = (h ^ 0xff) * 1099511628211ull;
    }
    thread_local std::array<Entry, kEntries> entries;
    Entry& e = entries[h % kEntries];
    if (e.owner == id_ && e.family == family && e.hash == h && e.count == labels.size()) {
      std::size_t i = 0;
      for (std::string_view l : labels) {
        if (e.labels[i] != l) break;
        ++i;
      }
      if (i == labels.size()) return e.metric;
    }
    void* metric = create();
    if (metric == nullptr) {
      errors_.fetch_add(1, std::memory_order_relaxed);
      return nullptr;
    }
    e.owner = id_;
    e.family = family;
    e.hash = h;
    e.count = 0;
    for (std::string_view l : labels) e.labels[e.count++].assign(l);
    e.metric = metric;
    return metric;
  }

  static std::atomic<std::uint64_t>& next_id() {
    static std::atomic<std::uint64_t> id{1};
    return id;
  }

  const std::uint64_t id_;
  std::atomic<std::uint64_t> errors_{0};
};

}  // namespace gpubridge::server
