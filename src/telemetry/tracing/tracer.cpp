// Tracer, Span and the export thread (bounded queue -> OTLP/HTTP JSON POSTs).
#include <httplib.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "gpubridge/core/thread_name.hpp"
#include "span_record.hpp"

namespace gpubridge::telemetry {

using internal::SpanRecord;

namespace {

struct Endpoint {
  std::string host;
  int port = 80;
  std::string path;
};

Result<Endpoint> parse_endpoint(std::string_view url) {
  auto bad = [&](const std::string& why) {
    return Error(ErrorCode::invalid_argument, "TracerOptions.otlp_endpoint: " + why, std::string(url));
  };
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) return bad("must start with http:// (https is not supported)");
  std::string_view rest = url.substr(kScheme.size());
  const std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  Endpoint e;
  e.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {  // [IPv6]:port
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated '[' in the host");
    e.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("expected ':' after the bracketed host");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
  } else {
    const std::size_t colon = authority.rfind(':');
    e.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return bad("empty port");
    }
  }
  if (e.host.empty()) return bad("no host");
  if (!port_text.empty()) {
    int port = 0;
    for (char ch : port_text) {
      if (ch < '0' || ch > '9' || port > 65535) return bad("port is not a number from 1 to 65535");
      port = port * 10 + (ch - '0');
    }
    if (port < 1 || port > 65535) return bad("port is not a number from 1 to 65535");
    e.port = port;
  }
  return e;
}

template <typename D>
std::pair<time_t, time_t> sec_usec(D d) {
  const auto us = std::max<long long>(1, std::chrono::duration_cast<std::chrono::microseconds>(d).count());
  return {static_cast<time_t>(us / 1000000), static_cast<time_t>(us % 1000000)};
}

}  // namespace

// ---------------------------------------------------------------- Exporter

// The queue of finished spans and the thread that posts them. `processed` counts queued spans
// that left the queue (exported, failed or dropped at shutdown): flush() waits on it.
struct Tracer::Exporter {
  Exporter(Tracer& t, Endpoint e) : tracer(t), endpoint(std::move(e)) {}

  Tracer& tracer;
  const Endpoint endpoint;
  std::mutex mu;
  std::condition_variable wake;  // the export thread
  std::condition_variable done;  // flush() waiters
  std::deque<std::unique_ptr<SpanRecord>> queue;
  std::uint64_t accepted = 0;
  std::uint64_t processed = 0;
  std::uint64_t flush_target = 0;
  bool stopping = false;
  std::thread thread;

  void enqueue(std::unique_ptr<SpanRecord> record) noexcept {
    const TracerOptions& o = tracer.options_;
    bool notify = false;
    {
      std::lock_guard lock(mu);
      if (queue.size() >= o.max_queue_spans) {
        tracer.dropped_.fetch_add(1, std::memory_order_relaxed);
        return;  // `record` is freed on return, outside the lock
      }
      try {
        queue.push_back(std::move(record));
      } catch (...) {  // out of memory: the span is dropped and counted
        tracer.dropped_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      ++accepted;
      notify = queue.size() >= o.max_export_batch;
    }
    if (notify) wake.notify_one();
  }

  // Posts one batch; true when the collector accepted it.
  bool post(const std::vector<const SpanRecord*>& batch, std::chrono::milliseconds timeout) {
    try {
      const std::string body = internal::encode_otlp_json(tracer.options_.service_name, batch);
      httplib::Client client(endpoint.host, endpoint.port);
      const auto [s, us] = sec_usec(timeout);
      client.set_connection_timeout(s, us);
      client.set_read_timeout(s, us);
      client.set_write_timeout(s, us);
      auto response = client.Post(endpoint.path, body, "application/json");
      return response && response->status >= 200 && response->status < 300;
    } catch (...) {  // encoding or allocation failure: the batch counts as failed
      return false;
    }
  }

  // Takes up to max_export_batch spans off the queue (under the lock), posts them (without it).
  void export_one_batch(std::unique_lock<std::mutex>& lock, std::chrono::milliseconds timeout) {
    const std::size_t n = std::min(queue.size(), tracer.options_.max_export_batch);
    std::vector<std::unique_ptr<SpanRecord>> taken;
    taken.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      taken.push_back(std::move(queue.front()));
      queue.pop_front();
    }
    lock.unlock();
    std::vector<const SpanRecord*> batch;
    batch.reserve(n);
    for (const auto& r : taken) batch.push_back(r.get());
    if (post(batch, timeout)) {
      tracer.exported_.fetch_add(n, std::memory_order_relaxed);
    } else {
      tracer.export_errors_.fetch_add(1, std::memory_order_relaxed);
      tracer.failed_spans_.fetch_add(n, std::memory_order_relaxed);
    }
    taken.clear();
    lock.lock();
    processed += n;
    done.notify_all();
  }

  void run() {
    const TracerOptions& o = tracer.options_;
    using Clock = std::chrono::steady_clock;
    std::unique_lock lock(mu);
    Clock::time_point next = Clock::now() + o.export_interval;
    for (;;) {
      wake.wait_until(lock, next, [&] {
        return stopping || queue.size() >= o.max_export_batch || flush_target > processed;
      });
      if (stopping) break;
      // Woken for a full batch, a flush or the interval: export everything queued now.
      while (!queue.empty() && !stopping) export_one_batch(lock, o.export_timeout);
      if (Clock::now() >= next) next = Clock::now() + o.export_interval;
    }
    // Shutdown: a bounded last export, then whatever is left is dropped.
    const Clock::time_point deadline = Clock::now() + o.shutdown_timeout;
    while (!queue.empty()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) break;
      export_one_batch(lock, std::min(left, o.export_timeout));
    }
    tracer.dropped_.fetch_add(queue.size(), std::memory_order_relaxed);
    processed += queue.size();
    queue.clear();
    done.notify_all();
  }
};

// ---------------------------------------------------------------- Span

Span::Span() noexcept = default;

Span::Span(Tracer* tracer, std::unique_ptr<SpanRecord> record, const TraceContext& context) noexcept
    : tracer_(tracer), record_(std::move(record)), context_(context) {}

Span::Span(Span&& other) noexcept
    : tracer_(std::exchange(other.tracer_, nullptr)), record_(std::move(other.record_)), context_(other.context_) {}

Span& Span::operator=(Span&& other) noexcept {
  if (this != &other) {
    end();
    tracer_ = std::exchange(other.tracer_, nullptr);
    record_ = std::move(other.record_);
    context_ = other.context_;
  }
  return *this;
}

Span::~Span() { end(); }

namespace {
void set_value(std::vector<Attribute>& attributes, std::string_view key, AttributeValue value) {
  for (Attribute& a : attributes) {
    if (a.key == key) {
      a.value = std::move(value);
      return;
    }
  }
  attributes.push_back(Attribute{std::string(key), std::move(value)});
}
}  // namespace

void Span::set_attribute(std::string_view key, std::string_view value) {
  if (record_) set_value(record_->attributes, key, std::string(value));
}
void Span::set_attribute(std::string_view key, std::int64_t value) {
  if (record_) set_value(record_->attributes, key, value);
}
void Span::set_attribute(std::string_view key, double value) {
  if (record_) set_value(record_->attributes, key, value);
}
void Span::set_attribute(std::string_view key, bool value) {
  if (record_) set_value(record_->attributes, key, value);
}

void Span::set_error(std::string_view message) {
  if (!record_) return;
  record_->error = true;
  record_->error_message = std::string(message);
}

void Span::end() noexcept {
  if (!record_) return;
  record_->end_unix_ns = internal::unix_nanos(std::chrono::system_clock::now());
  tracer_->finish(std::move(record_));
  tracer_ = nullptr;
}

// ---------------------------------------------------------------- Tracer

Result<std::unique_ptr<Tracer>> Tracer::create(TracerOptions options) {
  auto bad = [](std::string what) { return Error(ErrorCode::invalid_argument, "TracerOptions." + std::move(what)); };
  auto endpoint = parse_endpoint(options.otlp_endpoint);
  if (!endpoint.ok()) return endpoint.error();
  if (options.max_queue_spans == 0) return bad("max_queue_spans must be at least 1");
  if (options.max_export_batch == 0) return bad("max_export_batch must be at least 1");
  if (options.export_interval.count() <= 0) return bad("export_interval must be positive");
  if (options.export_timeout.count() <= 0) return bad("export_timeout must be positive");
  if (options.shutdown_timeout.count() < 0) return bad("shutdown_timeout must not be negative");
  if (!(options.sample_ratio >= 0.0 && options.sample_ratio <= 1.0)) return bad("sample_ratio must be within [0, 1]");
  std::unique_ptr<Tracer> tracer(new Tracer(std::move(options)));
  if (tracer->options_.enabled) {
    tracer->exporter_ = std::make_unique<Exporter>(*tracer, std::move(endpoint).value());
    try {
      tracer->exporter_->thread = named_thread("gb-trace-export", [e = tracer->exporter_.get()] { e->run(); });
    } catch (const std::system_error& e) {
      return Error(ErrorCode::resource_exhausted, std::string("cannot start the trace export thread: ") + e.what());
    }
  }
  return tracer;
}

Tracer::Tracer(TracerOptions options) : options_(std::move(options)) {}

Tracer::~Tracer() {
  if (!exporter_) return;
  {
    std::lock_guard lock(exporter_->mu);
    exporter_->stopping = true;
  }
  exporter_->wake.notify_one();
  if (exporter_->thread.joinable()) exporter_->thread.join();
}

TraceContext Tracer::new_context(const TraceContext* parent) const noexcept {
  TraceContext c;
  const std::uint64_t span = internal::random_nonzero_u64();
  for (int i = 0; i < 8; ++i) c.span_id[i] = static_cast<std::uint8_t>(span >> (8 * (7 - i)));
  if (parent != nullptr && parent->valid()) {
    c.trace_id = parent->trace_id;
    c.flags = parent->flags;
    return c;
  }
  const std::uint64_t hi = internal::random_nonzero_u64();
  const std::uint64_t lo = internal::random_nonzero_u64();
  for (int i = 0; i < 8; ++i) {
    c.trace_id[i] = static_cast<std::uint8_t>(hi >> (8 * (7 - i)));
    c.trace_id[8 + i] = static_cast<std::uint8_t>(lo >> (8 * (7 - i)));
  }
  // Ratio sampling on the trace id's random low half, so every silo decides alike.
  bool sampled = options_.sample_ratio >= 1.0;
  if (!sampled && options_.sample_ratio > 0.0) {
    sampled = static_cast<double>(lo >> 11) * 0x1.0p-53 < options_.sample_ratio;
  }
  c.flags = sampled ? 0x01 : 0x00;
  return c;
}

Span Tracer::start_span(std::string_view name, SpanKind kind, const TraceContext* parent) {
  if (!options_.enabled) return Span();
  const TraceContext context = new_context(parent);
  if (!context.sampled()) return Span(nullptr, nullptr, context);
  auto record = std::make_unique<SpanRecord>();
  record->name = std::string(name);
  record->kind = kind;
  record->context = context;
  if (parent != nullptr && parent->valid()) record->parent_span_id = parent->span_id;
  record->start_unix_ns = internal::unix_nanos(std::chrono::system_clock::now());
  return Span(this, std::move(record), context);
}

TraceContext Tracer::record_span(std::string_view name, SpanKind kind, const std::optional<TraceContext>& parent,
                                 std::chrono::system_clock::time_point start,
                                 std::chrono::system_clock::time_point end, std::vector<Attribute> attributes,
                                 const std::optional<std::string>& error) {
  if (!options_.enabled) return TraceContext{};
  const TraceContext* p = parent.has_value() ? &*parent : nullptr;
  const TraceContext context = new_context(p);
  if (!context.sampled()) return context;
  auto record = std::make_unique<SpanRecord>();
  record->name = std::string(name);
  record->kind = kind;
  record->context = context;
  if (p != nullptr && p->valid()) record->parent_span_id = p->span_id;
  record->start_unix_ns = internal::unix_nanos(start);
  record->end_unix_ns = std::max(record->start_unix_ns, internal::unix_nanos(end));
  record->attributes = std::move(attributes);
  if (error.has_value()) {
    record->error = true;
    record->error_message = *error;
  }
  finish(std::move(record));
  return context;
}

void Tracer::finish(std::unique_ptr<SpanRecord> record) noexcept {
  if (exporter_) exporter_->enqueue(std::move(record));
}

bool Tracer::flush(std::chrono::milliseconds timeout) {
  if (!exporter_) return true;
  Exporter& e = *exporter_;
  std::unique_lock lock(e.mu);
  const std::uint64_t target = e.accepted;
  if (e.processed >= target) return true;
  e.flush_target = std::max(e.flush_target, target);
  e.wake.notify_one();
  return e.done.wait_for(lock, timeout, [&] { return e.processed >= target; });
}

}  // namespace gpubridge::telemetry
