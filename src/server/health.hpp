#pragma once
// Health checks of a silo: device availability, memory pool pressure, a kernel smoke test per
// device (cached for a few seconds) and circuit breakers. Results use the "pass" / "warn" / "fail"
// vocabulary: warn is degraded but serving (e.g. running on the CPU because the asked-for GPU is
// absent); fail means not ready.
//
// Checks of other parts a silo hosts (e.g. a ring server) are added with add_check().
//
// Thread-safe: evaluate() may run from several threads (HTTP handlers, the sampler); smoke tests
// run at most once per cache period, whoever asks first.
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "gpubridge/compute/executor.hpp"

namespace gpubridge::grains {
class RingHost;
}

namespace gpubridge::server {

enum class HealthStatus : std::uint8_t { pass, warn, fail };
std::string_view to_string(HealthStatus s) noexcept;

struct HealthCheck {
  std::string name;  // "devices", "memory_pools", "kernel_smoke:opencl:0", "breakers"
  HealthStatus status = HealthStatus::pass;
  std::chrono::nanoseconds duration{0};
  std::string detail;
  std::chrono::system_clock::time_point checked_at;
};

struct HealthReport {
  HealthStatus status = HealthStatus::pass;  // the worst check
  std::vector<HealthCheck> checks;
  std::chrono::system_clock::time_point at;
};

// A check beyond the built-in ones: sets status and detail of the check it is given (named and
// timed by the monitor). Runs on the evaluating thread; it must return promptly.
using HealthCheckFn = std::function<void(HealthCheck&)>;

// Pass while the ring's server serves (its heartbeat moves within `window`); fail with the reason
// when it is dead (stopped heartbeat, a CUDA kernel that died) or stopped. Waits up to `window`
// only when the heartbeat stands still. The host must outlive the check.
HealthCheckFn ring_health_check(const grains::RingHost& host, std::chrono::milliseconds window);

struct HealthOptions {
  std::string requested_backend = "auto";  // what the silo's GPU grains ask for
  std::chrono::seconds smoke_cache{5};
  std::chrono::milliseconds smoke_timeout{2000};
  double pool_warn_ratio = 0.90;  // device pool bytes in use / capacity
  double pool_fail_ratio = 0.98;
  std::uint64_t device_pool_limit_bytes = 0;  // the configured cap (0: the device's memory)
  std::size_t history = 60;                   // reports kept for the dashboard
};

class HealthMonitor {
 public:
  HealthMonitor(compute::Executor& executor, HealthOptions options);

  // Runs every check (smoke tests from cache when fresh) and records the report in the history.
  HealthReport evaluate();
  // The last `history` reports, oldest first.
  std::vector<HealthReport> history() const;
  // The last report without running checks (empty report with status pass before the first).
  HealthReport last() const;
  // Adds a check that every later evaluate() runs after the built-in ones, as "name".
  void add_check(std::string name, HealthCheckFn check);

 private:
  HealthCheck check_devices() const;
  HealthCheck check_memory() const;
  HealthCheck check_breakers() const;
  std::vector<HealthCheck> smoke_tests();
  HealthCheck smoke_test(const compute::Device& device) const;

  compute::Executor& executor_;
  HealthOptions options_;
  std::mutex smoke_mutex_;
  std::vector<HealthCheck> smoke_cache_;
  std::chrono::steady_clock::time_point smoke_at_{};
  mutable std::mutex history_mutex_;
  std::deque<HealthReport> history_;
  mutable std::mutex extra_mutex_;
  std::vector<std::pair<std::string, HealthCheckFn>> extra_checks_;
};

}  // namespace gpubridge::server
