// The metrics registry: validation, families, metric values under threads, histogram quantiles,
// the Prometheus text format (checked by the real promtool), collectors and snapshots.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gpubridge/telemetry/metrics.hpp"

namespace gpubridge::telemetry {
namespace {

template <typename T>
void expect_invalid(const Result<T>& result, const std::string& fragment) {
  ASSERT_FALSE(result.ok()) << "expected an error mentioning: " << fragment;
  EXPECT_EQ(result.error().code(), ErrorCode::invalid_argument) << result.error().to_string();
  EXPECT_NE(result.error().message().find(fragment), std::string::npos) << result.error().to_string();
}

template <typename T>
void expect_exists(const Result<T>& result, const std::string& fragment) {
  ASSERT_FALSE(result.ok()) << "expected already_exists mentioning: " << fragment;
  EXPECT_EQ(result.error().code(), ErrorCode::already_exists) << result.error().to_string();
  EXPECT_NE(result.error().message().find(fragment), std::string::npos) << result.error().to_string();
}

// --- validation ------------------------------------------------------------------------------

TEST(MetricsValidationTest, MetricNames) {
  Registry r;
  expect_invalid(r.gauge("", "h"), "metric name ''");
  expect_invalid(r.gauge("1abc", "h"), "'1abc' is invalid");
  expect_invalid(r.gauge("a-b", "h"), "'a-b' is invalid");
  expect_invalid(r.gauge("a b", "h"), "'a b' is invalid");
  EXPECT_TRUE(r.gauge("_ok:name_2", "h").ok());
  EXPECT_TRUE(r.gauge(":colon_first", "h").ok());
  expect_invalid(r.counter("requests", "h"), "counter name 'requests' must end in _total");
  EXPECT_TRUE(r.counter("requests_total", "h").ok());
}

TEST(MetricsValidationTest, LabelNames) {
  Registry r;
  expect_invalid(r.gauge("g", "h", {"1x"}), "label name '1x'");
  expect_invalid(r.gauge("g", "h", {"a:b"}), "label name 'a:b'");
  expect_invalid(r.gauge("g", "h", {""}), "label name ''");
  expect_invalid(r.gauge("g", "h", {"__reserved"}), "starts with '__'");
  expect_invalid(r.gauge("g", "h", {"kernel", "device", "kernel"}), "'kernel' appears twice");
  expect_invalid(r.gauge("g", "h", {"le"}), "'le'");
  expect_invalid(r.histogram("h_seconds", "h", {1.0}, {"le"}), "'le'");
  EXPECT_TRUE(r.gauge("g", "h", {"_x", "kernel2"}).ok());
}

TEST(MetricsValidationTest, HelpText) {
  Registry r;
  expect_invalid(r.gauge("g", ""), "help text of metric 'g' is empty");
  expect_invalid(r.gauge("g", std::string("bad \xC3\x28 utf8")), "not valid UTF-8");
  EXPECT_TRUE(r.gauge("g", "Gr\xC3\xBC\xC3\x9F" "e, \\ and\nnewline").ok());
}

TEST(MetricsValidationTest, HistogramBounds) {
  Registry r;
  expect_invalid(r.histogram("h", "h", {}), "at least one finite bucket bound");
  expect_invalid(r.histogram("h", "h", {1, 2, 2}), "not strictly increasing at index 2");
  expect_invalid(r.histogram("h", "h", {2, 1}), "not strictly increasing at index 1");
  expect_invalid(r.histogram("h", "h", {1, INFINITY}), "bucket bound 1 of histogram 'h' is not finite");
  expect_invalid(r.histogram("h", "h", {NAN}), "not finite");
  EXPECT_TRUE(r.histogram("h", "h", {-1, 0, 0.5}).ok());
}

TEST(MetricsValidationTest, WrongNumberOfLabelValuesIsAnError) {
  Registry r;
  auto family = r.counter("calls_total", "h", {"kernel", "device"});
  ASSERT_TRUE(family.ok());
  expect_invalid((*family)->with({"vector.add"}), "2 label names but 1 label values");
  expect_invalid((*family)->with({"a", "b", "c"}), "2 label names but 3 label values");
  expect_invalid((*family)->with({}), "2 label names but 0 label values");
  expect_invalid((*family)->with({"a", "\xFF"}), "value of label 'device' of metric 'calls_total' is not valid UTF-8");
  EXPECT_TRUE((*family)->with({"vector.add", "cuda:0"}).ok());
}

// --- families --------------------------------------------------------------------------------

TEST(MetricsFamilyTest, SameRegistrationReturnsTheSameFamily) {
  Registry r;
  auto a = r.counter("calls_total", "Calls.", {"kernel"});
  auto b = r.counter("calls_total", "Other help is ignored.", {"kernel"});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ((*b)->help(), "Calls.");
  auto h1 = r.histogram("latency_seconds", "h", {0.1, 1}, {"kernel"});
  auto h2 = r.histogram("latency_seconds", "h", {0.1, 1}, {"kernel"});
  ASSERT_TRUE(h1.ok() && h2.ok());
  EXPECT_EQ(*h1, *h2);
  EXPECT_EQ(std::vector<double>((*h1)->with({"k"}).value()->upper_bounds().begin(),
                                (*h1)->with({"k"}).value()->upper_bounds().end()),
            (std::vector<double>{0.1, 1}));
}

TEST(MetricsFamilyTest, ClashesAreAlreadyExists) {
  Registry r;
  ASSERT_TRUE(r.counter("calls_total", "h", {"kernel"}).ok());
  expect_exists(r.counter("calls_total", "h", {"device"}), "other label names");
  expect_exists(r.counter("calls_total", "h"), "other label names");
  expect_exists(r.gauge("calls_total", "h", {"kernel"}), "already registered as a counter, not a gauge");
  ASSERT_TRUE(r.histogram("latency_seconds", "h", {0.1, 1}).ok());
  expect_exists(r.histogram("latency_seconds", "h", {0.1, 2}), "other bucket bounds");
  expect_exists(r.gauge("latency_seconds", "h"), "already registered as a histogram");
  expect_exists(r.gauge("latency_seconds_bucket", "h"), "clash with the series of histogram 'latency_seconds'");
  expect_exists(r.gauge("latency_seconds_count", "h"), "clash with the series of histogram");
  ASSERT_TRUE(r.gauge("depth_sum", "h").ok());
  expect_exists(r.histogram("depth", "h", {1}), "clash with the registered metric 'depth_sum'");
}

TEST(MetricsFamilyTest, ChildrenAreStablePerLabelValues) {
  Registry r;
  CounterFamily* family = r.counter("calls_total", "h", {"kernel", "device"}).value();
  Counter* a = family->with({"vector.add", "cuda:0"}).value();
  const std::vector<std::string> owned{"vector.add", "cuda:0"};
  EXPECT_EQ(family->with(owned).value(), a);
  const std::vector<std::string_view> views{"vector.add", "cuda:1"};
  Counter* b = family->with(std::span<const std::string_view>(views)).value();
  EXPECT_NE(a, b);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(family->with({"k" + std::to_string(i), "d"}).ok());
  EXPECT_EQ(family->with({"vector.add", "cuda:0"}).value(), a);  // still the same object
}

// --- values ----------------------------------------------------------------------------------

TEST(MetricsValueTest, CounterAndGauge) {
  Registry r;
  Counter& c = *r.counter("c_total", "h").value()->with({}).value();
  EXPECT_EQ(c.value(), 0u);
  c.inc();
  c.inc(41);
  EXPECT_EQ(c.value(), 42u);

  Gauge& g = *r.gauge("g", "h").value()->with({}).value();
  EXPECT_EQ(g.value(), 0.0);
  g.set(2.5);
  g.add(-4);
  EXPECT_EQ(g.value(), -1.5);
  g.set(INFINITY);
  EXPECT_EQ(g.value(), INFINITY);
  g.set(NAN);
  EXPECT_TRUE(std::isnan(g.value()));
}

TEST(MetricsValueTest, SixteenThreadsCountExactly) {
  Registry r;
  Counter& c = *r.counter("c_total", "h").value()->with({}).value();
  Gauge& g = *r.gauge("g", "h").value()->with({}).value();
  Histogram& h = *r.histogram("h", "h", {0.5, 1.5, 2.5}).value()->with({}).value();
  constexpr int kThreads = 16;
  constexpr int kIterations = 50000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIterations; ++i) {
        c.inc();
        g.add(1.0);
        h.observe(static_cast<double>(t % 3));  // 0, 1 or 2: integer sums stay exact
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(c.value(), std::uint64_t{kThreads} * kIterations);
  EXPECT_EQ(g.value(), double{kThreads} * kIterations);
  const HistogramSnapshot snap = h.snapshot();
  EXPECT_EQ(snap.count, std::uint64_t{kThreads} * kIterations);
  // threads t%3==0: 6 threads, ==1: 5, ==2: 5.
  EXPECT_EQ(snap.cumulative_counts, (std::vector<std::uint64_t>{6u * kIterations, 11u * kIterations,
                                                                16u * kIterations, 16u * kIterations}));
  EXPECT_EQ(snap.sum, double(5 * kIterations * 1 + 5 * kIterations * 2));
}

// More live threads than owned stripes (some share the last stripe), then waves of short-lived
// threads that reuse the stripes the earlier ones returned: no update is lost either way.
TEST(MetricsValueTest, SharedAndReusedStripesCountExactly) {
  Registry r;
  Counter& c = *r.counter("c_total", "h").value()->with({}).value();
  Histogram& h = *r.histogram("h", "h", {0.5, 1.5}).value()->with({}).value();
  constexpr int kLive = static_cast<int>(kStripes) + 16;
  constexpr int kIterations = 20000;
  std::atomic<int> started{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kLive; ++t) {
    threads.emplace_back([&] {
      c.inc();  // takes a stripe, then waits until every thread holds one
      started.fetch_add(1);
      while (started.load() < kLive) std::this_thread::yield();
      for (int i = 1; i < kIterations; ++i) c.inc();
      for (int i = 0; i < kIterations; ++i) h.observe(1.0);
    });
  }
  for (auto& thread : threads) thread.join();
  constexpr int kWaves = 8;
  for (int wave = 0; wave < kWaves; ++wave) {
    std::vector<std::thread> short_lived;
    for (int t = 0; t < 8; ++t) {
      short_lived.emplace_back([&] {
        for (int i = 0; i < kIterations; ++i) c.inc(2);
      });
    }
    for (auto& thread : short_lived) thread.join();
  }
  EXPECT_EQ(c.value(), std::uint64_t{kLive} * kIterations + std::uint64_t{kWaves} * 8 * kIterations * 2);
  const HistogramSnapshot snap = h.snapshot();
  EXPECT_EQ(snap.count, std::uint64_t{kLive} * kIterations);
  EXPECT_EQ(snap.sum, double{kLive} * kIterations);
}

TEST(MetricsValueTest, ScrapesRunWhileThreadsCreateChildrenAndUpdate) {
  Registry r;
  CounterFamily* family = r.counter("c_total", "h", {"worker"}).value();
  HistogramFamily* latency = r.histogram("h_seconds", "h", default_latency_buckets_seconds(), {"worker"}).value();
  constexpr int kThreads = 8;
  constexpr int kIterations = 2000;
  std::atomic<int> running{kThreads};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter& mine = *family->with({std::to_string(t)}).value();
      Histogram& seconds = *latency->with({std::to_string(t)}).value();
      for (int i = 0; i < kIterations; ++i) {
        mine.inc();
        seconds.observe(1e-4);
        family->with({"shared"}).value()->inc();
      }
      running.fetch_sub(1);
    });
  }
  std::size_t scrapes = 0;
  while (running.load() > 0 || scrapes == 0) {
    EXPECT_FALSE(r.prometheus_text().empty());
    ++scrapes;
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(family->with({"shared"}).value()->value(), std::uint64_t{kThreads} * kIterations);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(family->with({std::to_string(t)}).value()->value(), std::uint64_t{kIterations});
    EXPECT_EQ(latency->with({std::to_string(t)}).value()->snapshot().count, std::uint64_t{kIterations});
  }
}

TEST(MetricsValueTest, HistogramBucketsAreInclusiveUpperBounds) {
  Registry r;
  Histogram& h = *r.histogram("h", "h", {1, 2, 5}).value()->with({}).value();
  for (double v : {0.5, 1.0, 1.5, 3.0, 10.0}) h.observe(v);
  HistogramSnapshot snap = h.snapshot();
  EXPECT_EQ(snap.upper_bounds, (std::vector<double>{1, 2, 5}));
  EXPECT_EQ(snap.cumulative_counts, (std::vector<std::uint64_t>{2, 3, 4, 5}));
  EXPECT_EQ(snap.count, 5u);
  EXPECT_EQ(snap.sum, 16.0);
  h.observe(NAN);  // counted in +Inf, sum becomes NaN
  snap = h.snapshot();
  EXPECT_EQ(snap.cumulative_counts, (std::vector<std::uint64_t>{2, 3, 4, 6}));
  EXPECT_TRUE(std::isnan(snap.sum));
}

TEST(MetricsValueTest, QuantilesInterpolateInsideTheBucket) {
  // Observations 0.5, 1, 1.5, 3, 10 over bounds 1, 2, 5: cumulative 2, 3, 4, 5.
  HistogramSnapshot snap{{1, 2, 5}, {2, 3, 4, 5}, 5, 16};
  EXPECT_DOUBLE_EQ(snap.quantile(0.2), 0.5);   // rank 1 in [0,1] holding 2: 0 + 1 * 1/2
  EXPECT_DOUBLE_EQ(snap.quantile(0.5), 1.5);   // rank 2.5 in (1,2] holding 1 (2 below): 1 + 1 * 0.5
  EXPECT_DOUBLE_EQ(snap.quantile(0.7), 3.5);   // rank 3.5 in (2,5] (3 below): 2 + 3 * 0.5
  EXPECT_DOUBLE_EQ(snap.quantile(0.8), 5.0);   // rank 4: top of (2,5]
  EXPECT_DOUBLE_EQ(snap.quantile(0.99), 5.0);  // rank 4.95 in +Inf: the largest finite bound
  EXPECT_DOUBLE_EQ(snap.quantile(1.0), 5.0);
  EXPECT_DOUBLE_EQ(snap.quantile(0.0), 0.0);   // lower edge of the first non-empty bucket
  EXPECT_EQ(snap.quantile(-0.1), -INFINITY);
  EXPECT_EQ(snap.quantile(1.1), INFINITY);
  EXPECT_TRUE(std::isnan(snap.quantile(NAN)));

  HistogramSnapshot empty{{1, 2}, {0, 0, 0}, 0, 0};
  EXPECT_TRUE(std::isnan(empty.quantile(0.5)));

  // Leading empty buckets are skipped: all 4 observations in (2,4].
  HistogramSnapshot skewed{{1, 2, 4}, {0, 0, 4, 4}, 4, 12};
  EXPECT_DOUBLE_EQ(skewed.quantile(0.0), 2.0);
  EXPECT_DOUBLE_EQ(skewed.quantile(0.25), 2.5);
  EXPECT_DOUBLE_EQ(skewed.quantile(0.5), 3.0);

  // A first bound <= 0 is returned as is for ranks in the first bucket.
  HistogramSnapshot negative{{-1, 0, 1}, {2, 2, 4, 4}, 4, -1};
  EXPECT_DOUBLE_EQ(negative.quantile(0.25), -1.0);
  EXPECT_DOUBLE_EQ(negative.quantile(0.75), 0.5);  // rank 3 in (0,1] holding 2 (2 below)

  // The same numbers through observe(): p50/p95/p99 of 100 observations 1..100 ms.
  Registry r;
  Histogram& h = *r.histogram("h_seconds", "h", {0.01, 0.05, 0.1}).value()->with({}).value();
  for (int ms = 1; ms <= 100; ++ms) h.observe(ms / 1000.0);
  const HistogramSnapshot s = h.snapshot();
  EXPECT_EQ(s.cumulative_counts, (std::vector<std::uint64_t>{10, 50, 100, 100}));
  EXPECT_DOUBLE_EQ(s.quantile(0.5), 0.05);                      // rank 50: top of (0.01,0.05]
  EXPECT_DOUBLE_EQ(s.quantile(0.95), 0.05 + 0.05 * (45.0 / 50));  // rank 95 in (0.05,0.1]
  EXPECT_DOUBLE_EQ(s.quantile(0.99), 0.05 + 0.05 * (49.0 / 50));
}

TEST(MetricsValueTest, BucketHelpers) {
  EXPECT_EQ(exponential_buckets(1, 2, 4).value(), (std::vector<double>{1, 2, 4, 8}));
  EXPECT_EQ(linear_buckets(0, 5, 3).value(), (std::vector<double>{0, 5, 10}));
  EXPECT_EQ(linear_buckets(-1, 0.5, 3).value(), (std::vector<double>{-1, -0.5, 0}));
  expect_invalid(exponential_buckets(0, 2, 3), "start must be finite and > 0");
  expect_invalid(exponential_buckets(1, 1, 3), "factor must be finite and > 1");
  expect_invalid(exponential_buckets(1, 2, 0), "count must be >= 1");
  expect_invalid(exponential_buckets(1e300, 1e10, 3), "bound 1 overflows");
  expect_invalid(linear_buckets(0, 0, 3), "width must be finite and > 0");
  expect_invalid(linear_buckets(0, 1, 0), "count must be >= 1");
  expect_invalid(linear_buckets(NAN, 1, 2), "start must be finite");

  const std::vector<double> latency = default_latency_buckets_seconds();
  ASSERT_EQ(latency.size(), 22u);
  EXPECT_EQ(latency.front(), 1e-6);
  EXPECT_EQ(latency.back(), 10.0);
  Registry r;
  EXPECT_TRUE(r.histogram("latency_seconds", "h", latency).ok());
}

// --- exposition ------------------------------------------------------------------------------

TEST(PrometheusTextTest, ExactLayout) {
  Registry r;
  CounterFamily* calls = r.counter("b_calls_total", "Calls with \\ and\nnewline \"quoted\".", {"kernel", "device"}).value();
  calls->with({"z.last", "cpu"}).value()->inc(3);
  calls->with({"a.first", "cuda:0"}).value()->inc(18446744073709551615ull);
  calls->with({"weird \"q\" \\ \n", "cpu"}).value()->inc();
  GaugeFamily* values = r.gauge("c_value", "Values.", {"kind"}).value();
  values->with({"inf"}).value()->set(INFINITY);
  values->with({"minus_inf"}).value()->set(-INFINITY);
  values->with({"nan"}).value()->set(NAN);
  values->with({"tenth"}).value()->set(0.1);
  values->with({"tiny"}).value()->set(1e-7);
  values->with({"big"}).value()->set(1e21);
  values->with({"third"}).value()->set(1.0 / 3);
  values->with({"negative"}).value()->set(-2);
  HistogramFamily* latency = r.histogram("a_latency_seconds", "Latency.", {0.001, 0.5, 1}).value();
  latency->with({}).value()->observe(0.25);
  latency->with({}).value()->observe(0.75);
  latency->with({}).value()->observe(3);
  HistogramFamily* sizes = r.histogram("d_size", "Sizes.", {1, 2}, {"kernel"}).value();
  sizes->with({"k"}).value()->observe(2);
  ASSERT_TRUE(r.gauge("e_unused", "Never set.").ok());

  const std::string expected =
      "# HELP a_latency_seconds Latency.\n"
      "# TYPE a_latency_seconds histogram\n"
      "a_latency_seconds_bucket{le=\"0.001\"} 0\n"
      "a_latency_seconds_bucket{le=\"0.5\"} 1\n"
      "a_latency_seconds_bucket{le=\"1\"} 2\n"
      "a_latency_seconds_bucket{le=\"+Inf\"} 3\n"
      "a_latency_seconds_sum 4\n"
      "a_latency_seconds_count 3\n"
      "# HELP b_calls_total Calls with \\\\ and\\nnewline \"quoted\".\n"
      "# TYPE b_calls_total counter\n"
      "b_calls_total{kernel=\"a.first\",device=\"cuda:0\"} 18446744073709551615\n"
      "b_calls_total{kernel=\"weird \\\"q\\\" \\\\ \\n\",device=\"cpu\"} 1\n"
      "b_calls_total{kernel=\"z.last\",device=\"cpu\"} 3\n"
      "# HELP c_value Values.\n"
      "# TYPE c_value gauge\n"
      "c_value{kind=\"big\"} 1e+21\n"
      "c_value{kind=\"inf\"} +Inf\n"
      "c_value{kind=\"minus_inf\"} -Inf\n"
      "c_value{kind=\"nan\"} NaN\n"
      "c_value{kind=\"negative\"} -2\n"
      "c_value{kind=\"tenth\"} 0.1\n"
      "c_value{kind=\"third\"} 0.3333333333333333\n"
      "c_value{kind=\"tiny\"} 1e-07\n"
      "# HELP d_size Sizes.\n"
      "# TYPE d_size histogram\n"
      "d_size_bucket{kernel=\"k\",le=\"1\"} 0\n"
      "d_size_bucket{kernel=\"k\",le=\"2\"} 1\n"
      "d_size_bucket{kernel=\"k\",le=\"+Inf\"} 1\n"
      "d_size_sum{kernel=\"k\"} 2\n"
      "d_size_count{kernel=\"k\"} 1\n"
      "# HELP e_unused Never set.\n"
      "# TYPE e_unused gauge\n";
  EXPECT_EQ(r.prometheus_text(), expected);
}

TEST(PrometheusTextTest, DoublesRoundTrip) {
  Registry r;
  GaugeFamily* family = r.gauge("g", "h", {"i"}).value();
  const std::vector<double> values{0.1 + 0.2, 123456789.123456789, 5e-324, 1.7976931348623157e308, -0.0};
  for (std::size_t i = 0; i < values.size(); ++i) family->with({std::to_string(i)}).value()->set(values[i]);
  const std::string text = r.prometheus_text();
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::string prefix = "g{i=\"" + std::to_string(i) + "\"} ";
    const auto at = text.find(prefix);
    ASSERT_NE(at, std::string::npos);
    const std::string number = text.substr(at + prefix.size(), text.find('\n', at) - at - prefix.size());
    EXPECT_EQ(std::strtod(number.c_str(), nullptr), values[i]) << number;  // strtod: 5e-324 is subnormal
  }
}

// --- collectors ------------------------------------------------------------------------------

TEST(MetricsCollectorTest, SamplesAppearGroupedAndSortedAndGoAwayWhenRemoved) {
  Registry r;
  int depth = 7;
  const auto id = r.add_collector([&](MetricSink& sink) {
    sink.gauge("queue_depth", "Requests waiting.", {"kernel"}, {"vector.dot"}, depth);
    sink.gauge("queue_depth", "Requests waiting.", {"kernel"}, {"vector.add"}, depth * 2);
    sink.counter("pool_allocations_total", "Pool allocations.", {}, {}, 12);
  });
  EXPECT_EQ(r.prometheus_text(),
            "# HELP pool_allocations_total Pool allocations.\n"
            "# TYPE pool_allocations_total counter\n"
            "pool_allocations_total 12\n"
            "# HELP queue_depth Requests waiting.\n"
            "# TYPE queue_depth gauge\n"
            "queue_depth{kernel=\"vector.add\"} 14\n"
            "queue_depth{kernel=\"vector.dot\"} 7\n");
  depth = 1;  // read at scrape time
  EXPECT_NE(r.prometheus_text().find("queue_depth{kernel=\"vector.dot\"} 1\n"), std::string::npos);
  EXPECT_EQ(r.collector_errors(), 0u);
  r.remove_collector(id);
  EXPECT_EQ(r.prometheus_text(), "");
  r.remove_collector(id);  // unknown ids are ignored
}

TEST(MetricsCollectorTest, ClashesAndBadSamplesAreSkippedAndCounted) {
  Registry r;
  r.counter("calls_total", "Calls.", {"kernel"}).value()->with({"a"}).value()->inc(5);
  ASSERT_TRUE(r.histogram("latency_seconds", "Latency.", {1}).ok());
  r.add_collector([](MetricSink& sink) {
    sink.gauge("calls_total", "x", {"kernel"}, {"b"}, 1);           // registered as a counter
    sink.counter("calls_total", "x", {"device"}, {"b"}, 1);         // other label names
    sink.counter("calls_total", "x", {"kernel"}, {"a"}, 1);         // label set the registry has
    sink.counter("calls_total", "x", {"kernel"}, {"b"}, 2);         // joins the registered family
    sink.gauge("latency_seconds_count", "x", {}, {}, 1);            // a histogram's series
    sink.gauge("bad-name", "x", {}, {}, 1);                         // invalid name
    sink.gauge("g", "", {}, {}, 1);                                  // empty help
    sink.gauge("g", "x", {"__x"}, {"v"}, 1);                         // reserved label name
    sink.gauge("g", "x", {"a"}, {}, 1);                              // value count mismatch
    sink.gauge("g", "x", {"a"}, {"\xFF"}, 1);                        // not UTF-8
    sink.counter("plain", "x", {}, {}, 1);                           // counter without _total
    sink.counter("neg_total", "x", {}, {}, -1);                      // negative counter
    sink.counter("nan_total", "x", {}, {}, NAN);                     // NaN counter
    sink.gauge("g", "first help", {"a"}, {"1"}, 1);                  // accepted
    sink.gauge("g", "x", {"a"}, {"1"}, 2);                           // repeated label set
    sink.counter("g", "x", {"a"}, {"2"}, 2);                         // other type than before
  });
  r.add_collector([](MetricSink&) { throw std::runtime_error("collector broke"); });
  const std::string text = r.prometheus_text();
  EXPECT_EQ(r.collector_errors(), 15u);  // 14 skipped samples + 1 exception
  EXPECT_EQ(text,
            "# HELP calls_total Calls.\n"
            "# TYPE calls_total counter\n"
            "calls_total{kernel=\"a\"} 5\n"
            "calls_total{kernel=\"b\"} 2\n"
            "# HELP g first help\n"
            "# TYPE g gauge\n"
            "g{a=\"1\"} 1\n"
            "# HELP latency_seconds Latency.\n"
            "# TYPE latency_seconds histogram\n");
  (void)r.prometheus_text();
  EXPECT_EQ(r.collector_errors(), 30u);  // counted again at every scrape
}

TEST(MetricsSnapshotTest, StructuredView) {
  Registry r;
  r.counter("calls_total", "Calls.", {"kernel"}).value()->with({"k"}).value()->inc(2);
  r.histogram("latency_seconds", "Latency.", {1, 2}).value()->with({}).value()->observe(1.5);
  r.add_collector([](MetricSink& sink) { sink.gauge("depth", "Depth.", {"q"}, {"x"}, 3.5); });
  const std::vector<FamilySnapshot> families = r.snapshot();
  ASSERT_EQ(families.size(), 3u);
  EXPECT_EQ(families[0].name, "calls_total");
  EXPECT_EQ(families[0].type, MetricType::counter);
  EXPECT_EQ(families[0].label_names, (std::vector<std::string>{"kernel"}));
  ASSERT_EQ(families[0].children.size(), 1u);
  EXPECT_EQ(families[0].children[0].label_values, (std::vector<std::string>{"k"}));
  EXPECT_EQ(std::get<std::uint64_t>(families[0].children[0].value), 2u);
  EXPECT_EQ(families[1].name, "depth");
  EXPECT_EQ(families[1].type, MetricType::gauge);
  EXPECT_EQ(families[1].help, "Depth.");
  EXPECT_EQ(std::get<double>(families[1].children[0].value), 3.5);
  EXPECT_EQ(families[2].type, MetricType::histogram);
  const auto& h = std::get<HistogramSnapshot>(families[2].children[0].value);
  EXPECT_EQ(h.cumulative_counts, (std::vector<std::uint64_t>{0, 1, 1}));
  EXPECT_DOUBLE_EQ(h.quantile(0.5), 1.5);
}

// --- promtool ---------------------------------------------------------------------------------

struct CommandResult {
  int exit_status = -1;
  std::string output;
};

CommandResult run_command(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, n);
  const int status = ::pclose(pipe);
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string find_promtool() {
  if (::access("/usr/bin/promtool", X_OK) == 0) return "/usr/bin/promtool";
  const CommandResult which = run_command("command -v promtool");
  if (which.exit_status == 0 && !which.output.empty()) return which.output.substr(0, which.output.find('\n'));
  return {};
}

TEST(PrometheusTextTest, RealisticExpositionPassesPromtool) {
  const std::string promtool = find_promtool();
  ASSERT_FALSE(promtool.empty()) << "promtool (Debian package 'prometheus') is not installed: run "
                                    "scripts/install-deps.sh";
  Registry r;
  auto* calls = r.counter("gpubridge_grain_calls_total", "Grain calls completed.", {"grain_type", "method", "status"})
                    .value();
  calls->with({"SensorGrain", "update", "ok"}).value()->inc(1234);
  calls->with({"SensorGrain", "update", "error"}).value()->inc(2);
  calls->with({"Weird \"grain\"\\", "m\nx", "ok"}).value()->inc();
  auto* fallbacks = r.counter("gpubridge_fallbacks_total", "Calls that ran somewhere other than asked.", {"reason"})
                        .value();
  fallbacks->with({"no_device"}).value()->inc(7);
  auto* uptime = r.gauge("gpubridge_silo_uptime_seconds", "Seconds since the silo started.").value();
  uptime->with({}).value()->set(12.5);
  auto* up = r.gauge("gpubridge_device_up", "1 when the device is available.", {"device", "backend"}).value();
  up->with({"cuda:0", "cuda"}).value()->set(1);
  up->with({"cpu:0", "cpu"}).value()->set(1);
  auto* odd = r.gauge("gpubridge_test_special_values", "Special values.", {"kind"}).value();
  odd->with({"inf"}).value()->set(INFINITY);
  odd->with({"minus_inf"}).value()->set(-INFINITY);
  odd->with({"nan"}).value()->set(NAN);
  odd->with({"tiny"}).value()->set(1e-300);
  auto* duration = r.histogram("gpubridge_kernel_duration_seconds", "Device execution time.\nSecond line \\ here.",
                               default_latency_buckets_seconds(), {"kernel", "backend"})
                       .value();
  for (int i = 0; i < 1000; ++i) duration->with({"vector.add", "cuda"}).value()->observe(i * 1e-5);
  duration->with({"vector.dot", "cpu"}).value()->observe(0.002);
  auto* batch = r.histogram("gpubridge_batch_size", "Requests per batch.", exponential_buckets(1, 2, 12).value(),
                            {"kernel", "device"})
                    .value();
  batch->with({"vector.axpy", "cuda:0"}).value()->observe(37);
  ASSERT_TRUE(r.counter("gpubridge_retries_total", "Retried device executions.", {"kernel"}).ok());  // no children
  r.add_collector([](MetricSink& sink) {
    sink.gauge("gpubridge_batch_queue_depth", "Requests waiting in a batcher queue.", {"kernel", "device"},
               {"vector.add", "cuda:0"}, 3);
    sink.gauge("gpubridge_batch_queue_depth", "Requests waiting in a batcher queue.", {"kernel", "device"},
               {"vector.add", "cpu:0"}, 0);
    sink.gauge("gpubridge_memory_pool_bytes", "Pool memory.", {"device", "pool", "state"},
               {"cuda:0", "device", "in_use"}, 1 << 20);
    sink.counter("gpubridge_transfer_bytes_total", "Bytes copied between host and device.", {"device", "direction"},
                 {"cuda:0", "host_to_device"}, 4096);
  });
  const std::string text = r.prometheus_text();
  ASSERT_EQ(r.collector_errors(), 0u);

  const auto path = std::filesystem::temp_directory_path() /
                    ("gpubridge_metrics_test_" + std::to_string(::getpid()) + ".prom");
  {
    std::ofstream file(path);
    file << text;
  }
  const CommandResult check = run_command(promtool + " check metrics < " + path.string());
  std::filesystem::remove(path);
  EXPECT_EQ(check.exit_status, 0) << check.output << "\n--- exposition ---\n" << text;
  EXPECT_EQ(check.output, "") << "promtool lint complaints:\n" << check.output;
}

}  // namespace
}  // namespace gpubridge::telemetry
