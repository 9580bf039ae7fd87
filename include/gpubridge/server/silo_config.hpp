#pragma once
// Silo configuration: defaults, then a JSON file, then command-line overrides ("key=value" with
// dotted keys, e.g. "batching.max_batch=4096"). Unknown keys, wrong types and out-of-range values
// are errors naming the key and its source; nothing is silently ignored.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gpubridge/core/result.hpp"

namespace gpubridge::server {

struct SiloConfig {
  std::string name = "silo";
  unsigned workers = 0;  // grain scheduler threads; 0: hardware concurrency

  // compute
  std::string backend = "auto";  // auto, cpu, cuda, opencl: where GPU grains run
  bool allow_fallback = true;
  bool enable_cuda = true;
  bool enable_opencl = true;
  unsigned cpu_threads = 0;
  std::uint64_t device_pool_limit_bytes = 0;

  // batching (GPU batch grains)
  std::size_t max_batch = 1024;
  std::uint32_t max_delay_us = 200;
  std::size_t queue_capacity = 1 << 16;
  bool adaptive = false;
  std::uint32_t latency_target_us = 2000;

  // activation collection
  std::uint32_t collection_age_s = 600;
  std::uint32_t collection_period_s = 60;
};

// Reads the JSON file (empty path: defaults only) and applies the overrides in order.
Result<SiloConfig> load_silo_config(const std::string& path, const std::vector<std::string>& overrides);
// Applies one JSON object (as text) to `config`; `source` names it in errors.
Status apply_json(SiloConfig& config, std::string_view json_text, std::string_view source);
// Applies one "key=value" override.
Status apply_override(SiloConfig& config, std::string_view assignment);
// The whole configuration as JSON (for logs and `gpubridge config`).
std::string to_json(const SiloConfig& config);

}  // namespace gpubridge::server
