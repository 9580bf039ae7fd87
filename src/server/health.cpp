#include "server/health.hpp"

#include <algorithm>
#include <array>
#include <condition_variable>
#include <memory>

#include "gpubridge/grains/ring_grain.hpp"

namespace gpubridge::server {

std::string_view to_string(HealthStatus s) noexcept {
  switch (s) {
    case HealthStatus::pass: return "pass";
    case HealthStatus::warn: return "warn";
    case HealthStatus::fail: return "fail";
  }
  return "fail";
}

namespace {

using SteadyClock = std::chrono::steady_clock;

HealthStatus worst(HealthStatus a, HealthStatus b) { return static_cast<HealthStatus>(std::max(static_cast<int>(a), static_cast<int>(b))); }

template <typename F>
HealthCheck timed(std::string name, F&& body) {
  HealthCheck check;
  check.name = std::move(name);
  const auto t0 = SteadyClock::now();
  body(check);
  check.duration = SteadyClock::now() - t0;
  check.checked_at = std::chrono::system_clock::now();
  return check;
}

}  // namespace

HealthMonitor::HealthMonitor(compute::Executor& executor, HealthOptions options)
    : executor_(executor), options_(std::move(options)) {}

HealthCheck HealthMonitor::check_devices() const {
  return timed("devices", [&](HealthCheck& c) {
    const auto requested = compute::parse_backend(options_.requested_backend);  // nullopt for "auto"
    std::string detail;
    bool requested_present = !requested.has_value();
    for (const auto& b : executor_.backends()) {
      detail += (detail.empty() ? "" : "; ") + std::string(to_string(b.kind)) + ": ";
      if (!b.available || b.devices.empty()) {
        detail += "absent (" + b.reason + ")";
        continue;
      }
      if (requested && *requested == b.kind) requested_present = true;
      for (std::size_t i = 0; i < b.devices.size(); ++i) detail += (i ? ", " : "") + b.devices[i].id;
    }
    // A silo always has its CPU; an absent requested backend means work runs elsewhere (degraded).
    c.status = requested_present ? HealthStatus::pass : HealthStatus::warn;
    if (!requested_present) detail = "requested backend '" + options_.requested_backend + "' is absent; " + detail;
    c.detail = detail;
  });
}

HealthCheck HealthMonitor::check_memory() const {
  return timed("memory_pools", [&](HealthCheck& c) {
    const auto stats = executor_.stats();
    const auto devices = executor_.devices();
    std::string detail;
    for (const auto& d : stats.devices) {
      auto dev = std::find_if(devices.begin(), devices.end(), [&](const compute::Device& x) { return x.id == d.device_id; });
      if (dev == devices.end() || !dev->is_gpu) continue;
      std::uint64_t capacity = dev->memory_total_bytes;
      if (options_.device_pool_limit_bytes != 0) capacity = std::min(capacity, options_.device_pool_limit_bytes);
      if (capacity == 0) continue;
      const double ratio = static_cast<double>(d.device_pool.bytes_in_use) / static_cast<double>(capacity);
      HealthStatus s = HealthStatus::pass;
      if (ratio >= options_.pool_fail_ratio) {
        s = HealthStatus::fail;
      } else if (ratio >= options_.pool_warn_ratio) {
        s = HealthStatus::warn;
      }
      c.status = worst(c.status, s);
      char line[160];
      std::snprintf(line, sizeof line, "%s %.1f%% of %.0f MiB in use", d.device_id.c_str(), ratio * 100.0,
                    static_cast<double>(capacity) / (1024.0 * 1024.0));
      detail += (detail.empty() ? "" : "; ") + std::string(line);
    }
    c.detail = detail.empty() ? "no device memory pools (CPU only)" : detail;
  });
}

// Open breakers mean a device is being bypassed: degraded (warn), not down.
HealthCheck HealthMonitor::check_breakers() const {
  return timed("breakers", [&](HealthCheck& c) {
    std::string detail;
    std::size_t closed = 0;
    for (const auto& b : executor_.stats().breakers) {
      if (b.state == resilience::BreakerState::closed) {
        ++closed;
        continue;
      }
      c.status = HealthStatus::warn;
      detail += (detail.empty() ? "" : "; ") + b.device_id + "/" + b.kernel + " " + std::string(resilience::to_string(b.state));
    }
    c.detail = detail.empty() ? std::to_string(closed) + " closed" : detail;
  });
}

// vector.add of a few known values on exactly this device, never falling back. The inputs live
// in shared state owned by the completion, so a device that answers late touches nothing freed.
HealthCheck HealthMonitor::smoke_test(const compute::Device& device) const {
  return timed("kernel_smoke:" + device.id, [&](HealthCheck& c) {
    struct Shared {
      std::array<float, 4> a{1.f, 2.f, 3.f, 4.f};
      std::array<float, 4> b{10.f, 20.f, 30.f, 40.f};
      std::mutex m;
      std::condition_variable cv;
      bool done = false;
      Result<compute::KernelResult> result = Error(ErrorCode::unknown, "no result");
    };
    auto shared = std::make_shared<Shared>();
    compute::KernelCall call{"vector.add", compute::DType::f32,
                             {compute::TensorView(std::span<const float>(shared->a)),
                              compute::TensorView(std::span<const float>(shared->b))},
                             {}};
    compute::CallOptions options;
    options.device_id = device.id;
    options.allow_fallback = false;
    executor_.submit(std::move(call), options, [shared](Result<compute::KernelResult> r) {
      std::lock_guard lock(shared->m);
      shared->result = std::move(r);
      shared->done = true;
      shared->cv.notify_all();
    });
    std::unique_lock lock(shared->m);
    if (!shared->cv.wait_for(lock, options_.smoke_timeout, [&] { return shared->done; })) {
      c.status = HealthStatus::fail;
      c.detail = "vector.add did not complete within " + std::to_string(options_.smoke_timeout.count()) + " ms";
      return;
    }
    if (!shared->result) {
      c.status = HealthStatus::fail;
      c.detail = "vector.add failed: " + shared->result.error().to_string();
      return;
    }
    const auto& out = shared->result->outputs.at(0);
    const auto values = out.as<float>();
    for (std::size_t i = 0; i < shared->a.size(); ++i) {
      if (values.size() != shared->a.size() || values[i] != shared->a[i] + shared->b[i]) {
        c.status = HealthStatus::fail;
        c.detail = "vector.add returned a wrong value at index " + std::to_string(i);
        return;
      }
    }
    c.status = HealthStatus::pass;
    c.detail = "vector.add of 4 floats correct on " + shared->result->report.device_id;
  });
}

std::vector<HealthCheck> HealthMonitor::smoke_tests() {
  std::lock_guard lock(smoke_mutex_);
  const auto now = SteadyClock::now();
  if (!smoke_cache_.empty() && now - smoke_at_ < options_.smoke_cache) return smoke_cache_;
  std::vector<HealthCheck> checks;
  for (const auto& d : executor_.devices()) checks.push_back(smoke_test(d));
  smoke_cache_ = checks;
  smoke_at_ = now;
  return checks;
}

HealthCheckFn ring_health_check(const grains::RingHost& host, std::chrono::milliseconds window) {
  return [&host, window](HealthCheck& c) {
    Status s = host.server_status(window);
    c.status = s ? HealthStatus::pass : HealthStatus::fail;
    const grains::RingHostPlacement& placed = host.placement();
    c.detail = s ? std::string(grains::to_string(placed.backend)) + " server on " + placed.device + " serving, " +
                       std::to_string(host.messages_served()) + " messages"
                 : s.error().to_string();
  };
}

void HealthMonitor::add_check(std::string name, HealthCheckFn check) {
  std::lock_guard lock(extra_mutex_);
  extra_checks_.emplace_back(std::move(name), std::move(check));
}

HealthReport HealthMonitor::evaluate() {
  HealthReport report;
  report.checks.push_back(check_devices());
  report.checks.push_back(check_memory());
  report.checks.push_back(check_breakers());
  for (auto& c : smoke_tests()) report.checks.push_back(std::move(c));
  std::vector<std::pair<std::string, HealthCheckFn>> extra;
  {
    std::lock_guard lock(extra_mutex_);
    extra = extra_checks_;
  }
  for (const auto& [name, check] : extra) report.checks.push_back(timed(name, check));
  for (const auto& c : report.checks) report.status = worst(report.status, c.status);
  report.at = std::chrono::system_clock::now();
  std::lock_guard lock(history_mutex_);
  history_.push_back(report);
  while (history_.size() > options_.history) history_.pop_front();
  return report;
}

std::vector<HealthReport> HealthMonitor::history() const {
  std::lock_guard lock(history_mutex_);
  return {history_.begin(), history_.end()};
}

HealthReport HealthMonitor::last() const {
  std::lock_guard lock(history_mutex_);
  return history_.empty() ? HealthReport{} : history_.back();
}

}  // namespace gpubridge::server
