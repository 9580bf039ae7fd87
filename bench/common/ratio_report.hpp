#pragma once
// Runs the registered Google Benchmark benchmarks and reports each benchmark against its reference.
//
// A RatioPair names a subject benchmark family (e.g. "dispatch/cuda/catalog") and its reference
// family (e.g. "dispatch/cuda/raw"); both run in the same process, one after the other. After the
// run a table "subject vs reference" is printed per backend: real time per call of each and the
// ratio subject / reference (> 1: the subject is slower by that factor), or of a named counter
// such as a latency percentile (RatioPair::counter). Pairs whose benchmarks
// called SkipWithError show as skipped with the message (e.g. "no cuda device: ...").
//
// Times are the median over repetitions (--benchmark_repetitions), real (wall-clock) time.
// Standard Google Benchmark flags keep working; run_with_ratio_report() adds:
//   --ratio_out=FILE   also write the table as JSON to FILE
//   --workers=N        (where RunOptions::workers_flag) the grain runtime's worker threads
// The table goes to stdout with the console format and to stderr otherwise, so that
// --benchmark_format=json on stdout stays valid JSON.
//
// Not thread-safe: register and run from main() only.
#include <cstddef>
#include <functional>
#include <string>

namespace gpubridge::bench {

struct RatioPair {
  std::string scenario;   // "dispatch", "dispatch_pipelined", "bandwidth", ...
  std::string backend;    // "cpu", "cuda", "opencl"
  std::string subject;    // benchmark family name, e.g. "dispatch/cpu/catalog"
  std::string reference;  // benchmark family name, e.g. "dispatch/cpu/raw"
  // Calls one benchmark iteration makes (64 for a pipelined burst), to print time per call.
  // Both benchmarks of a pair must make the same number of calls per iteration.
  double calls_per_iteration = 1;
  // When set, the pair compares this user counter of both benchmarks (in microseconds, e.g.
  // "p50_us" of a latency distribution; median over repetitions) instead of time per call.
  std::string counter;
};

// Pairs are matched per argument set: subject "f/256" is compared with reference "g/256".
void register_pair(RatioPair pair);

// Runs after the benchmarks and before static destruction, in reverse order of registration:
// releases shared fixtures (executors, driver contexts) while the drivers are still loaded.
void on_shutdown(std::function<void()> fn);

struct RunOptions {
  // Used as --benchmark_min_time unless the command line sets it, so a full run stays short.
  std::string default_min_time = "0.2";
  // Printed by --help before the runner's and Google Benchmark's flags (the caller's own flags).
  std::string help;
  // Accepts --workers=N (the grain runtime's worker threads; see workers()).
  bool workers_flag = false;
};

// --workers=N of this run (for benchmarks that build a grain runtime): 0 when not given, which
// means the runtime's default (one worker per hardware thread). Valid once run_with_ratio_report
// has parsed the flags, i.e. inside the benchmarks.
std::size_t workers();

// The body of main(): parses flags (exits on --help or unknown flags), runs the benchmarks,
// prints the ratio table, writes --ratio_out, runs the shutdown hooks. Returns the exit code.
int run_with_ratio_report(int argc, char** argv, const RunOptions& options = {});

}  // namespace gpubridge::bench
