#pragma once
// The metrics registry: counters, gauges and fixed-bucket histograms, exposed as Prometheus text
// (format 0.0.4) and as structured snapshots (for the JSON status endpoint and the dashboard).
//
// Ownership and lifetime: a silo owns one Registry (there is no global one). Families and their
// children (the metric for one set of label values) live as long as the registry; the pointers
// returned by Registry::counter/gauge/histogram and Family::with stay valid until the registry is
// destroyed, so hot paths look a child up once and keep the pointer.
//
// Thread safety: every member of every type here may be called from any thread concurrently.
// Registering families and creating children take a lock; updating a child never does.
//
// Hot-path cost (no lock, no allocation, no system call, and on an owned stripe no atomic
// read-modify-write either):
//   Counter::inc        an add to this thread's stripe (its own cache line).
//   Gauge::set          one relaxed store.  Gauge::add: a relaxed compare-exchange loop on one
//                       cache line (gauges are not striped: set() needs a single location).
//   Histogram::observe  a binary search over the bucket bounds, then adds to the bucket count and
//                       to the sum in this thread's stripe.
// Stripes: a thread leases one of kStripes - 1 owned stripes on its first update and returns it
// when it exits. Only the owner writes an owned stripe, so its adds are a relaxed load and a
// relaxed store. Threads beyond that share the last stripe and add with atomic read-modify-writes
// (correct, only slower). Reads (value(), snapshot()) sum the stripes with relaxed loads: each
// read is a value the metric really passed through per stripe, not a global atomic cut across
// stripes.
// Memory: a counter child takes kStripes cache lines (2 KiB); a histogram child kStripes times
// ceil((bounds + 2) / 8) cache lines (6 KiB for the 22 default latency buckets).
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "gpubridge/core/result.hpp"

namespace gpubridge::telemetry {

enum class MetricType : std::uint8_t { counter, gauge, histogram };
// "counter", "gauge", "histogram" (the words of the Prometheus TYPE line).
std::string_view to_string(MetricType type) noexcept;

// Number of stripes (cache-line padded shards) of a counter or histogram: kStripes - 1 owned ones
// and the shared last one.
inline constexpr std::size_t kStripes = 32;
inline constexpr std::size_t kCacheLine = 64;

namespace internal {
struct StripeLease {
  std::uint32_t index;
  bool owned;  // only this thread writes stripe `index`
};
inline constexpr std::uint32_t kUnassignedStripe = ~std::uint32_t{0};
inline constexpr std::uint32_t kSharedStripe = static_cast<std::uint32_t>(kStripes - 1);
// This thread's lease; reset to the shared stripe when the thread exits.
inline thread_local StripeLease thread_stripe{kUnassignedStripe, false};
// Leases an owned stripe to the calling thread if one is free, else the shared one.
StripeLease assign_stripe() noexcept;
inline StripeLease this_thread_stripe() noexcept {
  if (thread_stripe.index == kUnassignedStripe) thread_stripe = assign_stripe();
  return thread_stripe;
}
// Adds `n` to a stripe's slot: a plain load and store on an owned stripe, an atomic add otherwise.
inline void add_to_slot(std::atomic<std::uint64_t>& slot, std::uint64_t n, bool owned) noexcept {
  if (owned) {
    slot.store(slot.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  } else {
    slot.fetch_add(n, std::memory_order_relaxed);
  }
}
}  // namespace internal

template <typename Metric>
class Family;

// A non-owning list of label values (or names), built from a braced list of strings, a
// vector<string> or a span of strings. It views the caller's strings: valid for the call it is
// passed to, never stored.
class LabelValues {
 public:
  LabelValues() = default;
  LabelValues(std::initializer_list<std::string_view> values)  // NOLINT: implicit by design
      : views_(values.begin(), values.size()) {}
  LabelValues(std::span<const std::string_view> values) : views_(values) {}  // NOLINT
  LabelValues(std::span<const std::string> values) : strings_(values), use_strings_(true) {}  // NOLINT
  LabelValues(const std::vector<std::string>& values)  // NOLINT
      : strings_(values), use_strings_(true) {}

  std::size_t size() const noexcept { return use_strings_ ? strings_.size() : views_.size(); }
  std::string_view operator[](std::size_t i) const noexcept {
    return use_strings_ ? std::string_view(strings_[i]) : views_[i];
  }

 private:
  std::span<const std::string_view> views_;
  std::span<const std::string> strings_;
  bool use_strings_ = false;
};

// A monotonically increasing count. Striped: see the file comment.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  void inc(std::uint64_t n = 1) noexcept {
    const internal::StripeLease lease = internal::this_thread_stripe();
    internal::add_to_slot(shards_[lease.index].value, n, lease.owned);
  }
  // Sum of the stripes (wraps modulo 2^64, like the increments).
  std::uint64_t value() const noexcept;

 private:
  struct alignas(kCacheLine) Shard {
    std::atomic<std::uint64_t> value{0};
  };
  std::array<Shard, kStripes> shards_{};
};

// A value that goes up and down. One atomic double (bit pattern in a 64-bit atomic).
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void set(double value) noexcept { bits_.store(std::bit_cast<std::uint64_t>(value), std::memory_order_relaxed); }
  void add(double delta) noexcept;
  double value() const noexcept { return std::bit_cast<double>(bits_.load(std::memory_order_relaxed)); }

 private:
  alignas(kCacheLine) std::atomic<std::uint64_t> bits_{std::bit_cast<std::uint64_t>(0.0)};
};

// What a histogram held when it was read.
struct HistogramSnapshot {
  std::vector<double> upper_bounds;              // finite bucket bounds, strictly increasing
  std::vector<std::uint64_t> cumulative_counts;  // upper_bounds.size() + 1 entries; the last is le="+Inf"
  std::uint64_t count = 0;                       // == cumulative_counts.back()
  double sum = 0;

  // Estimated q-quantile, the way Prometheus' histogram_quantile() estimates it: find the bucket
  // holding rank q * count and interpolate linearly between its lower and upper bound (the lower
  // bound of the first bucket is 0, or its upper bound when that is <= 0). Leading empty buckets
  // are skipped, so quantile(0) is the lower edge of the first non-empty bucket.
  // +Inf bucket: a rank that falls beyond the last finite bound returns that last finite bound
  // (the estimate cannot exceed the largest bound). NaN when count == 0 or q is NaN; -Inf for
  // q < 0 and +Inf for q > 1 (as Prometheus does).
  double quantile(double q) const;
};

// Counts observations into fixed buckets (le = "less or equal" upper bounds) plus their count
// and sum. Striped: see the file comment. NaN observations are counted in the +Inf bucket and make
// the sum NaN (as in the Prometheus client libraries).
class Histogram {
 public:
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;
  ~Histogram();

  void observe(double value) noexcept;
  // Counts are a sum over stripes read with relaxed loads; the sum is read after the counts, so
  // under concurrent observe() it may include observations the counts do not (or vice versa).
  HistogramSnapshot snapshot() const;
  std::span<const double> upper_bounds() const noexcept { return *bounds_; }

 private:
  template <typename>
  friend class Family;
  explicit Histogram(std::shared_ptr<const std::vector<double>> bounds);

  struct alignas(kCacheLine) Line {
    std::array<std::atomic<std::uint64_t>, kCacheLine / sizeof(std::uint64_t)> slots;
  };
  std::atomic<std::uint64_t>& slot(std::size_t stripe, std::size_t index) noexcept;
  const std::atomic<std::uint64_t>& slot(std::size_t stripe, std::size_t index) const noexcept;

  std::shared_ptr<const std::vector<double>> bounds_;
  std::size_t lines_per_stripe_ = 0;  // each stripe: bucket counts (bounds + 1), then the sum's bits
  std::unique_ptr<Line[]> lines_;
};

// Bucket helpers (Result: invalid_argument names the bad parameter).
// start, start*factor, ..., count bounds; needs start > 0, factor > 1, count >= 1, all finite.
Result<std::vector<double>> exponential_buckets(double start, double factor, std::size_t count);
// start, start+width, ..., count bounds; needs width > 0, count >= 1, all finite.
Result<std::vector<double>> linear_buckets(double start, double width, std::size_t count);
// Default latency buckets in seconds: 1, 2.5 and 5 per decade from 1 microsecond to 5 seconds,
// then 10 seconds (22 bounds: 1e-6, 2.5e-6, 5e-6, 1e-5, ..., 1, 2.5, 5, 10).
std::vector<double> default_latency_buckets_seconds();

// One metric family: a name, help text, label names, and one child per set of label values.
// Families are created by the Registry and owned by it.
template <typename Metric>
class Family {
 public:
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;
  ~Family();

  const std::string& name() const noexcept { return name_; }
  const std::string& help() const noexcept { return help_; }
  const std::vector<std::string>& label_names() const noexcept { return label_names_; }

  // The child for these label values (in label-name order), created on first use.
  // invalid_argument when the number of values differs from the number of label names or a
  // value is not valid UTF-8. Takes a shared lock (an exclusive one to create); the returned
  // pointer is stable for the registry's lifetime: cache it on hot paths.
  Result<Metric*> with(LabelValues label_values);

 private:
  friend class Registry;
  struct ValuesLess {
    using is_transparent = void;
    bool operator()(const std::vector<std::string>& a, const std::vector<std::string>& b) const;
    bool operator()(const std::vector<std::string>& a, const std::vector<std::string_view>& b) const;
    bool operator()(const std::vector<std::string_view>& a, const std::vector<std::string>& b) const;
  };
  struct Child {
    std::vector<std::string> label_values;
    const Metric* metric;
  };

  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::shared_ptr<const std::vector<double>> bounds);
  // Children sorted by label values.
  std::vector<Child> children() const;

  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  std::shared_ptr<const std::vector<double>> bounds_;  // histograms only
  mutable std::shared_mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>, ValuesLess> children_;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

// Scrape-time view of one family.
struct ChildSnapshot {
  std::vector<std::string> label_values;
  // uint64_t: a registry counter (exact); double: a gauge, or a counter emitted by a collector;
  // HistogramSnapshot: a histogram.
  std::variant<std::uint64_t, double, HistogramSnapshot> value;
};
struct FamilySnapshot {
  std::string name;
  MetricType type = MetricType::gauge;
  std::string help;
  std::vector<std::string> label_names;
  std::vector<ChildSnapshot> children;  // sorted by label values; may be empty
};

// Handed to collectors at scrape time to emit samples of values that live elsewhere.
// Rules (checked per sample; a sample that breaks one is skipped and counted in
// Registry::collector_errors(), never written as a comment or a partial line):
//   - names and label names are validated like the registry's (counters end in _total), help is
//     non-empty UTF-8, label values are UTF-8 and as many as the label names;
//   - counter values are >= 0 (not NaN);
//   - a name may not clash with a registered family (or another collector's family) of another
//     type or other label names, nor with the _bucket/_sum/_count series of a histogram. With the
//     same type and label names, the samples join that family under its single HELP/TYPE (the
//     first help seen wins);
//   - a label set may appear once per family (a repeat, or one a registered child already has, is
//     skipped).
// Not thread-safe: it is used only by the scrape that created it, on the scraping thread.
class MetricSink {
 public:
  void counter(std::string_view name, std::string_view help, LabelValues label_names,
               LabelValues label_values, double value);
  void gauge(std::string_view name, std::string_view help, LabelValues label_names,
             LabelValues label_values, double value);

 private:
  friend class Registry;
  struct Impl;
  explicit MetricSink(Impl& impl) : impl_(impl) {}
  Impl& impl_;
};

class Registry {
 public:
  using CollectorId = std::uint64_t;

  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Create a family, or return the existing one when name, type, label names (and bounds) match
  // (the first help text is kept). already_exists when the name (or a histogram's _bucket/_sum/
  // _count series name) is taken by a family of another type, label names or bounds.
  // invalid_argument (message names the problem) for: a metric name not matching
  // [a-zA-Z_:][a-zA-Z0-9_:]*, a label name not matching [a-zA-Z_][a-zA-Z0-9_]* or starting with
  // "__", duplicate label names, a counter name not ending in "_total", empty or non-UTF-8 help,
  // histogram bounds empty, not finite or not strictly increasing, "le" as a histogram label name.
  Result<CounterFamily*> counter(std::string name, std::string help,
                                 std::vector<std::string> label_names = {});
  Result<GaugeFamily*> gauge(std::string name, std::string help,
                             std::vector<std::string> label_names = {});
  Result<HistogramFamily*> histogram(std::string name, std::string help,
                                     std::vector<double> bucket_upper_bounds,
                                     std::vector<std::string> label_names = {});

  // Collectors run, one at a time, on the scraping thread at every prometheus_text() and
  // snapshot(). A collector that throws is counted in collector_errors() (samples it emitted
  // before throwing are kept). Collectors must not call add_collector, remove_collector,
  // prometheus_text or snapshot of the same registry (deadlock).
  CollectorId add_collector(std::function<void(MetricSink&)> collector);
  // After it returns the collector is not running and will not run again. Unknown ids are ignored.
  void remove_collector(CollectorId id);
  // Samples skipped by MetricSink's rules plus collector exceptions, since construction.
  std::uint64_t collector_errors() const noexcept;

  // Every family (registered ones, even without children, and those emitted by collectors)
  // sorted by name, children sorted by label values.
  std::vector<FamilySnapshot> snapshot() const;
  // Prometheus text exposition format 0.0.4 of snapshot(): "# HELP" and "# TYPE" once per family
  // (a family without children is listed with those two lines only; promtool accepts that).
  std::string prometheus_text() const;

 private:
  struct Entry;
  struct CollectorEntry;
  Status check_name_free(const std::string& name, MetricType type, const std::vector<std::string>& label_names,
                         const std::vector<double>* bounds) const;
  template <typename Metric>
  Result<Family<Metric>*> add_family(MetricType type, std::string name, std::string help,
                                     std::vector<std::string> label_names, std::vector<double> bounds);

  mutable std::mutex families_mutex_;
  std::map<std::string, std::unique_ptr<Entry>> families_;
  mutable std::mutex collectors_mutex_;  // held while collectors run
  std::map<CollectorId, std::function<void(MetricSink&)>> collectors_;
  CollectorId next_collector_id_ = 1;
  mutable std::atomic<std::uint64_t> collector_errors_{0};
};

// Formats `families` in the Prometheus text exposition format 0.0.4 (see Registry::prometheus_text).
std::string to_prometheus_text(std::span<const FamilySnapshot> families);

}  // namespace gpubridge::telemetry
