// The metrics registry: metric types, families, validation, collectors and snapshots.
#include "gpubridge/telemetry/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>
#include <utility>

#include "metrics_internal.hpp"

namespace gpubridge::telemetry {

std::string_view to_string(MetricType type) noexcept {
  switch (type) {
    case MetricType::counter: return "counter";
    case MetricType::gauge: return "gauge";
    case MetricType::histogram: return "histogram";
  }
  return "untyped";
}

namespace internal {

namespace {
// Owned stripes not leased to a live thread. Leaked on purpose: threads may exit (and return
// their stripe) during static destruction.
struct FreeStripes {
  std::mutex mutex;
  std::vector<std::uint32_t> free;
  FreeStripes() {
    for (std::uint32_t i = kSharedStripe; i-- > 0;) free.push_back(i);
  }
};
FreeStripes& free_stripes() {
  static FreeStripes* stripes = new FreeStripes();
  return *stripes;
}

// Returns the thread's owned stripe when the thread exits; later updates from this thread (from
// other thread-local destructors) go to the shared stripe.
struct StripeReturn {
  std::uint32_t index = kUnassignedStripe;
  ~StripeReturn() {
    if (index == kUnassignedStripe) return;
    thread_stripe = StripeLease{kSharedStripe, false};
    FreeStripes& stripes = free_stripes();
    const std::lock_guard lock(stripes.mutex);
    stripes.free.push_back(index);
  }
};
}  // namespace

StripeLease assign_stripe() noexcept {
  FreeStripes& stripes = free_stripes();
  std::uint32_t index = kUnassignedStripe;
  {
    const std::lock_guard lock(stripes.mutex);
    if (!stripes.free.empty()) {
      index = stripes.free.back();
      stripes.free.pop_back();
    }
  }
  if (index == kUnassignedStripe) return StripeLease{kSharedStripe, false};
  thread_local StripeReturn on_exit;
  on_exit.index = index;
  return StripeLease{index, true};
}

bool is_valid_utf8(std::string_view text) noexcept {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    std::size_t extra = 0;
    std::uint32_t code = 0;
    std::uint32_t min_code = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1, code = c & 0x1F, min_code = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2, code = c & 0x0F, min_code = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3, code = c & 0x07, min_code = 0x10000;
    } else {
      return false;
    }
    if (i + extra >= text.size()) return false;  // truncated sequence
    for (std::size_t k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3F);
    }
    if (code < min_code || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

namespace {

bool is_name_start(char c, bool allow_colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
}
bool is_name_char(char c, bool allow_colon) { return is_name_start(c, allow_colon) || (c >= '0' && c <= '9'); }

bool matches_name(std::string_view name, bool allow_colon) {
  if (name.empty() || !is_name_start(name[0], allow_colon)) return false;
  return std::all_of(name.begin() + 1, name.end(), [&](char c) { return is_name_char(c, allow_colon); });
}

Error invalid(std::string message) { return Error(ErrorCode::invalid_argument, std::move(message)); }

}  // namespace

Status validate_metric_name(std::string_view name, MetricType type) {
  if (!matches_name(name, /*allow_colon=*/true)) {
    return invalid("metric name '" + std::string(name) + "' is invalid: it must match [a-zA-Z_:][a-zA-Z0-9_:]*");
  }
  if (type == MetricType::counter && !name.ends_with("_total")) {
    return invalid("counter name '" + std::string(name) + "' must end in _total");
  }
  return {};
}

Status validate_label_names(std::string_view metric_name, const std::vector<std::string>& label_names) {
  for (std::size_t i = 0; i < label_names.size(); ++i) {
    const std::string& label = label_names[i];
    if (!matches_name(label, /*allow_colon=*/false)) {
      return invalid("label name '" + label + "' of metric '" + std::string(metric_name) +
                     "' is invalid: it must match [a-zA-Z_][a-zA-Z0-9_]*");
    }
    if (label.starts_with("__")) {
      return invalid("label name '" + label + "' of metric '" + std::string(metric_name) +
                     "' starts with '__', which is reserved for Prometheus");
    }
    if (label == "le") {
      return invalid("label name 'le' of metric '" + std::string(metric_name) +
                     "' is reserved for histogram bucket bounds");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (label_names[j] == label) {
        return invalid("label name '" + label + "' appears twice in metric '" + std::string(metric_name) + "'");
      }
    }
  }
  return {};
}

Status validate_help(std::string_view metric_name, std::string_view help) {
  if (help.empty()) return invalid("help text of metric '" + std::string(metric_name) + "' is empty");
  if (!is_valid_utf8(help)) return invalid("help text of metric '" + std::string(metric_name) + "' is not valid UTF-8");
  return {};
}

Status validate_bounds(std::string_view metric_name, const std::vector<double>& bounds) {
  if (bounds.empty()) {
    return invalid("histogram '" + std::string(metric_name) + "' needs at least one finite bucket bound");
  }
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) {
      return invalid("bucket bound " + std::to_string(i) + " of histogram '" + std::string(metric_name) +
                     "' is not finite (the +Inf bucket is implicit)");
    }
    if (i > 0 && !(bounds[i] > bounds[i - 1])) {
      return invalid("bucket bounds of histogram '" + std::string(metric_name) +
                     "' are not strictly increasing at index " + std::to_string(i));
    }
  }
  return {};
}

}  // namespace internal

// ---------------------------------------------------------------------------------------------
// Counter, Gauge, Histogram

std::uint64_t Counter::value() const noexcept {
  std::uint64_t total = 0;
  for (const Shard& shard : shards_) total += shard.value.load(std::memory_order_relaxed);
  return total;
}

namespace {
void add_to_double_bits(std::atomic<std::uint64_t>& bits, double delta, bool owned) noexcept {
  if (owned) {
    bits.store(std::bit_cast<std::uint64_t>(std::bit_cast<double>(bits.load(std::memory_order_relaxed)) + delta),
               std::memory_order_relaxed);
    return;
  }
  std::uint64_t expected = bits.load(std::memory_order_relaxed);
  while (!bits.compare_exchange_weak(expected, std::bit_cast<std::uint64_t>(std::bit_cast<double>(expected) + delta),
                                     std::memory_order_relaxed, std::memory_order_relaxed)) {
  }
}
}  // namespace

void Gauge::add(double delta) noexcept { add_to_double_bits(bits_, delta, false); }

namespace {
constexpr std::size_t kSlotsPerLine = kCacheLine / sizeof(std::uint64_t);
}

Histogram::Histogram(std::shared_ptr<const std::vector<double>> bounds) : bounds_(std::move(bounds)) {
  // Per stripe: bounds + 1 bucket counts, then one slot for the sum's bits (0.0 is all zero bits).
  const std::size_t slots = bounds_->size() + 2;
  lines_per_stripe_ = (slots + kSlotsPerLine - 1) / kSlotsPerLine;
  lines_ = std::unique_ptr<Line[]>(new Line[lines_per_stripe_ * kStripes]());
}

Histogram::~Histogram() = default;

std::atomic<std::uint64_t>& Histogram::slot(std::size_t stripe, std::size_t index) noexcept {
  return lines_[stripe * lines_per_stripe_ + index / kSlotsPerLine].slots[index % kSlotsPerLine];
}
const std::atomic<std::uint64_t>& Histogram::slot(std::size_t stripe, std::size_t index) const noexcept {
  return lines_[stripe * lines_per_stripe_ + index / kSlotsPerLine].slots[index % kSlotsPerLine];
}

namespace {
// std::lower_bound's index without data-dependent branches (the halving compiles to conditional
// moves): latencies land in unpredictable buckets, and mispredicted branches cost more than the
// search itself.
std::size_t first_bound_at_least(const std::vector<double>& bounds, double value) noexcept {
  std::size_t n = bounds.size();
  if (n == 0) return 0;
  const double* base = bounds.data();
  while (n > 1) {
    const std::size_t half = n / 2;
    base = base[half - 1] < value ? base + half : base;
    n -= half;
  }
  return static_cast<std::size_t>(base - bounds.data()) + (*base < value ? 1 : 0);
}
}  // namespace

void Histogram::observe(double value) noexcept {
  const std::vector<double>& bounds = *bounds_;
  // First bucket whose upper bound is >= value; NaN goes to +Inf.
  const std::size_t bucket = std::isnan(value) ? bounds.size() : first_bound_at_least(bounds, value);
  const internal::StripeLease lease = internal::this_thread_stripe();
  internal::add_to_slot(slot(lease.index, bucket), 1, lease.owned);
  add_to_double_bits(slot(lease.index, bounds.size() + 1), value, lease.owned);
}

HistogramSnapshot Histogram::snapshot() const {
  const std::size_t buckets = bounds_->size() + 1;
  HistogramSnapshot snap;
  snap.upper_bounds = *bounds_;
  snap.cumulative_counts.assign(buckets, 0);
  for (std::size_t s = 0; s < kStripes; ++s) {
    for (std::size_t b = 0; b < buckets; ++b) snap.cumulative_counts[b] += slot(s, b).load(std::memory_order_relaxed);
  }
  for (std::size_t s = 0; s < kStripes; ++s) {
    snap.sum += std::bit_cast<double>(slot(s, buckets).load(std::memory_order_relaxed));
  }
  for (std::size_t b = 1; b < buckets; ++b) snap.cumulative_counts[b] += snap.cumulative_counts[b - 1];
  snap.count = snap.cumulative_counts.back();
  return snap;
}

double HistogramSnapshot::quantile(double q) const {
  if (std::isnan(q)) return std::nan("");
  if (q < 0) return -INFINITY;
  if (q > 1) return INFINITY;
  if (count == 0 || upper_bounds.empty() || cumulative_counts.size() != upper_bounds.size() + 1) {
    return std::nan("");
  }
  const double rank = q * static_cast<double>(count);
  // First finite bucket holding the rank (skipping leading empty ones); none: the +Inf bucket.
  std::size_t b = 0;
  while (b < upper_bounds.size() &&
         (cumulative_counts[b] == 0 || static_cast<double>(cumulative_counts[b]) < rank)) {
    ++b;
  }
  if (b == upper_bounds.size()) return upper_bounds.back();
  if (b == 0 && upper_bounds[0] <= 0) return upper_bounds[0];
  const double lower = b == 0 ? 0.0 : upper_bounds[b - 1];
  const double upper = upper_bounds[b];
  const double below = b == 0 ? 0.0 : static_cast<double>(cumulative_counts[b - 1]);
  const double in_bucket = static_cast<double>(cumulative_counts[b]) - below;
  return lower + (upper - lower) * ((rank - below) / in_bucket);
}

Result<std::vector<double>> exponential_buckets(double start, double factor, std::size_t count) {
  if (!(start > 0) || !std::isfinite(start)) {
    return Error(ErrorCode::invalid_argument, "exponential_buckets: start must be finite and > 0");
  }
  if (!(factor > 1) || !std::isfinite(factor)) {
    return Error(ErrorCode::invalid_argument, "exponential_buckets: factor must be finite and > 1");
  }
  if (count == 0) return Error(ErrorCode::invalid_argument, "exponential_buckets: count must be >= 1");
  std::vector<double> bounds;
  bounds.reserve(count);
  double bound = start;
  for (std::size_t i = 0; i < count; ++i, bound *= factor) {
    if (!std::isfinite(bound)) {
      return Error(ErrorCode::invalid_argument, "exponential_buckets: bound " + std::to_string(i) + " overflows");
    }
    bounds.push_back(bound);
  }
  return bounds;
}

Result<std::vector<double>> linear_buckets(double start, double width, std::size_t count) {
  if (!std::isfinite(start)) return Error(ErrorCode::invalid_argument, "linear_buckets: start must be finite");
  if (!(width > 0) || !std::isfinite(width)) {
    return Error(ErrorCode::invalid_argument, "linear_buckets: width must be finite and > 0");
  }
  if (count == 0) return Error(ErrorCode::invalid_argument, "linear_buckets: count must be >= 1");
  std::vector<double> bounds;
  bounds.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    const double bound = start + width * static_cast<double>(i);
    if (!std::isfinite(bound) || (i > 0 && !(bound > bounds.back()))) {
      return Error(ErrorCode::invalid_argument,
                   "linear_buckets: bound " + std::to_string(i) + " overflows or does not increase");
    }
    bounds.push_back(bound);
  }
  return bounds;
}

std::vector<double> default_latency_buckets_seconds() {
  return {1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3,
          5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};
}

// ---------------------------------------------------------------------------------------------
// Family

namespace {
template <typename A, typename B>
bool values_less(const std::vector<A>& a, const std::vector<B>& b) {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                      [](std::string_view x, std::string_view y) { return x < y; });
}
}  // namespace

template <typename Metric>
bool Family<Metric>::ValuesLess::operator()(const std::vector<std::string>& a, const std::vector<std::string>& b) const {
  return values_less(a, b);
}
template <typename Metric>
bool Family<Metric>::ValuesLess::operator()(const std::vector<std::string>& a,
                                            const std::vector<std::string_view>& b) const {
  return values_less(a, b);
}
template <typename Metric>
bool Family<Metric>::ValuesLess::operator()(const std::vector<std::string_view>& a,
                                            const std::vector<std::string>& b) const {
  return values_less(a, b);
}

template <typename Metric>
Family<Metric>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                       std::shared_ptr<const std::vector<double>> bounds)
    : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)), bounds_(std::move(bounds)) {}

template <typename Metric>
Family<Metric>::~Family() = default;

template <typename Metric>
Result<Metric*> Family<Metric>::with(LabelValues label_values) {
  if (label_values.size() != label_names_.size()) {
    return Error(ErrorCode::invalid_argument, "metric '" + name_ + "' has " + std::to_string(label_names_.size()) +
                                                  " label names but " + std::to_string(label_values.size()) +
                                                  " label values were given");
  }
  std::vector<std::string_view> key;
  key.reserve(label_values.size());
  for (std::size_t i = 0; i < label_values.size(); ++i) {
    if (!internal::is_valid_utf8(label_values[i])) {
      return Error(ErrorCode::invalid_argument,
                   "value of label '" + label_names_[i] + "' of metric '" + name_ + "' is not valid UTF-8");
    }
    key.push_back(label_values[i]);
  }
  {
    std::shared_lock lock(mutex_);
    if (auto it = children_.find(key); it != children_.end()) return it->second.get();
  }
  std::unique_lock lock(mutex_);
  if (auto it = children_.find(key); it != children_.end()) return it->second.get();
  std::unique_ptr<Metric> metric;
  if constexpr (std::is_same_v<Metric, Histogram>) {
    metric.reset(new Histogram(bounds_));
  } else {
    metric = std::make_unique<Metric>();
  }
  Metric* raw = metric.get();
  children_.emplace(std::vector<std::string>(key.begin(), key.end()), std::move(metric));
  return raw;
}

template <typename Metric>
std::vector<typename Family<Metric>::Child> Family<Metric>::children() const {
  std::shared_lock lock(mutex_);
  std::vector<Child> out;
  out.reserve(children_.size());
  for (const auto& [values, metric] : children_) out.push_back(Child{values, metric.get()});
  return out;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---------------------------------------------------------------------------------------------
// Registry

struct Registry::Entry {
  MetricType type;
  std::vector<std::string> label_names;
  std::vector<double> bounds;
  std::unique_ptr<CounterFamily> counter;
  std::unique_ptr<GaugeFamily> gauge;
  std::unique_ptr<HistogramFamily> histogram;
};

Registry::Registry() = default;
Registry::~Registry() = default;

namespace {
constexpr std::string_view kHistogramSuffixes[] = {"_bucket", "_sum", "_count"};

// The histogram family whose derived series `name` would be, if `name` ends in a histogram suffix.
std::string_view histogram_base_of(std::string_view name) {
  for (std::string_view suffix : kHistogramSuffixes) {
    if (name.size() > suffix.size() && name.ends_with(suffix)) return name.substr(0, name.size() - suffix.size());
  }
  return {};
}
}  // namespace

Status Registry::check_name_free(const std::string& name, MetricType type, const std::vector<std::string>& label_names,
                                 const std::vector<double>* bounds) const {
  if (auto it = families_.find(name); it != families_.end()) {
    const Entry& entry = *it->second;
    if (entry.type != type) {
      return Error(ErrorCode::already_exists, "metric '" + name + "' is already registered as a " +
                                                  std::string(to_string(entry.type)) + ", not a " +
                                                  std::string(to_string(type)));
    }
    if (entry.label_names != label_names) {
      return Error(ErrorCode::already_exists, "metric '" + name + "' is already registered with other label names");
    }
    if (bounds != nullptr && entry.bounds != *bounds) {
      return Error(ErrorCode::already_exists, "histogram '" + name + "' is already registered with other bucket bounds");
    }
    return {};
  }
  if (std::string_view base = histogram_base_of(name); !base.empty()) {
    if (auto it = families_.find(std::string(base)); it != families_.end() && it->second->type == MetricType::histogram) {
      return Error(ErrorCode::already_exists,
                   "metric '" + name + "' would clash with the series of histogram '" + std::string(base) + "'");
    }
  }
  if (type == MetricType::histogram) {
    for (std::string_view suffix : kHistogramSuffixes) {
      const std::string series = name + std::string(suffix);
      if (families_.contains(series)) {
        return Error(ErrorCode::already_exists,
                     "histogram '" + name + "' would clash with the registered metric '" + series + "'");
      }
    }
  }
  return {};
}

template <typename Metric>
Result<Family<Metric>*> Registry::add_family(MetricType type, std::string name, std::string help,
                                             std::vector<std::string> label_names, std::vector<double> bounds) {
  if (Status s = internal::validate_metric_name(name, type); !s.ok()) return s.error();
  if (Status s = internal::validate_label_names(name, label_names); !s.ok()) return s.error();
  if (Status s = internal::validate_help(name, help); !s.ok()) return s.error();
  if (type == MetricType::histogram) {
    if (Status s = internal::validate_bounds(name, bounds); !s.ok()) return s.error();
  }
  std::lock_guard lock(families_mutex_);
  if (Status s = check_name_free(name, type, label_names, type == MetricType::histogram ? &bounds : nullptr); !s.ok()) {
    return s.error();
  }
  auto get = [](Entry& entry) -> Family<Metric>* {
    if constexpr (std::is_same_v<Metric, Counter>) return entry.counter.get();
    if constexpr (std::is_same_v<Metric, Gauge>) return entry.gauge.get();
    if constexpr (std::is_same_v<Metric, Histogram>) return entry.histogram.get();
  };
  if (auto it = families_.find(name); it != families_.end()) return get(*it->second);

  auto entry = std::make_unique<Entry>();
  entry->type = type;
  entry->label_names = label_names;
  entry->bounds = bounds;
  std::shared_ptr<const std::vector<double>> shared_bounds;
  if (type == MetricType::histogram) shared_bounds = std::make_shared<const std::vector<double>>(std::move(bounds));
  auto family = std::unique_ptr<Family<Metric>>(
      new Family<Metric>(name, std::move(help), std::move(label_names), std::move(shared_bounds)));
  if constexpr (std::is_same_v<Metric, Counter>) entry->counter = std::move(family);
  if constexpr (std::is_same_v<Metric, Gauge>) entry->gauge = std::move(family);
  if constexpr (std::is_same_v<Metric, Histogram>) entry->histogram = std::move(family);
  Family<Metric>* raw = get(*entry);
  families_.emplace(std::move(name), std::move(entry));
  return raw;
}

Result<CounterFamily*> Registry::counter(std::string name, std::string help, std::vector<std::string> label_names) {
  return add_family<Counter>(MetricType::counter, std::move(name), std::move(help), std::move(label_names), {});
}

Result<GaugeFamily*> Registry::gauge(std::string name, std::string help, std::vector<std::string> label_names) {
  return add_family<Gauge>(MetricType::gauge, std::move(name), std::move(help), std::move(label_names), {});
}

Result<HistogramFamily*> Registry::histogram(std::string name, std::string help, std::vector<double> bucket_upper_bounds,
                                             std::vector<std::string> label_names) {
  return add_family<Histogram>(MetricType::histogram, std::move(name), std::move(help), std::move(label_names),
                               std::move(bucket_upper_bounds));
}

Registry::CollectorId Registry::add_collector(std::function<void(MetricSink&)> collector) {
  std::lock_guard lock(collectors_mutex_);
  const CollectorId id = next_collector_id_++;
  collectors_.emplace(id, std::move(collector));
  return id;
}

void Registry::remove_collector(CollectorId id) {
  std::lock_guard lock(collectors_mutex_);
  collectors_.erase(id);
}

std::uint64_t Registry::collector_errors() const noexcept { return collector_errors_.load(std::memory_order_relaxed); }

// ---------------------------------------------------------------------------------------------
// Scrape: registered families, then collector samples merged in.

struct MetricSink::Impl {
  std::map<std::string, FamilySnapshot>& families;
  std::atomic<std::uint64_t>& errors;
  // Label sets already present per family name (filled lazily from the registered children).
  std::map<std::string, std::set<std::vector<std::string>>, std::less<>> seen;

  void emit(MetricType type, std::string_view name, std::string_view help, LabelValues label_names,
            LabelValues label_values, double value);
};

void MetricSink::Impl::emit(MetricType type, std::string_view name, std::string_view help, LabelValues label_names,
                            LabelValues label_values, double value) {
  auto skip = [&] { errors.fetch_add(1, std::memory_order_relaxed); };
  std::vector<std::string> names;
  names.reserve(label_names.size());
  for (std::size_t i = 0; i < label_names.size(); ++i) names.emplace_back(label_names[i]);
  if (!internal::validate_metric_name(name, type).ok() || !internal::validate_label_names(name, names).ok() ||
      !internal::validate_help(name, help).ok() || label_values.size() != names.size()) {
    return skip();
  }
  if (type == MetricType::counter && !(value >= 0)) return skip();
  std::vector<std::string> values;
  values.reserve(label_values.size());
  for (std::size_t i = 0; i < label_values.size(); ++i) {
    if (!internal::is_valid_utf8(label_values[i])) return skip();
    values.emplace_back(label_values[i]);
  }
  if (std::string_view base = histogram_base_of(name); !base.empty()) {
    if (auto it = families.find(std::string(base)); it != families.end() && it->second.type == MetricType::histogram) {
      return skip();
    }
  }
  auto it = families.find(std::string(name));
  if (it == families.end()) {
    FamilySnapshot family{std::string(name), type, std::string(help), names, {}};
    it = families.emplace(std::string(name), std::move(family)).first;
  } else if (it->second.type != type || it->second.label_names != names) {
    return skip();
  }
  auto seen_it = seen.find(name);
  if (seen_it == seen.end()) {
    seen_it = seen.emplace(std::string(name), std::set<std::vector<std::string>>{}).first;
    for (const ChildSnapshot& child : it->second.children) seen_it->second.insert(child.label_values);
  }
  if (!seen_it->second.insert(values).second) return skip();
  it->second.children.push_back(ChildSnapshot{std::move(values), value});
}

void MetricSink::counter(std::string_view name, std::string_view help, LabelValues label_names,
                         LabelValues label_values, double value) {
  impl_.emit(MetricType::counter, name, help, label_names, label_values, value);
}

void MetricSink::gauge(std::string_view name, std::string_view help, LabelValues label_names,
                       LabelValues label_values, double value) {
  impl_.emit(MetricType::gauge, name, help, label_names, label_values, value);
}

std::vector<FamilySnapshot> Registry::snapshot() const {
  std::vector<std::pair<const std::string*, const Entry*>> entries;
  {
    // Entries are never removed, so their addresses outlive the lock.
    std::lock_guard lock(families_mutex_);
    entries.reserve(families_.size());
    for (const auto& [name, entry] : families_) entries.emplace_back(&name, entry.get());
  }
  std::map<std::string, FamilySnapshot> families;
  for (const auto& [name, entry] : entries) {
    FamilySnapshot family;
    family.name = *name;
    family.type = entry->type;
    family.label_names = entry->label_names;
    switch (entry->type) {
      case MetricType::counter:
        family.help = entry->counter->help();
        for (const auto& child : entry->counter->children()) {
          family.children.push_back(ChildSnapshot{child.label_values, child.metric->value()});
        }
        break;
      case MetricType::gauge:
        family.help = entry->gauge->help();
        for (const auto& child : entry->gauge->children()) {
          family.children.push_back(ChildSnapshot{child.label_values, child.metric->value()});
        }
        break;
      case MetricType::histogram:
        family.help = entry->histogram->help();
        for (const auto& child : entry->histogram->children()) {
          family.children.push_back(ChildSnapshot{child.label_values, child.metric->snapshot()});
        }
        break;
    }
    families.emplace(*name, std::move(family));
  }
  {
    MetricSink::Impl impl{families, collector_errors_, {}};
    MetricSink sink(impl);
    std::lock_guard lock(collectors_mutex_);
    for (const auto& [id, collector] : collectors_) {
      try {
        collector(sink);
      } catch (...) {
        // A failing collector loses only its own samples from here on; the scrape goes on.
        collector_errors_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    for (auto& [name, seen] : impl.seen) {
      auto& children = families.at(name).children;
      std::sort(children.begin(), children.end(),
                [](const ChildSnapshot& a, const ChildSnapshot& b) { return a.label_values < b.label_values; });
    }
  }
  std::vector<FamilySnapshot> out;
  out.reserve(families.size());
  for (auto& [name, family] : families) out.push_back(std::move(family));
  return out;
}

std::string Registry::prometheus_text() const {
  const std::vector<FamilySnapshot> families = snapshot();
  return to_prometheus_text(families);
}

}  // namespace gpubridge::telemetry
