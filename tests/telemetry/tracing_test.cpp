// Tracing: W3C traceparent parsing, spans exported as OTLP/HTTP JSON to a real HTTP server on
// loopback, the bounded queue, a dead or silent endpoint, and trace propagation through grain
// calls (TracingCallFilter + RequestContext).
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "gpubridge/runtime/runtime.hpp"
#include "gpubridge/telemetry/tracing.hpp"
#include "otlp_collector.hpp"

namespace gpubridge::telemetry {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

const std::string kSample = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

// ---------------------------------------------------------------- traceparent

TEST(TraceContext, ParsesAndFormatsVersion00) {
  auto c = TraceContext::parse_traceparent(kSample);
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(c->span_id_hex(), "00f067aa0ba902b7");
  EXPECT_EQ(c->flags, 0x01);
  EXPECT_TRUE(c->sampled());
  EXPECT_TRUE(c->valid());
  EXPECT_EQ(c->traceparent(), kSample);
  auto unsampled = TraceContext::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(unsampled.ok());
  EXPECT_FALSE(unsampled->sampled());
}

TEST(TraceContext, RejectsMalformedInput) {
  const std::vector<std::string> bad = {
      "",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",          // short
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",        // version 00 with extra
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",         // uppercase
      "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",         // not hex
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",         // zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",         // zero span id
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",         // version ff
      "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",         // separator
      "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",         // version not hex
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",        // future: no '-' after flags
  };
  for (const auto& text : bad) {
    auto c = TraceContext::parse_traceparent(text);
    EXPECT_FALSE(c.ok()) << "accepted: " << text;
    if (!c.ok()) {
      EXPECT_EQ(c.error().code(), ErrorCode::invalid_argument);
      EXPECT_NE(c.error().message().find("traceparent"), std::string::npos);
    }
  }
}

TEST(TraceContext, AcceptsHigherVersionsForwardCompatibly) {
  auto longer = TraceContext::parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-follows");
  ASSERT_TRUE(longer.ok()) << longer.error().to_string();
  EXPECT_EQ(longer->span_id_hex(), "00f067aa0ba902b7");
  EXPECT_TRUE(TraceContext::parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09").ok());
}

// ---------------------------------------------------------------- a collector on loopback

using Collector = gpubridge::testing::OtlpCollector;

json attribute(const json& span, const std::string& key) {
  for (const json& a : span.at("attributes")) {
    if (a.at("key") == key) return a.at("value");
  }
  return json();
}

const json* find_span(const std::vector<json>& spans, const std::string& name) {
  for (const json& s : spans) {
    if (s.at("name") == name) return &s;
  }
  return nullptr;
}

std::unique_ptr<Tracer> make_tracer(TracerOptions options) {
  auto t = Tracer::create(std::move(options));
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().to_string());
  return t.ok() ? std::move(t).value() : nullptr;
}

// ---------------------------------------------------------------- tracer

TEST(Tracer, RejectsBadOptions) {
  EXPECT_EQ(Tracer::create({.enabled = true, .otlp_endpoint = "https://x/v1/traces"}).error().code(),
            ErrorCode::invalid_argument);
  EXPECT_EQ(Tracer::create({.enabled = true, .otlp_endpoint = "http://:80/"}).error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(Tracer::create({.enabled = true, .otlp_endpoint = "http://h:99999/"}).error().code(),
            ErrorCode::invalid_argument);
  EXPECT_FALSE(Tracer::create({.max_queue_spans = 0}).ok());
  EXPECT_FALSE(Tracer::create({.sample_ratio = 1.5}).ok());
  auto r = Tracer::create({.max_export_batch = 0});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("max_export_batch"), std::string::npos);
}

TEST(Tracer, DisabledTracerDoesNothing) {
  auto tracer = make_tracer({});
  ASSERT_TRUE(tracer);
  EXPECT_FALSE(tracer->enabled());
  auto parent = TraceContext::parse_traceparent(kSample).value();
  Span span = tracer->start_span("x", SpanKind::internal, &parent);
  EXPECT_FALSE(span.recording());
  EXPECT_FALSE(span.context().valid());
  span.set_attribute("k", std::int64_t{1});
  span.end();
  EXPECT_FALSE(tracer->record_span("y", SpanKind::internal, parent, std::chrono::system_clock::now(),
                                   std::chrono::system_clock::now())
                   .valid());
  EXPECT_TRUE(tracer->flush(1s));
  EXPECT_EQ(tracer->exported() + tracer->dropped() + tracer->export_errors(), 0u);
}

TEST(Tracer, ExportsSpansAsOtlpJson) {
  Collector collector;
  auto tracer = make_tracer({.enabled = true, .service_name = "silo-test", .otlp_endpoint = collector.endpoint(),
                             .export_interval = 50ms});
  ASSERT_TRUE(tracer);
  const auto before = std::chrono::system_clock::now();
  TraceContext root_context;
  TraceContext child_context;
  {
    Span root = tracer->start_span("root", SpanKind::server);
    root_context = root.context();
    root.set_attribute("s", "text");
    root.set_attribute("i", std::int64_t{-42});
    root.set_attribute("d", 2.5);
    root.set_attribute("b", true);
    root.set_attribute("i", std::int64_t{7});  // last value wins
    Span child = tracer->start_span("child", SpanKind::client, &root_context);
    child_context = child.context();
  }
  const auto t0 = std::chrono::system_clock::time_point(std::chrono::nanoseconds(1'700'000'000'000'000'000LL));
  const TraceContext recorded = tracer->record_span("kernel launch", SpanKind::internal, child_context, t0,
                                                    t0 + 1500ns, {{"kernel", std::string("vector.add")}},
                                                    std::string("device lost"));
  ASSERT_TRUE(tracer->flush(10s));
  EXPECT_EQ(tracer->exported(), 3u);
  EXPECT_EQ(tracer->dropped(), 0u);
  EXPECT_EQ(tracer->export_errors(), 0u);

  for (const auto& type : collector.content_types()) EXPECT_EQ(type, "application/json");
  const auto bodies = collector.bodies();
  ASSERT_FALSE(bodies.empty());
  const json& rs = bodies[0].at("resourceSpans").at(0);
  EXPECT_EQ(attribute(rs.at("resource"), "service.name"), json({{"stringValue", "silo-test"}}));
  EXPECT_EQ(rs.at("scopeSpans").at(0).at("scope").at("name"), "gpubridge");

  const auto spans = collector.spans();
  ASSERT_EQ(spans.size(), 3u);
  const json* root = find_span(spans, "root");
  const json* child = find_span(spans, "child");
  const json* kernel = find_span(spans, "kernel launch");
  ASSERT_TRUE(root && child && kernel);
  EXPECT_EQ(root->at("traceId"), root_context.trace_id_hex());
  EXPECT_EQ(root->at("spanId"), root_context.span_id_hex());
  EXPECT_FALSE(root->contains("parentSpanId"));
  EXPECT_EQ(root->at("kind"), 2);
  EXPECT_EQ(child->at("kind"), 3);
  EXPECT_EQ(child->at("traceId"), root_context.trace_id_hex());
  EXPECT_EQ(child->at("parentSpanId"), root_context.span_id_hex());
  EXPECT_EQ(kernel->at("traceId"), root_context.trace_id_hex());
  EXPECT_EQ(kernel->at("spanId"), recorded.span_id_hex());
  EXPECT_EQ(kernel->at("parentSpanId"), child_context.span_id_hex());
  EXPECT_EQ(kernel->at("kind"), 1);
  // Times: decimal strings, as given for recorded spans, ordered and recent for live ones.
  EXPECT_EQ(kernel->at("startTimeUnixNano"), "1700000000000000000");
  EXPECT_EQ(kernel->at("endTimeUnixNano"), "1700000000000001500");
  const auto start = std::stoull(root->at("startTimeUnixNano").get<std::string>());
  const auto end = std::stoull(root->at("endTimeUnixNano").get<std::string>());
  EXPECT_LE(start, end);
  EXPECT_GE(start, static_cast<unsigned long long>(
                       std::chrono::duration_cast<std::chrono::nanoseconds>(before.time_since_epoch()).count()));
  // Attributes as OTLP AnyValue.
  EXPECT_EQ(attribute(*root, "s"), json({{"stringValue", "text"}}));
  EXPECT_EQ(attribute(*root, "i"), json({{"intValue", "7"}}));
  EXPECT_EQ(attribute(*root, "d"), json({{"doubleValue", 2.5}}));
  EXPECT_EQ(attribute(*root, "b"), json({{"boolValue", true}}));
  EXPECT_EQ(root->at("attributes").size(), 4u);
  EXPECT_EQ(attribute(*kernel, "kernel"), json({{"stringValue", "vector.add"}}));
  // Status: unset for ok spans, error with the message otherwise.
  EXPECT_EQ(root->at("status").at("code"), 0);
  EXPECT_EQ(kernel->at("status").at("code"), 2);
  EXPECT_EQ(kernel->at("status").at("message"), "device lost");
}

TEST(Tracer, UnsampledRootsPropagateButAreNotExported) {
  Collector collector;
  auto tracer = make_tracer({.enabled = true, .otlp_endpoint = collector.endpoint(), .sample_ratio = 0.0});
  ASSERT_TRUE(tracer);
  {
    Span root = tracer->start_span("root", SpanKind::internal);
    EXPECT_TRUE(root.context().valid());
    EXPECT_FALSE(root.context().sampled());
    EXPECT_FALSE(root.recording());
    TraceContext parent = root.context();
    Span child = tracer->start_span("child", SpanKind::internal, &parent);
    EXPECT_EQ(child.context().trace_id, parent.trace_id);
    EXPECT_FALSE(child.recording());
  }
  ASSERT_TRUE(tracer->flush(5s));
  EXPECT_EQ(tracer->exported(), 0u);
  EXPECT_TRUE(collector.spans().empty());
}

TEST(Tracer, FullQueueDropsAndCounts) {
  Collector collector;
  // A long interval and a large batch: nothing leaves the queue until flush().
  auto tracer = make_tracer({.enabled = true, .otlp_endpoint = collector.endpoint(), .max_queue_spans = 4,
                             .max_export_batch = 1000, .export_interval = std::chrono::hours(1)});
  ASSERT_TRUE(tracer);
  for (int i = 0; i < 10; ++i) tracer->start_span("s" + std::to_string(i), SpanKind::internal).end();
  EXPECT_EQ(tracer->dropped(), 6u);
  ASSERT_TRUE(tracer->flush(10s));
  EXPECT_EQ(tracer->exported(), 4u);
  const auto spans = collector.spans();
  ASSERT_EQ(spans.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(find_span(spans, "s" + std::to_string(i))) << i;
}

TEST(Tracer, DeadEndpointCountsErrorsAndShutsDownPromptly) {
  int port = 0;
  {
    Collector closed;  // take a free port, then close it: connections are refused
    port = closed.port();
  }
  const std::string endpoint = "http://127.0.0.1:" + std::to_string(port) + "/v1/traces";
  auto tracer = make_tracer({.enabled = true, .otlp_endpoint = endpoint, .max_export_batch = 2,
                             .export_interval = std::chrono::hours(1), .export_timeout = 500ms});
  ASSERT_TRUE(tracer);
  for (int i = 0; i < 3; ++i) tracer->start_span("s", SpanKind::internal).end();
  EXPECT_TRUE(tracer->flush(30s));  // every span left the queue: as failures
  EXPECT_EQ(tracer->exported(), 0u);
  EXPECT_GE(tracer->export_errors(), 2u);  // batches of 2 and 1
  EXPECT_EQ(tracer->failed_spans(), 3u);
  for (int i = 0; i < 5; ++i) tracer->start_span("late", SpanKind::internal).end();
  const auto t0 = std::chrono::steady_clock::now();
  tracer.reset();  // a last export attempt, bounded by shutdown_timeout
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 60s);
}

TEST(Tracer, SilentEndpointDoesNotHangTheDestructor) {
  // A socket that listens but never accepts or answers: connects succeed, answers never come.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string endpoint = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/v1/traces";
  {
    auto tracer = make_tracer({.enabled = true, .otlp_endpoint = endpoint, .export_interval = std::chrono::hours(1),
                               .export_timeout = 300ms, .shutdown_timeout = 1000ms});
    ASSERT_TRUE(tracer);
    for (int i = 0; i < 3; ++i) tracer->start_span("s", SpanKind::internal).end();
    const auto t0 = std::chrono::steady_clock::now();
    tracer.reset();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 60s);
  }
  ::close(fd);
}

// ---------------------------------------------------------------- propagation through grains

// Resumes the awaiting turn from a separate thread, so it continues on whichever worker picks up
// its activation.
class ResumeFromThread {
 public:
  struct Awaiter {
    ResumeFromThread& owner;
    runtime::Resumption resumption;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      resumption.handle = h;
      runtime::ResumeContext context = runtime::ResumeContext::current();
      std::lock_guard lock(owner.mu_);
      owner.threads_.emplace_back([context, this] { context.resume(resumption); });
    }
    void await_resume() const noexcept {}
  };
  Awaiter operator co_await() { return Awaiter{*this, {}}; }
  void join() {
    std::lock_guard lock(mu_);
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  ~ResumeFromThread() { join(); }

 private:
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

ResumeFromThread* g_resumer = nullptr;

class GrainC : public runtime::Grain {
 public:
  runtime::Task<int> leaf(int x) { co_return x + 1; }
  runtime::Task<int> boom() {
    throw std::runtime_error("boom in C");
    co_return 0;
  }
};

class GrainB : public runtime::Grain {
 public:
  runtime::Task<int> middle(int x) {
    const std::string before(runtime::RequestContext::current().traceparent());
    co_await *g_resumer;  // continues on any worker
    const std::string after(runtime::RequestContext::current().traceparent());
    if (before != after) throw std::logic_error("context changed across co_await");
    co_return co_await get_grain<GrainC>("c").call<&GrainC::leaf>(x);
  }
};

class GrainA : public runtime::Grain {
 public:
  runtime::Task<int> top(int x) {
    int v = co_await get_grain<GrainB>("b").call<&GrainB::middle>(x);
    try {
      co_await get_grain<GrainC>("c").call<&GrainC::boom>();
    } catch (const std::runtime_error&) {
    }
    co_return v;
  }
};

TEST(TracingCallFilter, SpansFollowTheCallChainAcrossWorkers) {
  Collector collector;
  auto tracer = make_tracer({.enabled = true, .otlp_endpoint = collector.endpoint(), .export_interval = 50ms});
  ASSERT_TRUE(tracer);
  ResumeFromThread resumer;
  g_resumer = &resumer;
  auto rt = runtime::Runtime::create({.worker_threads = 3}).value();
  ASSERT_TRUE(rt->register_grain<GrainA>().ok());
  ASSERT_TRUE(rt->register_grain<GrainB>().ok());
  ASSERT_TRUE(rt->register_grain<GrainC>().ok());
  rt->add_call_filter(std::make_shared<TracingCallFilter>(*tracer));

  // An outside caller's context: the grain calls join its trace.
  Span outer = tracer->start_span("request", SpanKind::client);
  const TraceContext outer_context = outer.context();
  ASSERT_TRUE(runtime::RequestContext::current().set_traceparent(outer_context.traceparent()));
  EXPECT_EQ(rt->run(rt->get<GrainA>("a").call<&GrainA::top>(41)), 42);
  runtime::RequestContext::current().clear();
  outer.end();
  rt->stop();
  resumer.join();
  ASSERT_TRUE(tracer->flush(10s));

  const auto spans = collector.spans();
  ASSERT_EQ(spans.size(), 5u);  // request + A.top + B.middle + C.leaf + C.boom
  std::map<std::string, json> by_method;
  for (const json& s : spans) {
    EXPECT_EQ(s.at("traceId"), outer_context.trace_id_hex()) << s.dump();
    if (s.at("name") == "grain call") {
      EXPECT_EQ(s.at("kind"), 2);
      by_method[attribute(s, "grain.method").at("stringValue").get<std::string>()] = s;
    }
  }
  ASSERT_EQ(by_method.size(), 4u);
  const json& a = by_method.at("GrainA::top");
  const json& b = by_method.at("GrainB::middle");
  const json& c = by_method.at("GrainC::leaf");
  const json& boom = by_method.at("GrainC::boom");
  EXPECT_EQ(a.at("parentSpanId"), outer_context.span_id_hex());
  EXPECT_EQ(b.at("parentSpanId"), a.at("spanId"));
  EXPECT_EQ(c.at("parentSpanId"), b.at("spanId"));  // called after the co_await
  EXPECT_EQ(boom.at("parentSpanId"), a.at("spanId"));
  EXPECT_EQ(attribute(a, "grain.type"), json({{"stringValue", "GrainA"}}));
  EXPECT_EQ(attribute(a, "grain.key"), json({{"stringValue", "a"}}));
  EXPECT_EQ(a.at("status").at("code"), 0);
  EXPECT_EQ(b.at("status").at("code"), 0);
  EXPECT_EQ(boom.at("status").at("code"), 2);
  EXPECT_NE(boom.at("status").at("message").get<std::string>().find("boom in C"), std::string::npos);
}

TEST(TracingCallFilter, CallsWithoutIncomingContextStartATrace) {
  Collector collector;
  auto tracer = make_tracer({.enabled = true, .otlp_endpoint = collector.endpoint()});
  ASSERT_TRUE(tracer);
  auto rt = runtime::Runtime::create({.worker_threads = 2}).value();
  ASSERT_TRUE(rt->register_grain<GrainC>().ok());
  rt->add_call_filter(std::make_shared<TracingCallFilter>(*tracer));
  runtime::RequestContext::current().clear();
  EXPECT_EQ(rt->run(rt->get<GrainC>("c").call<&GrainC::leaf>(1)), 2);
  EXPECT_TRUE(runtime::RequestContext::current().empty());  // nothing flowed back
  rt->stop();
  ASSERT_TRUE(tracer->flush(10s));
  const auto spans = collector.spans();
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_FALSE(spans[0].contains("parentSpanId"));
}

TEST(TracingCallFilter, DisabledTracerLeavesTheContextAlone) {
  auto tracer = make_tracer({});
  auto rt = runtime::Runtime::create({.worker_threads = 2}).value();
  ASSERT_TRUE(rt->register_grain<GrainC>().ok());
  rt->add_call_filter(std::make_shared<TracingCallFilter>(*tracer));
  ASSERT_TRUE(runtime::RequestContext::current().set_traceparent(kSample));
  EXPECT_EQ(rt->run(rt->get<GrainC>("c").call<&GrainC::leaf>(1)), 2);
  runtime::RequestContext::current().clear();
  EXPECT_EQ(tracer->exported() + tracer->dropped(), 0u);
}

}  // namespace
}  // namespace gpubridge::telemetry
