#pragma once
// Latency histogram with fixed log-spaced buckets (20 per decade from 100 ns to 100 s):
// constant memory, O(1) record, percentiles within one bucket width (about 12%). Not
// thread-safe: keep one per thread and merge.
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>

namespace gpubridge::server {

class LatencyHistogram {
 public:
  static constexpr int kPerDecade = 20;
  static constexpr int kDecades = 9;  // 1e-7 s .. 1e2 s
  static constexpr int kBuckets = kPerDecade * kDecades;

  void record(std::chrono::nanoseconds d) {
    ++counts_[static_cast<std::size_t>(bucket(static_cast<double>(d.count()) * 1e-9))];
    ++total_;
  }
  void merge(const LatencyHistogram& other) {
    for (int i = 0; i < kBuckets; ++i) counts_[static_cast<std::size_t>(i)] += other.counts_[static_cast<std::size_t>(i)];
    total_ += other.total_;
  }
  std::uint64_t count() const { return total_; }
  // Upper edge of the bucket holding the q-quantile (0 < q <= 1), in seconds; 0 when empty.
  double quantile(double q) const {
    if (total_ == 0) return 0;
    const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_)));
    std::uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[static_cast<std::size_t>(i)];
      if (seen >= rank) return upper_edge(i);
    }
    return upper_edge(kBuckets - 1);
  }

 private:
  static int bucket(double seconds) {
    if (seconds <= 1e-7) return 0;
    const int b = static_cast<int>(std::floor((std::log10(seconds) + 7.0) * kPerDecade));
    return b < 0 ? 0 : (b >= kBuckets ? kBuckets - 1 : b);
  }
  static double upper_edge(int b) { return std::pow(10.0, static_cast<double>(b + 1) / kPerDecade - 7.0); }

  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t total_ = 0;
};

}  // namespace gpubridge::server
