#pragma once
// Silo configuration: defaults, then a JSON file, then command-line overrides ("key=value" with
// dotted keys, e.g. "batching.max_batch=4096"). Unknown keys, wrong types and out-of-range values
// are errors naming the key and its source; nothing is silently ignored.
//
// Paths (ring_libraries, the only path key): a relative path in a file is resolved against the
// directory of that file; in an override, or in JSON applied without a base directory, against the
// current working directory. They are stored absolute and lexically normalised.
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "gpubridge/core/result.hpp"

namespace gpubridge::server {

// One ring the silo hosts (JSON: an element of the "rings" array). `program` names a ring program
// the embedder registered in code (RingPrograms, gpubridge/server/silo.hpp); the silo checks that
// name when it starts. Geometry is checked here (powers of two, ranges); see RingConfig.
struct RingHostConfig {
  std::string name;                // unique, [A-Za-z0-9_-]+; Silo::ring_host(name)
  std::string program;             // a registered ring program
  std::string placement = "auto";  // auto, cpu, cuda (see grains::RingPlacement)
  std::uint32_t shards = 1;               // ring pairs served in parallel, 1..64 (see RingConfig::shards)
  std::uint32_t dispatcher_threads = 1;   // client threads taking completions, 1..shards
                                          // (see RingClientOptions::dispatcher_threads)
  std::uint32_t request_slots = 1024;     // per shard: power of two, 2..2^24
  std::uint32_t completion_slots = 1024;  // per shard: power of two, 2..2^24
  std::uint32_t pool_chunk_bytes = 4096;  // multiple of 64, 64..2^24
  std::uint32_t pool_chunks = 1024;       // 0..2^20 (0: payloads inline only)
  std::uint32_t cuda_device = 0;          // CUDA device ordinal for placement auto/cuda
  std::uint32_t dead_after_ms = 2000;     // client watchdog and health check window
  std::uint32_t internal_queue_slots = 1024;  // device-side message queue bound per shard, 1..2^20 (either server)
  std::uint32_t max_hops = 64;                // device-side hops per chain, 1..2^20 (either server)
  std::map<std::string, std::uint32_t> actors;  // actor type name -> max actors (others: the program's)
};

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
  std::size_t max_inflight_batches = 4;  // batches of one batcher on its device at once
  bool adaptive = false;
  std::uint32_t latency_target_us = 2000;

  // activation collection
  std::uint32_t collection_age_s = 600;
  std::uint32_t collection_period_s = 60;

  // HTTP: /metrics, /health/live, /health/ready, /health, the dashboard (/) and /api/status.
  // Off for an embedded silo (a library should not open ports unasked); on by default for the
  // gpubridge process (load_silo_config).
  bool http_enabled = false;
  std::string http_address = "127.0.0.1";
  std::uint32_t http_port = 8080;  // 0: any free port (the bound port is printed and queryable)

  // telemetry
  bool telemetry_enabled = true;   // metrics on the hot paths (off: nothing is recorded)
  bool tracing_enabled = false;    // spans exported with OTLP/HTTP JSON
  std::string tracing_endpoint = "http://127.0.0.1:4318/v1/traces";
  double tracing_sample_ratio = 1.0;
  std::uint32_t health_smoke_cache_s = 5;  // how long a kernel smoke test result is reused

  // resilience (per (device, kernel) breakers, per-device bulkheads, retry, fault injection)
  bool breakers_enabled = true;
  std::uint32_t breaker_failure_threshold = 5;
  std::uint32_t breaker_open_interval_ms = 5000;
  std::uint32_t bulkhead_max_concurrent = 0;  // per GPU device; 0: unlimited
  std::uint32_t retry_max_attempts = 2;       // tries per device, the first included
  std::string faults;  // ';'-separated fault specs, e.g. "backend=opencl,kernel=vector.add,mode=fail"

  // Rings of resident actors the silo hosts (empty: none). Overrides: "rings=<JSON array>" replaces
  // the list; "rings.<name>.<key>=value" (and "rings.<name>.actors.<type>=N") changes one ring.
  std::vector<RingHostConfig> rings;

  // Shared libraries of ring programs (JSON: an array of paths; absolute once read, see the header
  // comment). Silo::start loads them before anything starts and adds their programs to the
  // embedder's (gpubridge/server/ring_library.hpp states the ABI). Override: "ring_libraries=<JSON
  // array>" replaces the list. A path listed twice is an error.
  std::vector<std::string> ring_libraries;
};

// The configuration of a gpubridge process: the defaults (SiloConfig{} with http.enabled = true),
// then the JSON file (empty path: none), then the overrides in order.
Result<SiloConfig> load_silo_config(const std::string& path, const std::vector<std::string>& overrides);
// Applies one JSON object (as text) to `config`, all or nothing; `source` names it in errors.
// Relative paths in it are resolved against `base_directory` (empty: the current directory).
Status apply_json(SiloConfig& config, std::string_view json_text, std::string_view source,
                  std::string_view base_directory = {});
// Applies one "key=value" override.
Status apply_override(SiloConfig& config, std::string_view assignment);
// The whole configuration as JSON (for logs and `gpubridge config`).
std::string to_json(const SiloConfig& config);

}  // namespace gpubridge::server
