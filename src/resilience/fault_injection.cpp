#include "gpubridge/resilience/fault_injection.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <system_error>
#include <thread>

#include "gpubridge/resilience/retry.hpp"

namespace gpubridge::resilience {
namespace {

constexpr std::string_view kKeys = "backend, kernel, mode, delay_ms, probability";

std::string_view trim(std::string_view text) noexcept {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

Error spec_error(std::string_view text, const std::string& problem) {
  return Error(ErrorCode::invalid_argument, "invalid fault spec \"" + std::string(text) + "\": " + problem);
}

bool is_kernel_pattern(std::string_view kernel) noexcept {
  if (kernel == "*") return true;
  if (kernel.empty()) return false;
  for (char c : kernel) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool matches(std::string_view pattern, std::string_view value) noexcept {
  return pattern == "*" || pattern == value;
}

// True with the given probability; 0 and 1 are exact (no draw).
bool draw(double probability) noexcept {
  if (probability >= 1.0) return true;
  if (probability <= 0.0) return false;
  const double uniform = static_cast<double>(random_bits() >> 11) * 0x1.0p-53;  // [0, 1)
  return uniform < probability;
}

}  // namespace

std::string_view to_string(FaultMode mode) noexcept {
  switch (mode) {
    case FaultMode::fail: return "fail";
    case FaultMode::hang: return "hang";
    case FaultMode::slow: return "slow";
  }
  return "invalid_fault_mode";
}

Result<FaultSpec> parse_fault_spec(std::string_view text) {
  const std::string_view whole = trim(text);
  if (whole.empty()) return spec_error(text, "empty (expected key=value pairs: " + std::string(kKeys) + ")");

  FaultSpec spec;
  std::array<bool, 5> seen{};  // backend, kernel, mode, delay_ms, probability
  bool delay_given = false;
  std::string_view rest = whole;
  while (true) {
    const std::size_t comma = rest.find(',');
    const std::string_view item = trim(rest.substr(0, comma));
    if (item.empty()) return spec_error(text, "empty entry between commas");
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return spec_error(text, "'" + std::string(item) + "' is not key=value");
    }
    const std::string_view key = trim(item.substr(0, eq));
    const std::string_view value = trim(item.substr(eq + 1));
    const std::string key_s(key), value_s(value);

    std::size_t index = 0;
    if (key == "backend") index = 0;
    else if (key == "kernel") index = 1;
    else if (key == "mode") index = 2;
    else if (key == "delay_ms") index = 3;
    else if (key == "probability") index = 4;
    else return spec_error(text, "unknown key '" + key_s + "' (expected " + std::string(kKeys) + ")");
    if (seen[index]) return spec_error(text, "key '" + key_s + "' given twice");
    seen[index] = true;

    switch (index) {
      case 0:
        if (value != "cpu" && value != "cuda" && value != "opencl" && value != "*") {
          return spec_error(text, "unknown backend '" + value_s + "' (expected cpu, cuda, opencl or *)");
        }
        spec.backend = value_s;
        break;
      case 1:
        if (!is_kernel_pattern(value)) {
          return spec_error(text, "bad kernel '" + value_s +
                                      "' (expected a kernel id such as vector.add, or *)");
        }
        spec.kernel = value_s;
        break;
      case 2:
        if (value == "fail") spec.mode = FaultMode::fail;
        else if (value == "hang") spec.mode = FaultMode::hang;
        else if (value == "slow") spec.mode = FaultMode::slow;
        else return spec_error(text, "unknown mode '" + value_s + "' (expected fail, hang or slow)");
        break;
      case 3: {
        std::int64_t ms = 0;
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ms);
        if (value.empty() || ec != std::errc{} || end != value.data() + value.size()) {
          return spec_error(text, "delay_ms '" + value_s + "' is not an integer number of milliseconds");
        }
        if (ms < 0) return spec_error(text, "delay_ms must not be negative (got " + value_s + ")");
        spec.delay = std::chrono::milliseconds{ms};
        delay_given = true;
        break;
      }
      case 4: {
        double p = 0;
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), p);
        if (value.empty() || ec != std::errc{} || end != value.data() + value.size() || !std::isfinite(p)) {
          return spec_error(text, "probability '" + value_s + "' is not a number");
        }
        if (p < 0.0 || p > 1.0) {
          return spec_error(text, "probability must be within [0, 1] (got " + value_s + ")");
        }
        spec.probability = p;
        break;
      }
      default:
        break;
    }
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }

  if (spec.mode == FaultMode::fail && delay_given) {
    return spec_error(text, "delay_ms does not apply to mode=fail");
  }
  if (spec.mode == FaultMode::slow && spec.delay.count() == 0) {
    return spec_error(text, "mode=slow needs delay_ms greater than 0");
  }
  return spec;
}

Result<std::vector<FaultSpec>> parse_fault_specs(std::string_view text) {
  std::vector<FaultSpec> specs;
  while (true) {
    const std::size_t semicolon = text.find(';');
    const std::string_view piece = text.substr(0, semicolon);
    if (!trim(piece).empty()) {
      Result<FaultSpec> spec = parse_fault_spec(piece);
      if (!spec.ok()) return spec.error();
      specs.push_back(std::move(spec).value());
    }
    if (semicolon == std::string_view::npos) break;
    text.remove_prefix(semicolon + 1);
  }
  return specs;
}

std::string to_string(const FaultSpec& spec) {
  std::string text = "backend=" + spec.backend + ",kernel=" + spec.kernel + ",mode=";
  text += to_string(spec.mode);
  if (spec.mode != FaultMode::fail && spec.delay.count() != 0) {
    text += ",delay_ms=" + std::to_string(spec.delay.count());
  }
  if (spec.probability != 1.0) {
    std::array<char, 32> buffer{};
    const auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size(), spec.probability);
    text += ",probability=";
    text.append(buffer.data(), ec == std::errc{} ? end : buffer.data());
  }
  return text;
}

struct FaultInjector::Table {
  struct Rule {
    FaultSpec spec;
    std::atomic<std::uint64_t> hits{0};
  };
  explicit Table(std::vector<FaultSpec> specs)
      : rules(std::make_unique<Rule[]>(specs.size())), size(specs.size()) {
    for (std::size_t i = 0; i < size; ++i) rules[i].spec = std::move(specs[i]);
  }
  std::unique_ptr<Rule[]> rules;
  std::size_t size;
};

// Registers a reader under the current epoch's counter, then reads the table. A reader that
// registered under epoch e can only hold a table that was current at epoch e; set() bumps the
// epoch after swapping the table and waits for the previous epoch's counter to drain.
class FaultInjector::ReadGuard {
 public:
  explicit ReadGuard(const FaultInjector& injector) noexcept : injector_(injector) {
    for (;;) {
      const std::uint64_t epoch = injector_.epoch_.load(std::memory_order_seq_cst);
      counter_ = &injector_.readers_[epoch & 1].value;
      counter_->fetch_add(1, std::memory_order_seq_cst);
      if (injector_.epoch_.load(std::memory_order_seq_cst) == epoch) break;
      counter_->fetch_sub(1, std::memory_order_release);  // a writer moved on meanwhile; retry
    }
    table_ = injector_.table_.load(std::memory_order_acquire);
  }
  ~ReadGuard() { counter_->fetch_sub(1, std::memory_order_release); }
  ReadGuard(const ReadGuard&) = delete;
  ReadGuard& operator=(const ReadGuard&) = delete;

  const Table& table() const noexcept { return *table_; }

 private:
  const FaultInjector& injector_;
  std::atomic<std::uint64_t>* counter_ = nullptr;
  const Table* table_ = nullptr;
};

FaultInjector::FaultInjector() : table_(new Table({})) {}

FaultInjector::~FaultInjector() {
  shutdown();
  delete table_.load(std::memory_order_acquire);
}

void FaultInjector::set(std::vector<FaultSpec> specs) {
  auto fresh = std::make_unique<const Table>(std::move(specs));
  {
    std::lock_guard write_lock(write_mutex_);
    rules_.store(fresh->size, std::memory_order_relaxed);
    const Table* old = table_.exchange(fresh.release(), std::memory_order_seq_cst);
    const std::uint64_t epoch = epoch_.fetch_add(1, std::memory_order_seq_cst);
    // Readers registered under the old epoch may still hold `old`; later ones see the new table.
    while (readers_[epoch & 1].value.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
    delete old;
  }
  // Taking the mutex orders this notify after any stall() that checked the old table.
  std::lock_guard lock(stall_mutex_);
  stall_changed_.notify_all();
}

void FaultInjector::clear() { set({}); }

std::optional<FaultSpec> FaultInjector::match(std::string_view backend, std::string_view kernel) noexcept {
  const ReadGuard guard(*this);
  const Table& table = guard.table();
  for (std::size_t i = 0; i < table.size; ++i) {
    Table::Rule& rule = table.rules[i];
    if (!matches(rule.spec.backend, backend) || !matches(rule.spec.kernel, kernel)) continue;
    if (!draw(rule.spec.probability)) continue;
    rule.hits.fetch_add(1, std::memory_order_relaxed);
    injected_.fetch_add(1, std::memory_order_relaxed);
    return rule.spec;
  }
  return std::nullopt;
}

bool FaultInjector::has_rule(const FaultSpec& spec) const {
  const ReadGuard guard(*this);
  for (std::size_t i = 0; i < guard.table().size; ++i) {
    if (guard.table().rules[i].spec == spec) return true;
  }
  return false;
}

void FaultInjector::stall(const FaultSpec& spec) {
  std::unique_lock lock(stall_mutex_);
  switch (spec.mode) {
    case FaultMode::fail:
      return;
    case FaultMode::slow:
      stall_changed_.wait_for(lock, spec.delay, [&] { return shut_down_; });
      return;
    case FaultMode::hang: {
      const auto released = [&] { return shut_down_ || !has_rule(spec); };
      if (spec.delay.count() > 0) {
        stall_changed_.wait_for(lock, spec.delay, released);
      } else {
        stall_changed_.wait(lock, released);
      }
      return;
    }
  }
}

void FaultInjector::shutdown() {
  std::lock_guard lock(stall_mutex_);
  shut_down_ = true;
  stall_changed_.notify_all();
}

std::vector<std::pair<FaultSpec, std::uint64_t>> FaultInjector::snapshot() const {
  const ReadGuard guard(*this);
  const Table& table = guard.table();
  std::vector<std::pair<FaultSpec, std::uint64_t>> rules;
  rules.reserve(table.size);
  for (std::size_t i = 0; i < table.size; ++i) {
    rules.emplace_back(table.rules[i].spec, table.rules[i].hits.load(std::memory_order_relaxed));
  }
  return rules;
}

}  // namespace gpubridge::resilience
