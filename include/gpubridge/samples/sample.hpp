#pragma once
// Samples: small grain-based programs on real data, each reachable from the command line
// (`gpubridge sample NAME ...`, `gpubridge compare NAME ...`). A sample reads its inputs, calls
// catalog kernels through grains on a silo (KernelGrain: the executor places each call and
// records any fallback), checks or writes its result, and reports where it ran and how long it
// took.
//
// Inputs are validated before anything runs; a bad input is an error naming it and no output
// file is written. Outputs are written whole or not at all (see io.hpp).
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gpubridge/compute/executor.hpp"
#include "gpubridge/core/result.hpp"

namespace CLI {
class App;
}
namespace gpubridge::server {
class Silo;
}

namespace gpubridge::samples {

// What one run of a sample produced.
struct SampleResult {
  std::string device;       // the device that ran the sample's kernels (the last one if several)
  std::string device_name;
  std::string fallback;     // the reason and detail when a kernel ran elsewhere than asked; empty otherwise
  double kernel_seconds = 0;  // kernel calls, submit to completion, as the executor reports them
  double total_seconds = 0;   // the whole computation, input preparation and output writing excluded
  std::vector<double> values; // the primary result, for comparing backends
  std::string check;          // what was verified against the host, e.g. "max |error| 0 over 1048576 elements"
  std::string output;         // the file written, if any
};

// How a run is placed: the backend asked for and whether a fallback is allowed.
struct SampleRun {
  compute::CallOptions placement;
  bool write_output = true;  // false under `compare`: nothing is written
};

// A registered sample: its name, one line of help, its options, and its body. Options are bound
// to state owned by the definition (add_options is called once per CLI subcommand).
struct SampleDef {
  std::string name;
  std::string help;
  std::function<void(CLI::App&)> add_options;
  // Loads and validates inputs (errors: invalid_argument / not_found, nothing written), runs,
  // checks, writes. Must be called from outside the silo's runtime (it blocks).
  std::function<Result<SampleResult>(server::Silo&, const SampleRun&)> run;
};

// Every sample, in the order the CLI lists them.
std::vector<std::shared_ptr<SampleDef>> all_samples();

// Helpers for sample bodies.
// Runs `call` through a KernelGrain on `silo`, blocking; accumulates the report into `result`.
Result<compute::KernelResult> run_kernel(server::Silo& silo, compute::KernelCall call, const compute::CallOptions& placement,
                                         SampleResult& result);

}  // namespace gpubridge::samples
