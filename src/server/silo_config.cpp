#include "gpubridge/server/silo_config.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "gpubridge/compute/batcher.hpp"

namespace gpubridge::server {

namespace {

using nlohmann::json;

// One configuration key: how to read it from JSON and write it back.
struct Field {
  std::function<Status(SiloConfig&, const json&, const std::string& where)> set;
  std::function<json(const SiloConfig&)> get;
};

Error type_error(const std::string& where, const char* expected, const json& v) {
  return Error(ErrorCode::invalid_argument, where + ": expected " + expected + ", got " + v.dump());
}

template <typename T>
Field unsigned_field(T SiloConfig::*member, std::uint64_t min, std::uint64_t max) {
  return {[=](SiloConfig& c, const json& v, const std::string& where) -> Status {
            if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<std::int64_t>() >= 0)) {
              return type_error(where, "a non-negative integer", v);
            }
            const auto x = v.get<std::uint64_t>();
            if (x < min || x > max) {
              return Error(ErrorCode::out_of_range, where + ": " + std::to_string(x) + " is outside [" +
                                                        std::to_string(min) + ", " + std::to_string(max) + "]");
            }
            c.*member = static_cast<T>(x);
            return {};
          },
          [=](const SiloConfig& c) { return json(c.*member); }};
}

Field bool_field(bool SiloConfig::*member) {
  return {[=](SiloConfig& c, const json& v, const std::string& where) -> Status {
            if (!v.is_boolean()) return type_error(where, "true or false", v);
            c.*member = v.get<bool>();
            return {};
          },
          [=](const SiloConfig& c) { return json(c.*member); }};
}

Field double_field(double SiloConfig::*member, double min, double max) {
  return {[=](SiloConfig& c, const json& v, const std::string& where) -> Status {
            if (!v.is_number()) return type_error(where, "a number", v);
            const double x = v.get<double>();
            if (!(x >= min && x <= max)) {
              return Error(ErrorCode::out_of_range,
                           where + ": " + v.dump() + " is outside [" + json(min).dump() + ", " + json(max).dump() + "]");
            }
            c.*member = x;
            return {};
          },
          [=](const SiloConfig& c) { return json(c.*member); }};
}

// A string that may be empty (meaning "none").
Field optional_string_field(std::string SiloConfig::*member) {
  return {[=](SiloConfig& c, const json& v, const std::string& where) -> Status {
            if (!v.is_string()) return type_error(where, "a string", v);
            c.*member = v.get<std::string>();
            return {};
          },
          [=](const SiloConfig& c) { return json(c.*member); }};
}

Field string_field(std::string SiloConfig::*member, std::vector<std::string> allowed = {}) {
  return {[=](SiloConfig& c, const json& v, const std::string& where) -> Status {
            if (!v.is_string()) return type_error(where, "a string", v);
            const auto s = v.get<std::string>();
            if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), s) == allowed.end()) {
              std::string list;
              for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
              return Error(ErrorCode::invalid_argument, where + ": '" + s + "' is not one of " + list);
            }
            if (s.empty()) return Error(ErrorCode::invalid_argument, where + ": must not be empty");
            c.*member = s;
            return {};
          },
          [=](const SiloConfig& c) { return json(c.*member); }};
}

const std::map<std::string, Field>& fields() {
  constexpr std::uint64_t kU32 = std::numeric_limits<std::uint32_t>::max();
  static const std::map<std::string, Field> f{
      {"silo.name", string_field(&SiloConfig::name)},
      {"silo.workers", unsigned_field(&SiloConfig::workers, 0, 1024)},
      {"compute.backend", string_field(&SiloConfig::backend, {"auto", "cpu", "cuda", "opencl"})},
      {"compute.allow_fallback", bool_field(&SiloConfig::allow_fallback)},
      {"compute.enable_cuda", bool_field(&SiloConfig::enable_cuda)},
      {"compute.enable_opencl", bool_field(&SiloConfig::enable_opencl)},
      {"compute.cpu_threads", unsigned_field(&SiloConfig::cpu_threads, 0, 1024)},
      {"compute.device_pool_limit_bytes",
       unsigned_field(&SiloConfig::device_pool_limit_bytes, 0, std::numeric_limits<std::uint64_t>::max())},
      {"batching.max_batch", unsigned_field(&SiloConfig::max_batch, 1, compute::kMaxBatchSize)},
      {"batching.max_delay_us", unsigned_field(&SiloConfig::max_delay_us, 0, 10'000'000)},
      {"batching.queue_capacity", unsigned_field(&SiloConfig::queue_capacity, 1, compute::kMaxQueueCapacity)},
      {"batching.max_inflight_batches",
       unsigned_field(&SiloConfig::max_inflight_batches, 1, compute::kMaxInflightBatches)},
      {"batching.adaptive", bool_field(&SiloConfig::adaptive)},
      {"batching.latency_target_us", unsigned_field(&SiloConfig::latency_target_us, 1, kU32)},
      {"runtime.collection_age_s", unsigned_field(&SiloConfig::collection_age_s, 1, kU32)},
      {"runtime.collection_period_s", unsigned_field(&SiloConfig::collection_period_s, 1, kU32)},
      {"http.enabled", bool_field(&SiloConfig::http_enabled)},
      {"http.address", string_field(&SiloConfig::http_address)},
      {"http.port", unsigned_field(&SiloConfig::http_port, 0, 65535)},
      {"telemetry.enabled", bool_field(&SiloConfig::telemetry_enabled)},
      {"telemetry.health_smoke_cache_s", unsigned_field(&SiloConfig::health_smoke_cache_s, 0, 3600)},
      {"tracing.enabled", bool_field(&SiloConfig::tracing_enabled)},
      {"tracing.endpoint", string_field(&SiloConfig::tracing_endpoint)},
      {"tracing.sample_ratio", double_field(&SiloConfig::tracing_sample_ratio, 0.0, 1.0)},
      {"resilience.breakers", bool_field(&SiloConfig::breakers_enabled)},
      {"resilience.breaker_failure_threshold", unsigned_field(&SiloConfig::breaker_failure_threshold, 1, 1'000'000)},
      {"resilience.breaker_open_interval_ms", unsigned_field(&SiloConfig::breaker_open_interval_ms, 1, 3'600'000)},
      {"resilience.bulkhead_max_concurrent", unsigned_field(&SiloConfig::bulkhead_max_concurrent, 0, 1'000'000)},
      {"resilience.retry_max_attempts", unsigned_field(&SiloConfig::retry_max_attempts, 1, 10)},
      {"resilience.faults", optional_string_field(&SiloConfig::faults)},
  };
  return f;
}

// ---- rings: an array of objects, each read field by field (unknown keys are errors).

struct RingField {
  std::function<Status(RingHostConfig&, const json&, const std::string& where)> set;
  std::function<json(const RingHostConfig&)> get;
};

Status read_u32(const json& v, const std::string& where, std::uint64_t min, std::uint64_t max, std::uint32_t& out) {
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<std::int64_t>() >= 0)) {
    return type_error(where, "a non-negative integer", v);
  }
  const auto x = v.get<std::uint64_t>();
  if (x < min || x > max) {
    return Error(ErrorCode::out_of_range,
                 where + ": " + std::to_string(x) + " is outside [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  out = static_cast<std::uint32_t>(x);
  return {};
}

RingField ring_u32(std::uint32_t RingHostConfig::*member, std::uint64_t min, std::uint64_t max, bool power_of_two = false,
                   std::uint32_t multiple_of = 1) {
  return {[=](RingHostConfig& r, const json& v, const std::string& where) -> Status {
            std::uint32_t x = 0;
            if (Status s = read_u32(v, where, min, max, x); !s) return s;
            if (power_of_two && (x & (x - 1)) != 0) {
              return Error(ErrorCode::invalid_argument, where + ": " + std::to_string(x) + " is not a power of two");
            }
            if (x % multiple_of != 0) {
              return Error(ErrorCode::invalid_argument,
                           where + ": " + std::to_string(x) + " is not a multiple of " + std::to_string(multiple_of));
            }
            r.*member = x;
            return {};
          },
          [=](const RingHostConfig& r) { return json(r.*member); }};
}

bool is_ring_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
  });
}

RingField ring_string(std::string RingHostConfig::*member, std::vector<std::string> allowed = {}, bool name_syntax = false) {
  return {[=](RingHostConfig& r, const json& v, const std::string& where) -> Status {
            if (!v.is_string()) return type_error(where, "a string", v);
            const auto s = v.get<std::string>();
            if (s.empty()) return Error(ErrorCode::invalid_argument, where + ": must not be empty");
            if (name_syntax && !is_ring_name(s)) {
              return Error(ErrorCode::invalid_argument, where + ": '" + s + "' must be letters, digits, '_' or '-'");
            }
            if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), s) == allowed.end()) {
              std::string list;
              for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
              return Error(ErrorCode::invalid_argument, where + ": '" + s + "' is not one of " + list);
            }
            r.*member = s;
            return {};
          },
          [=](const RingHostConfig& r) { return json(r.*member); }};
}

constexpr std::uint64_t kMaxRingSlots = 1u << 24;
constexpr std::uint64_t kMaxActorsPerType = 1u << 24;

Status set_actor_count(RingHostConfig& r, const std::string& type, const json& v, const std::string& where) {
  if (type.empty()) return Error(ErrorCode::invalid_argument, where + ": actor type name must not be empty");
  std::uint32_t count = 0;
  if (Status s = read_u32(v, where, 1, kMaxActorsPerType, count); !s) return s;
  r.actors[type] = count;
  return {};
}

const std::map<std::string, RingField>& ring_fields() {
  static const std::map<std::string, RingField> f{
      {"name", ring_string(&RingHostConfig::name, {}, true)},
      {"program", ring_string(&RingHostConfig::program)},
      {"placement", ring_string(&RingHostConfig::placement, {"auto", "cpu", "cuda"})},
      {"shards", ring_u32(&RingHostConfig::shards, 1, 64)},
      {"dispatcher_threads", ring_u32(&RingHostConfig::dispatcher_threads, 1, 64)},
      {"request_slots", ring_u32(&RingHostConfig::request_slots, 2, kMaxRingSlots, true)},
      {"completion_slots", ring_u32(&RingHostConfig::completion_slots, 2, kMaxRingSlots, true)},
      {"pool_chunk_bytes", ring_u32(&RingHostConfig::pool_chunk_bytes, 64, 1u << 24, false, 64)},
      {"pool_chunks", ring_u32(&RingHostConfig::pool_chunks, 0, 1u << 20)},
      {"cuda_device", ring_u32(&RingHostConfig::cuda_device, 0, 1023)},
      {"dead_after_ms", ring_u32(&RingHostConfig::dead_after_ms, 1, 3'600'000)},
      {"internal_queue_slots", ring_u32(&RingHostConfig::internal_queue_slots, 1, 1u << 20)},
      {"max_hops", ring_u32(&RingHostConfig::max_hops, 1, 1u << 20)},
      {"actors",
       {[](RingHostConfig& r, const json& v, const std::string& where) -> Status {
          if (!v.is_object()) return type_error(where, "an object of actor type name -> count", v);
          r.actors.clear();
          for (auto it = v.begin(); it != v.end(); ++it) {
            if (Status s = set_actor_count(r, it.key(), it.value(), where + "." + it.key()); !s) return s;
          }
          return {};
        },
        [](const RingHostConfig& r) {
          json out = json::object();
          for (const auto& [type, count] : r.actors) out[type] = count;
          return out;
        }}},
  };
  return f;
}

std::string known_ring_keys() {
  std::string known;
  for (const auto& [k, f] : ring_fields()) known += (known.empty() ? "" : ", ") + k;
  return known;
}

Status apply_ring_field(RingHostConfig& r, const std::string& key, const json& v, const std::string& where) {
  auto it = ring_fields().find(key);
  if (it == ring_fields().end()) {
    return Error(ErrorCode::invalid_argument, where + ": unknown key (known ring keys: " + known_ring_keys() + ")");
  }
  return it->second.set(r, v, where);
}

// Names are unique across the list; a ring has at most one dispatcher thread per shard.
Status check_rings(const std::vector<RingHostConfig>& rings, std::string_view source) {
  for (std::size_t i = 0; i < rings.size(); ++i) {
    if (rings[i].dispatcher_threads > rings[i].shards) {
      return Error(ErrorCode::out_of_range, std::string(source) + ": rings[" + std::to_string(i) +
                                                "].dispatcher_threads: " + std::to_string(rings[i].dispatcher_threads) +
                                                " is more than the ring's shards (" +
                                                std::to_string(rings[i].shards) + ")");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (rings[i].name == rings[j].name) {
        return Error(ErrorCode::invalid_argument, std::string(source) + ": rings: ring name '" + rings[i].name +
                                                      "' is used twice (rings[" + std::to_string(j) + "] and rings[" +
                                                      std::to_string(i) + "])");
      }
    }
  }
  return {};
}

Status apply_rings(SiloConfig& c, const json& v, std::string_view source) {
  const std::string where = std::string(source) + ": rings";
  if (!v.is_array()) return type_error(where, "an array of ring objects", v);
  std::vector<RingHostConfig> rings;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const std::string at = where + "[" + std::to_string(i) + "]";
    const json& entry = v[i];
    if (!entry.is_object()) return type_error(at, "an object", entry);
    RingHostConfig r;
    for (auto it = entry.begin(); it != entry.end(); ++it) {
      if (Status s = apply_ring_field(r, it.key(), it.value(), at + "." + it.key()); !s) return s;
    }
    if (r.name.empty()) return Error(ErrorCode::invalid_argument, at + ": \"name\" is required");
    if (r.program.empty()) return Error(ErrorCode::invalid_argument, at + " ('" + r.name + "'): \"program\" is required");
    rings.push_back(std::move(r));
  }
  if (Status s = check_rings(rings, source); !s) return s;
  c.rings = std::move(rings);
  return {};
}

// "rings.<name>.<key>" or "rings.<name>.actors.<type>": changes one ring of the list.
Status apply_ring_override(SiloConfig& c, const std::string& key, const json& v) {
  const std::string where = "override: " + key;
  const std::string rest = key.substr(std::string("rings.").size());
  const auto dot = rest.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == rest.size()) {
    return Error(ErrorCode::invalid_argument, where + ": expected rings.<name>.<key> (known ring keys: " + known_ring_keys() + ")");
  }
  const std::string name = rest.substr(0, dot);
  const std::string field = rest.substr(dot + 1);
  auto ring = std::find_if(c.rings.begin(), c.rings.end(), [&](const RingHostConfig& r) { return r.name == name; });
  if (ring == c.rings.end()) {
    std::string names;
    for (const auto& r : c.rings) names += (names.empty() ? "" : ", ") + r.name;
    return Error(ErrorCode::not_found,
                 where + ": no ring named '" + name + "' (configured rings: " + (names.empty() ? "none" : names) + ")");
  }
  RingHostConfig changed = *ring;
  if (field.rfind("actors.", 0) == 0) {
    if (Status s = set_actor_count(changed, field.substr(7), v, where); !s) return s;
  } else if (Status s = apply_ring_field(changed, field, v, where); !s) {
    return s;
  }
  std::vector<RingHostConfig> rings = c.rings;
  rings[static_cast<std::size_t>(ring - c.rings.begin())] = std::move(changed);
  if (Status s = check_rings(rings, "override"); !s) return s;
  c.rings = std::move(rings);
  return {};
}

json rings_to_json(const std::vector<RingHostConfig>& rings) {
  json out = json::array();
  for (const auto& r : rings) {
    json entry = json::object();
    for (const auto& [key, field] : ring_fields()) entry[key] = field.get(r);
    out.push_back(std::move(entry));
  }
  return out;
}

// ---- ring_libraries: an array of paths, resolved to absolute paths (see silo_config.hpp).

Result<std::string> resolve_path(const std::string& text, std::string_view base_directory, const std::string& where) {
  std::filesystem::path path(text);
  if (path.is_relative() && !base_directory.empty()) path = std::filesystem::path(base_directory) / path;
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  if (ec) return Error(ErrorCode::invalid_argument, where + ": cannot resolve '" + text + "': " + ec.message());
  return absolute.lexically_normal().string();
}

Status apply_ring_libraries(SiloConfig& c, const json& v, std::string_view source, std::string_view base_directory) {
  const std::string where = std::string(source) + ": ring_libraries";
  if (!v.is_array()) return type_error(where, "an array of shared library paths", v);
  std::vector<std::string> paths;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const std::string at = where + "[" + std::to_string(i) + "]";
    if (!v[i].is_string()) return type_error(at, "a path (string)", v[i]);
    const std::string text = v[i].get<std::string>();
    if (text.empty()) return Error(ErrorCode::invalid_argument, at + ": must not be empty");
    auto path = resolve_path(text, base_directory, at);
    if (!path) return path.error();
    auto same = std::find(paths.begin(), paths.end(), *path);
    if (same != paths.end()) {
      return Error(ErrorCode::invalid_argument, at + ": '" + *path + "' is listed twice (ring_libraries[" +
                                                    std::to_string(same - paths.begin()) + "] and ring_libraries[" +
                                                    std::to_string(i) + "])");
    }
    paths.push_back(std::move(path).value());
  }
  c.ring_libraries = std::move(paths);
  return {};
}

Status apply_value(SiloConfig& c, const std::string& key, const json& v, std::string_view source) {
  const std::string where = std::string(source) + ": " + key;
  auto it = fields().find(key);
  if (it == fields().end()) {
    std::string known;
    for (const auto& [k, f] : fields()) known += (known.empty() ? "" : ", ") + k;
    return Error(ErrorCode::invalid_argument, where + ": unknown key (known keys: " + known + ", ring_libraries, rings)");
  }
  return it->second.set(c, v, where);
}

Status apply_object(SiloConfig& c, const json& obj, const std::string& prefix, std::string_view source,
                    std::string_view base_directory) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (key == "rings") {
      if (Status s = apply_rings(c, it.value(), source); !s) return s;
    } else if (key == "ring_libraries") {
      if (Status s = apply_ring_libraries(c, it.value(), source, base_directory); !s) return s;
    } else if (it.value().is_object()) {
      if (Status s = apply_object(c, it.value(), key, source, base_directory); !s) return s;
    } else if (Status s = apply_value(c, key, it.value(), source); !s) {
      return s;
    }
  }
  return {};
}

}  // namespace

Status apply_json(SiloConfig& config, std::string_view json_text, std::string_view source,
                  std::string_view base_directory) {
  json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Error(ErrorCode::invalid_argument, std::string(source) + ": not valid JSON");
  if (!doc.is_object()) return Error(ErrorCode::invalid_argument, std::string(source) + ": expected a JSON object");
  SiloConfig candidate = config;  // all or nothing
  if (Status s = apply_object(candidate, doc, "", source, base_directory); !s) return s;
  config = std::move(candidate);
  return {};
}

Status apply_override(SiloConfig& config, std::string_view assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return Error(ErrorCode::invalid_argument,
                 "override '" + std::string(assignment) + "': expected key=value, e.g. batching.max_batch=4096");
  }
  const std::string key(assignment.substr(0, eq));
  const std::string text(assignment.substr(eq + 1));
  if (key == "rings") {
    json rings = json::parse(text, nullptr, false);
    if (rings.is_discarded()) {
      return Error(ErrorCode::invalid_argument, "override: rings: expected a JSON array of ring objects, got '" + text + "'");
    }
    SiloConfig candidate = config;
    if (Status s = apply_rings(candidate, rings, "override"); !s) return s;
    config = std::move(candidate);
    return {};
  }
  if (key == "ring_libraries") {  // relative paths: against the current directory
    json paths = json::parse(text, nullptr, false);
    if (paths.is_discarded()) {
      return Error(ErrorCode::invalid_argument,
                   "override: ring_libraries: expected a JSON array of shared library paths, got '" + text + "'");
    }
    SiloConfig candidate = config;
    if (Status s = apply_ring_libraries(candidate, paths, "override", {}); !s) return s;
    config = std::move(candidate);
    return {};
  }
  // Values are JSON scalars; a bare word that is not JSON is taken as a string.
  json v = json::parse(text, nullptr, false);
  if (key.rfind("rings.", 0) == 0) {  // a ring's "actors" may be given as a JSON object
    if (v.is_discarded() || v.is_array()) v = text;
    return apply_ring_override(config, key, v);
  }
  if (v.is_discarded() || v.is_object() || v.is_array()) v = text;
  return apply_value(config, key, v, "override");
}

Result<SiloConfig> load_silo_config(const std::string& path, const std::vector<std::string>& overrides) {
  SiloConfig config;
  config.http_enabled = true;
  if (!path.empty()) {
    std::ifstream f(path);
    if (!f) return Error(ErrorCode::not_found, "cannot read configuration file '" + path + "'");
    std::stringstream text;
    text << f.rdbuf();
    // Relative paths in the file are resolved against its directory.
    std::filesystem::path directory = std::filesystem::path(path).parent_path();
    if (directory.empty()) directory = ".";
    if (Status s = apply_json(config, text.str(), path, directory.string()); !s) return s.error();
  }
  for (const auto& o : overrides) {
    if (Status s = apply_override(config, o); !s) return s.error();
  }
  return config;
}

std::string to_json(const SiloConfig& config) {
  json out = json::object();
  for (const auto& [key, field] : fields()) {
    const auto dot = key.find('.');
    out[key.substr(0, dot)][key.substr(dot + 1)] = field.get(config);
  }
  out["rings"] = rings_to_json(config.rings);
  out["ring_libraries"] = config.ring_libraries;
  return out.dump(2);
}

}  // namespace gpubridge::server
