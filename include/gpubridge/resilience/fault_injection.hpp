#pragma once
// Fault injection: make chosen (backend, kernel) calls fail, hang or run slow, switchable at run
// time, to exercise breakers, retries and fallbacks. Rules are written as text, e.g.
//   "backend=opencl,kernel=vector.add,mode=fail"
//   "backend=cuda,kernel=*,mode=slow,delay_ms=50,probability=0.1"
// and several rules joined with ';'.
//
// Thread-safety: FaultInjector is safe to share. match() and injected() are lock-free (match()
// reads an immutable rule table through an atomic pointer); set(), clear(), snapshot(), stall()
// and shutdown() may be called from any thread at any time. set() waits for the match() calls
// already in flight (a few string compares each) before freeing the rules it replaced.
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gpubridge/core/result.hpp"

namespace gpubridge::resilience {

enum class FaultMode : std::uint8_t {
  fail,  // the call fails (the caller reports unavailable)
  hang,  // the call blocks for `delay`, or until the rule is removed or the injector shut down
  slow,  // the call runs, `delay` later
};

std::string_view to_string(FaultMode mode) noexcept;  // "fail", "hang", "slow"

struct FaultSpec {
  std::string backend = "*";  // "cpu" | "cuda" | "opencl" | "*"
  std::string kernel = "*";   // catalog id or "*"
  FaultMode mode = FaultMode::fail;
  std::chrono::milliseconds delay{0};  // slow: added latency (> 0); hang: duration, 0 = until cleared
  double probability = 1.0;            // chance that a matching call gets the fault, in [0, 1]

  bool operator==(const FaultSpec&) const = default;
};

// Parses "key=value,..." with keys backend, kernel, mode, delay_ms, probability (spaces around
// keys and values ignored). Errors (invalid_argument) name the offending key or value: unknown or
// repeated keys, unknown backend or mode, a delay that is negative, not an integer, given for
// mode=fail or missing for mode=slow, a probability outside [0, 1].
Result<FaultSpec> parse_fault_spec(std::string_view text);
// Several specs separated by ';' (empty pieces ignored; an all-empty text gives no specs).
Result<std::vector<FaultSpec>> parse_fault_specs(std::string_view text);
// The canonical text form; parse_fault_spec(to_string(s)) == s.
std::string to_string(const FaultSpec& spec);

class FaultInjector {
 public:
  FaultInjector();
  ~FaultInjector();  // calls shutdown()
  FaultInjector(const FaultInjector&) = delete;
  FaultInjector& operator=(const FaultInjector&) = delete;

  // Replaces the rules (hit counts restart at 0) and wakes stalls whose rule is gone.
  void set(std::vector<FaultSpec> specs);
  void clear();  // set({})

  // The first rule, in order, whose backend and kernel match (exactly or "*") and whose
  // probability draw succeeds; its hit count and injected() are incremented. nullopt otherwise.
  std::optional<FaultSpec> match(std::string_view backend, std::string_view kernel) noexcept;
  // Whether any rule is set: a hot path may skip match() (two shared counter updates) when not.
  // A rule set meanwhile applies from the caller's next look, as if it had been set a moment later.
  bool armed() const noexcept { return rules_.load(std::memory_order_relaxed) != 0; }

  // Carries out the waiting part of a matched fault on the calling thread: slow sleeps `delay`;
  // hang blocks until no current rule equals `spec` (set()/clear() removed it), or for at most
  // `delay` when that is non-zero; fail returns at once. Returns at once after shutdown().
  void stall(const FaultSpec& spec);
  // Releases every stall() now and makes later ones return at once. Rules keep matching.
  void shutdown();

  std::uint64_t injected() const noexcept { return injected_.load(std::memory_order_relaxed); }
  // The current rules, in order, with the faults each injected since set().
  std::vector<std::pair<FaultSpec, std::uint64_t>> snapshot() const;

 private:
  struct Table;      // an immutable list of rules with their hit counters
  class ReadGuard;   // keeps the table it read alive (see fault_injection.cpp)
  struct alignas(64) ReaderCount {
    std::atomic<std::uint64_t> value{0};
  };
  bool has_rule(const FaultSpec& spec) const;

  // Readers (match, snapshot, stall) load table_ lock-free inside a ReadGuard; set() swaps in a
  // new table and frees the old one once the readers that may hold it have left (two reader
  // counters alternate by epoch, so new readers never delay the wait).
  std::atomic<const Table*> table_;
  std::atomic<std::uint64_t> epoch_{0};
  std::atomic<std::size_t> rules_{0};  // rules in table_ (see armed())
  mutable std::array<ReaderCount, 2> readers_{};
  std::mutex write_mutex_;  // serialises set()
  std::atomic<std::uint64_t> injected_{0};
  std::mutex stall_mutex_;
  std::condition_variable stall_changed_;
  bool shut_down_ = false;  // guarded by stall_mutex_
};

}  // namespace gpubridge::resilience
