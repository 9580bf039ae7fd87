// A running silo's observability: /metrics (checked by the real promtool), /health, /health/live,
// /health/ready, /api/status and the dashboard page over HTTP on loopback; metrics recorded by the
// hot paths; fault injection through the silo's switch opening a circuit breaker, falling back to
// the CPU with the reason counted, and closing again after recovery; deadlines under a hung device;
// "memory transfer" spans with device-measured times exported to an OTLP collector on loopback.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <thread>

#include "gpubridge/compute/pipeline.hpp"
#include "gpubridge/grains/batch_grain.hpp"
#include "gpubridge/resilience/fault_injection.hpp"
#include "gpubridge/server/silo.hpp"
#include "gpubridge/telemetry/metrics.hpp"
#include "gpubridge/telemetry/nvml.hpp"
#include "otlp_collector.hpp"
#include "test_support.hpp"

namespace gpubridge::server {
namespace {

using nlohmann::json;
using runtime::Task;

SiloConfig small_config() {
  SiloConfig c;
  c.workers = 2;
  c.cpu_threads = 2;
  c.http_enabled = true;
  c.http_port = 0;
  c.max_delay_us = 200;
  return c;
}

// small_config() on the CPU backend alone.
SiloConfig cpu_only_config() {
  SiloConfig c = small_config();
  c.backend = "cpu";
  c.enable_opencl = false;
  c.enable_cuda = false;
  return c;
}

std::unique_ptr<Silo> start(SiloConfig c) {
  auto silo = Silo::start(std::move(c));
  EXPECT_TRUE(silo.ok()) << (silo.ok() ? "" : silo.error().to_string());
  return silo.ok() ? std::move(silo).value() : nullptr;
}

struct Http {
  explicit Http(const std::string& url) : client(url) { client.set_read_timeout(30, 0); }
  httplib::Result get(const std::string& path) { return client.Get(path.c_str()); }
  httplib::Client client;
};

// A batch-grain call over `a` (and `b` when given), writing into `out`.
grains::BatchCall batch_call(std::vector<float>& out, const std::vector<float>& a, const std::vector<float>* b = nullptr) {
  grains::BatchCall call;
  call.inputs[call.input_count++] = compute::TensorView(a);
  if (b != nullptr) call.inputs[call.input_count++] = compute::TensorView(*b);
  call.output = out.data();
  call.output_capacity = out.size();
  return call;
}

// `callers` concurrent callers, each making `calls` vector.add calls through the batch grain.
void run_batch_calls(Silo& silo, int callers, int calls) {
  auto one = [](runtime::Runtime& rt, int n) -> Task<void> {
    auto grain = rt.get<grains::BatchGrain>("vector.add/f32");
    std::vector<float> a(64, 1.f), b(64, 2.f), out(64);
    for (int i = 0; i < n; ++i) {
      co_await grain.call<&grains::BatchGrain::run>(batch_call(out, a, &b));
      if (out[7] != 3.f) throw std::runtime_error("wrong sum");
    }
  };
  std::vector<std::thread> threads;
  for (int c = 0; c < callers; ++c) {
    threads.emplace_back([&] { silo.runtime().run(one(silo.runtime(), calls)); });
  }
  for (auto& t : threads) t.join();
}

// The value of the first sample line starting with `series` (name plus labels), or -1.
double sample_value(const std::string& text, const std::string& series) {
  std::size_t pos = 0;
  while ((pos = text.find(series, pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      const auto space = text.find(' ', pos + series.size());
      if (space == pos + series.size()) return std::stod(text.substr(space + 1, text.find('\n', space) - space - 1));
    }
    pos += series.size();
  }
  return -1;
}

TEST(Observability, SiloServesMetricsHealthStatusAndDashboard) {
  auto silo = start(cpu_only_config());
  ASSERT_NE(silo, nullptr);
  ASSERT_TRUE(silo->http_url().has_value());
  run_batch_calls(*silo, 4, 50);
  Http http(*silo->http_url());

  auto metrics = http.get("/metrics");
  ASSERT_TRUE(metrics) << "no answer from " << *silo->http_url();
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->get_header_value("Content-Type").find("version=0.0.4"), std::string::npos);
  const std::string& text = metrics->body;
  EXPECT_EQ(sample_value(text, R"(gpubridge_grain_calls_total{grain_type="BatchGrain",method="run",status="ok"})"), 200)
      << text;
  EXPECT_EQ(sample_value(text, R"(gpubridge_batch_requests_total{kernel="vector.add",status="ok"})"), 200) << text;
  EXPECT_GT(sample_value(text, R"(gpubridge_kernel_executions_total{kernel="vector.add",backend="cpu",device="cpu:0",status="ok"})"), 0)
      << text;
  // On the CPU these small requests ran inline on the calling workers: one execution each (the
  // health smoke test adds plain calls), no batches.
  EXPECT_EQ(sample_value(text, R"(gpubridge_batch_inline_requests_total{kernel="vector.add",dtype="f32",device="cpu:0"})"),
            200)
      << text;
  EXPECT_GE(sample_value(text, R"(gpubridge_kernel_executions_total{kernel="vector.add",backend="cpu",device="cpu:0",status="ok"})"),
            200)
      << text;
  EXPECT_GE(sample_value(text, R"(gpubridge_kernel_duration_seconds_count{kernel="vector.add",backend="cpu"})"), 200) << text;
  EXPECT_EQ(sample_value(text, R"(gpubridge_batch_size_count{kernel="vector.add",device="cpu:0"})"), -1)
      << "no batch ran: absent, not zero\n"
      << text;
  EXPECT_EQ(sample_value(text, R"(gpubridge_device_up{device="cpu:0",backend="cpu"})"), 1) << text;
  EXPECT_EQ(sample_value(text, R"(gpubridge_build_info{version=")" + std::string("0.1.0") + R"("})"), 1) << text;
  EXPECT_EQ(sample_value(text, R"(gpubridge_fallbacks_total{reason="breaker_open"})"), 0) << text;
  // GPU gauges exist exactly where NVML loads (a machine with an NVIDIA driver), absent elsewhere, never zero.
  if (telemetry::NvmlMonitor::open().ok()) {
    EXPECT_NE(text.find("gpubridge_gpu_memory_total_bytes{"), std::string::npos) << text;
  } else {
    EXPECT_EQ(text.find("gpubridge_gpu_"), std::string::npos) << "no NVML here: GPU gauges must be absent, not zero";
  }

  auto health = http.get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200) << health->body;
  const json h = json::parse(health->body);
  EXPECT_EQ(h["status"], "pass") << health->body;
  bool smoke = false;
  for (const auto& check : h["checks"]) {
    EXPECT_TRUE(check.contains("duration_seconds") && check.contains("detail")) << check.dump();
    if (check["name"] == "kernel_smoke:cpu:0") smoke = check["status"] == "pass";
  }
  EXPECT_TRUE(smoke) << health->body;
  EXPECT_EQ(http.get("/health/live")->status, 200);
  EXPECT_EQ(http.get("/health/ready")->status, 200);

  auto status = http.get("/api/status");
  ASSERT_TRUE(status);
  const json s = json::parse(status->body);
  EXPECT_EQ(s["totals"]["grain_calls"].get<std::uint64_t>() >= 200, true) << status->body;
  EXPECT_EQ(s["devices"][0]["id"], "cpu:0");

  auto page = http.get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("GpuBridge silo"), std::string::npos);
  EXPECT_EQ(page->body.find("http://"), std::string::npos) << "the dashboard loads nothing from elsewhere";
  EXPECT_EQ(http.get("/no-such-page")->status, 404);

  silo->stop();
  EXPECT_FALSE(http.get("/health/live")) << "the HTTP server stops with the silo";
}

// Requests that batch grains run inline on the CPU are counted per kernel and outcome, errors
// included, also when the workers alternate between kernels.
TEST(Observability, InlineRequestsAreCountedPerKernelAndOutcome) {
  auto silo = start(cpu_only_config());
  ASSERT_NE(silo, nullptr);
  constexpr int kRounds = 30;
  auto rounds = [](runtime::Runtime& rt) -> Task<int> {
    auto add = rt.get<grains::BatchGrain>("vector.add/f32");
    auto normalize = rt.get<grains::BatchGrain>("vector.normalize/f32");
    std::vector<float> ones(64, 1.f), zeros(64, 0.f), out(64);
    int failed = 0;
    for (int i = 0; i < kRounds; ++i) {
      const compute::BatchReport report = co_await add.call<&grains::BatchGrain::run>(batch_call(out, ones, &ones));
      if (report.batch_size != 1 || out[5] != 2.f) throw std::runtime_error("not run inline, or wrong");
      try {
        co_await normalize.call<&grains::BatchGrain::run>(batch_call(out, zeros));
      } catch (const ErrorException& e) {
        if (e.error().code() == ErrorCode::invalid_argument) ++failed;
      }
    }
    co_return failed;
  };
  EXPECT_EQ(silo->runtime().run(rounds(silo->runtime())), kRounds);
  Http http(*silo->http_url());
  auto metrics = http.get("/metrics");
  ASSERT_TRUE(metrics);
  const std::string& text = metrics->body;
  EXPECT_EQ(sample_value(text, R"(gpubridge_batch_requests_total{kernel="vector.add",status="ok"})"), kRounds) << text;
  EXPECT_EQ(sample_value(text, R"(gpubridge_batch_requests_total{kernel="vector.normalize",status="error"})"), kRounds)
      << text;
  EXPECT_EQ(sample_value(text, R"(gpubridge_batch_requests_total{kernel="vector.normalize",status="ok"})"), -1) << text;
  EXPECT_EQ(sample_value(text, R"(gpubridge_kernel_executions_total{kernel="vector.normalize",backend="cpu",device="cpu:0",status="error"})"),
            kRounds)
      << text;
  EXPECT_EQ(sample_value(text, R"(gpubridge_kernel_duration_seconds_count{kernel="vector.normalize",backend="cpu"})"), kRounds)
      << text;
  EXPECT_EQ(sample_value(text, R"(gpubridge_batch_inline_requests_total{kernel="vector.add",dtype="f32",device="cpu:0"})"),
            kRounds)
      << text;
  EXPECT_EQ(sample_value(text, R"(gpubridge_batch_inline_requests_total{kernel="vector.normalize",dtype="f32",device="cpu:0"})"),
            kRounds)
      << text;
}

TEST(Observability, PromtoolAcceptsTheSiloExposition) {
  SiloConfig c = small_config();
  c.backend = "cpu";
  c.enable_opencl = false;
  auto silo = start(c);
  ASSERT_NE(silo, nullptr);
  run_batch_calls(*silo, 2, 20);
  const std::string text = silo->metrics().prometheus_text();
  const std::string path = ::testing::TempDir() + "/silo_metrics.prom";
  {
    std::ofstream f(path);
    f << text;
  }
  const std::string out_path = path + ".out";
  const int rc = std::system(("promtool check metrics < " + path + " > " + out_path + " 2>&1").c_str());
  std::ifstream out(out_path);
  const std::string lint((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  EXPECT_EQ(rc, 0) << "promtool check metrics failed (installed? scripts/install-deps.sh): " << lint;
  EXPECT_TRUE(lint.empty()) << lint;

}

TEST(Observability, TelemetryOffRecordsNothingOnTheHotPaths) {
  SiloConfig c = small_config();
  c.backend = "cpu";
  c.enable_opencl = false;
  c.telemetry_enabled = false;
  auto silo = start(c);
  ASSERT_NE(silo, nullptr);
  run_batch_calls(*silo, 2, 10);
  const std::string text = silo->metrics().prometheus_text();
  EXPECT_EQ(text.find("gpubridge_grain_calls_total"), std::string::npos);
  EXPECT_EQ(text.find("gpubridge_kernel_executions_total"), std::string::npos);
  EXPECT_NE(text.find("gpubridge_build_info"), std::string::npos) << "scrape-time metrics stay";
}

TEST(Observability, BusyPortIsAClearError) {
  SiloConfig c = small_config();
  c.enable_opencl = false;
  auto first = start(c);
  ASSERT_NE(first, nullptr);
  const std::string url = *first->http_url();
  c.http_port = static_cast<std::uint32_t>(std::stoul(url.substr(url.rfind(':') + 1)));
  auto second = Silo::start(c);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().to_string().find("http"), std::string::npos) << second.error().to_string();
}

TEST(Observability, BadFaultSpecIsAClearError) {
  SiloConfig c = small_config();
  c.enable_opencl = false;
  c.faults = "backend=opencl,mode=explode";
  auto silo = Silo::start(c);
  ASSERT_FALSE(silo.ok());
  EXPECT_NE(silo.error().to_string().find("resilience.faults"), std::string::npos) << silo.error().to_string();
}

// Fault injection on the OpenCL device (PoCL on CI): the breaker opens after the threshold, calls
// run on the CPU with the reason counted, and after recovery the half-open probe closes it.
TEST(Observability, InjectedFaultsOpenTheBreakerAndRecoveryClosesIt) {
  SiloConfig c = small_config();
  c.backend = "opencl";
  c.enable_cuda = false;
  c.breaker_failure_threshold = 3;
  c.breaker_open_interval_ms = 300;
  c.retry_max_attempts = 1;
  // vector.axpy: the health smoke test runs vector.add on every device and must not count here.
  c.faults = "backend=opencl,kernel=vector.axpy,mode=fail";
  auto silo = start(c);
  ASSERT_NE(silo, nullptr);
  GB_REQUIRE_BACKEND(&silo->executor(), compute::BackendKind::opencl);
  std::string device;
  for (const auto& d : silo->executor().devices()) {
    if (d.backend == compute::BackendKind::opencl && device.empty()) device = d.id;
  }

  std::vector<float> a(100, 1.f), b(100, 2.f);
  compute::CallOptions on_opencl;
  on_opencl.device_id = device;
  auto add = [&] { return silo->executor().run({"vector.axpy", compute::DType::f32, {a, b}, {2.0}}, on_opencl); };
  for (int i = 0; i < 6; ++i) {
    auto r = add();
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(r->report.device_id, "cpu:0");
    EXPECT_EQ(r->outputs[0].as<float>()[5], 4.f);
    EXPECT_EQ(r->report.fallback,
              i < 3 ? compute::FallbackReason::device_error : compute::FallbackReason::breaker_open) << "call " << i;
  }
  std::string text = silo->metrics().prometheus_text();
  const std::string breaker = R"(gpubridge_breaker_state{device=")" + device + R"(",kernel="vector.axpy"})";
  EXPECT_EQ(sample_value(text, breaker), 2) << text;
  EXPECT_EQ(sample_value(text, R"(gpubridge_fallbacks_total{reason="breaker_open"})"), 3) << text;
  EXPECT_EQ(sample_value(text, R"(gpubridge_faults_injected_total{backend="opencl",kernel="vector.axpy",mode="fail"})"), 3)
      << text;
  EXPECT_EQ(sample_value(text, R"(gpubridge_breaker_transitions_total{device=")" + device + R"(",kernel="vector.axpy",to="open"})"), 1)
      << text;

  // Recovery: the fault is switched off; after the open interval a probe runs on the device.
  silo->faults().clear();
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  auto r = add();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->report.device_id, device);
  EXPECT_EQ(r->report.fallback, compute::FallbackReason::none);
  text = silo->metrics().prometheus_text();
  EXPECT_EQ(sample_value(text, breaker), 0) << text;
}

TEST(Observability, HungDeviceCallsMeetTheirDeadlineAndTheSiloStops) {
  SiloConfig c = small_config();
  c.backend = "opencl";
  c.enable_cuda = false;
  c.faults = "backend=opencl,kernel=vector.add,mode=hang";
  auto silo = start(c);
  ASSERT_NE(silo, nullptr);
  GB_REQUIRE_BACKEND(&silo->executor(), compute::BackendKind::opencl);
  std::vector<float> a(100, 1.f), b(100, 2.f);
  compute::CallOptions options;
  options.backend = compute::BackendChoice::opencl;
  options.allow_fallback = false;
  options.timeout = std::chrono::milliseconds(100);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = silo->executor().run({"vector.add", compute::DType::f32, {a, b}, {}}, options);
  const auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::deadline_exceeded) << r.error().to_string();
  EXPECT_LT(waited, std::chrono::seconds(10));
  const auto s0 = std::chrono::steady_clock::now();
  silo.reset();  // releases the hang; must not wait for it forever
  EXPECT_LT(std::chrono::steady_clock::now() - s0, std::chrono::seconds(10));
}

using SpanCollector = testing::OtlpCollector;

json span_attribute(const json& span, const std::string& key) {
  for (const json& a : span.value("attributes", json::array())) {
    if (a.value("key", "") == key) return a.at("value");
  }
  return json();
}

// Tracing on, an OpenCL silo (PoCL on CI): batched and plain calls produce "memory transfer" spans
// in both directions, with the device, direction and bytes, exported to the collector.
TEST(Observability, TracingExportsMemoryTransferSpansFromTheDevice) {
  SpanCollector collector;  // outlives the silo, whose tracer exports what is queued when it goes
  SiloConfig c = small_config();
  c.backend = "opencl";
  c.enable_cuda = false;
  c.http_enabled = false;
  c.tracing_enabled = true;
  c.tracing_endpoint = collector.endpoint();
  auto silo = start(c);
  ASSERT_NE(silo, nullptr);
  GB_REQUIRE_BACKEND(&silo->executor(), compute::BackendKind::opencl);
  run_batch_calls(*silo, 2, 20);
  std::vector<float> a(1000, 1.f), b(1000, 2.f);
  auto plain = silo->executor().run({"vector.add", compute::DType::f32, {compute::TensorView(a), compute::TensorView(b)}, {}},
                                    {.backend = compute::BackendChoice::opencl, .device_id = {}, .allow_fallback = false});
  ASSERT_TRUE(plain.ok()) << plain.error().to_string();
  const std::string device = plain->report.device_id;
  std::set<std::string> opencl_devices;  // batches and the plain call may run on different ones (PoCL, a GPU)
  for (const compute::Device& d : silo->executor().devices()) {
    if (d.backend == compute::BackendKind::opencl) opencl_devices.insert(d.id);
  }
  silo.reset();  // stops the silo; its tracer exports every queued span before it goes

  const std::vector<json> spans = collector.spans("memory transfer");
  ASSERT_FALSE(spans.empty()) << "no memory transfer span reached the collector";
  int up = 0;
  int down = 0;
  bool plain_upload_seen = false;
  for (const json& s : spans) {
    EXPECT_EQ(s.at("kind"), 1) << "internal";
    const std::string span_device = span_attribute(s, "device").value("stringValue", "");
    EXPECT_TRUE(opencl_devices.contains(span_device)) << s.dump();
    const std::string direction = span_attribute(s, "direction").value("stringValue", "");
    if (direction == "host_to_device") ++up;
    if (direction == "device_to_host") ++down;
    EXPECT_TRUE(direction == "host_to_device" || direction == "device_to_host") << s.dump();
    // OTLP JSON carries 64-bit integers as strings.
    const json bytes = span_attribute(s, "bytes").value("intValue", json());
    ASSERT_TRUE(bytes.is_string()) << s.dump();
    EXPECT_GT(std::stoll(bytes.get<std::string>()), 0) << s.dump();
    if (direction == "host_to_device" && bytes == std::to_string(a.size() * sizeof(float)) && span_device == device) {
      plain_upload_seen = true;
    }
    const auto start_ns = std::stoull(s.at("startTimeUnixNano").get<std::string>());
    const auto end_ns = std::stoull(s.at("endTimeUnixNano").get<std::string>());
    EXPECT_GT(end_ns, start_ns) << s.dump();
  }
  EXPECT_GT(up, 0);
  EXPECT_GT(down, 0);
  EXPECT_TRUE(plain_upload_seen) << "the plain call's 4000-byte inputs are timed too";
}

// A pipeline's stages become "pipeline stage" spans (the CPU runs stage by stage and times each).
TEST(Observability, TracingExportsPipelineStageSpans) {
  SpanCollector collector;
  SiloConfig c = small_config();
  c.backend = "cpu";
  c.enable_cuda = false;
  c.enable_opencl = false;
  c.http_enabled = false;
  c.tracing_enabled = true;
  c.tracing_endpoint = collector.endpoint();
  auto silo = start(c);
  ASSERT_NE(silo, nullptr);
  std::vector<float> x(1000, 1.f), y(1000, 2.f);
  compute::Pipeline p;
  p.dtype = compute::DType::f32;
  p.inputs = {compute::TensorView(x), compute::TensorView(y)};
  p.stages = {{"vector.add", {compute::StageInput::external(0), compute::StageInput::external(1)}, {}, false},
              {"vector.axpy", {compute::StageInput::stage(0), compute::StageInput::external(1)}, {2.0}, false},
              {"vector.normalize", {compute::StageInput::stage(1)}, {}, false}};
  auto r = silo->executor().run_pipeline(p);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  silo.reset();  // exports every queued span

  const std::vector<json> spans = collector.spans("pipeline stage");
  ASSERT_EQ(spans.size(), 3u) << "one span per stage";
  std::vector<std::string> kernels;
  for (const json& s : spans) kernels.push_back(span_attribute(s, "kernel").value("stringValue", ""));
  std::sort(kernels.begin(), kernels.end());
  EXPECT_EQ(kernels, (std::vector<std::string>{"vector.add", "vector.axpy", "vector.normalize"}));
}

}  // namespace
}  // namespace gpubridge::server
