// gpubridge sample NAME [options] [--backend B]     one sample, where asked (auto: the best device)
// gpubridge compare NAME [options] [--repeat R]     the sample on every available backend, timed
//
// Exit codes: 0 success; 1 the sample failed (device error, result check failed, output not
// written); 2 bad arguments or input (nothing is written).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "gpubridge/samples/sample.hpp"
#include "gpubridge/server/silo.hpp"
#include "server/commands.hpp"

namespace gpubridge::server {

namespace {

int exit_code_for(const Error& e) {
  return e.code() == ErrorCode::invalid_argument || e.code() == ErrorCode::not_found ||
                 e.code() == ErrorCode::out_of_range || e.code() == ErrorCode::unimplemented
             ? 2
             : 1;
}

Result<std::unique_ptr<Silo>> start_sample_silo() {
  SiloConfig config;
  config.name = "samples";
  return Silo::start(config);
}

int run_one(samples::SampleDef& def, const std::string& backend) {
  const auto choice = compute::parse_backend_choice(backend);
  if (!choice) {
    std::cerr << "gpubridge sample: --backend must be auto, cpu, cuda or opencl (got '" << backend << "')\n";
    return 2;
  }
  auto silo = start_sample_silo();
  if (!silo) {
    std::cerr << "gpubridge sample: " << silo.error().to_string() << "\n";
    return 1;
  }
  samples::SampleRun run;
  run.placement.backend = *choice;
  auto result = def.run(**silo, run);
  if (!result) {
    std::cerr << "gpubridge sample " << def.name << ": " << result.error().to_string() << "\n";
    return exit_code_for(result.error());
  }
  std::printf("%s on %s (%s): kernels %.3f ms, total %.3f ms\n", def.name.c_str(), result->device.c_str(),
              result->device_name.c_str(), result->kernel_seconds * 1e3, result->total_seconds * 1e3);
  std::printf("  placement: asked %s; %s\n", backend.c_str(),
              result->fallback.empty() ? "no fallback" : ("fell back: " + result->fallback).c_str());
  if (!result->check.empty()) std::printf("  check: %s\n", result->check.c_str());
  if (!result->output.empty()) std::printf("  output: %s\n", result->output.c_str());
  return 0;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int compare(samples::SampleDef& def, int repeat) {
  if (repeat < 1 || repeat > 100) {
    std::cerr << "gpubridge compare: --repeat must be between 1 and 100\n";
    return 2;
  }
  auto silo = start_sample_silo();
  if (!silo) {
    std::cerr << "gpubridge compare: " << silo.error().to_string() << "\n";
    return 1;
  }
  std::printf("compare %s: every available backend, no fallback, median of %d runs\n", def.name.c_str(), repeat);
  std::printf("%-8s %-44s %12s %12s %16s  %s\n", "backend", "device", "kernel ms", "total ms", "max |diff| vs cpu",
              "check");
  std::vector<double> reference;
  int exit_code = 0;
  for (const auto& status : (*silo)->executor().backends()) {
    const std::string backend(compute::to_string(status.kind));
    if (!status.available || status.devices.empty()) {
      std::printf("%-8s absent: %s\n", backend.c_str(), status.reason.c_str());
      continue;
    }
    samples::SampleRun run;
    run.placement.backend = *compute::parse_backend_choice(backend);
    run.placement.allow_fallback = false;
    run.write_output = false;
    std::vector<double> kernel, total;
    Result<samples::SampleResult> last = Error(ErrorCode::unknown, "not run");
    for (int i = 0; i < repeat; ++i) {
      last = def.run(**silo, run);
      if (!last) break;
      kernel.push_back(last->kernel_seconds);
      total.push_back(last->total_seconds);
    }
    if (!last) {
      std::printf("%-8s failed: %s\n", backend.c_str(), last.error().to_string().c_str());
      exit_code = exit_code_for(last.error()) == 2 ? 2 : 1;
      continue;
    }
    std::string diff = "-";
    if (reference.empty()) {
      reference = last->values;
      diff = "(reference)";
    } else if (reference.size() != last->values.size()) {
      diff = "size differs";
      exit_code = 1;
    } else {
      double d = 0;
      for (std::size_t i = 0; i < reference.size(); ++i) d = std::max(d, std::abs(reference[i] - last->values[i]));
      char text[32];
      std::snprintf(text, sizeof text, "%.3g", d);
      diff = text;
    }
    const std::string device = last->device + " (" + last->device_name + ")";
    std::printf("%-8s %-44.44s %12.3f %12.3f %16s  %s\n", backend.c_str(), device.c_str(), median(kernel) * 1e3,
                median(total) * 1e3, diff.c_str(), last->check.c_str());
  }
  return exit_code;
}

}  // namespace

void add_sample_commands(CLI::App& app, int& exit_code) {
  auto* sample = app.add_subcommand("sample", "Run a sample on real or generated data (see docs/tutorials)");
  auto* cmp = app.add_subcommand("compare", "Run a sample on every available backend and print a timing table");
  sample->require_subcommand(1);
  cmp->require_subcommand(1);
  for (auto& def : samples::all_samples()) {
    auto* s = sample->add_subcommand(def->name, def->help);
    def->add_options(*s);
    auto backend = std::make_shared<std::string>("auto");
    s->add_option("--backend", *backend, "auto (default), cpu, cuda or opencl");
    s->callback([def, backend, &exit_code] { exit_code = run_one(*def, *backend); });

    // compare gets its own definition (its options are bound to the definition's state).
    std::shared_ptr<samples::SampleDef> compared;
    for (auto& d : samples::all_samples()) {
      if (d->name == def->name) compared = d;
    }
    auto* c = cmp->add_subcommand(def->name, def->help);
    compared->add_options(*c);
    auto repeat = std::make_shared<int>(3);
    c->add_option("--repeat", *repeat, "Runs per backend; the table shows the median (default 3)");
    c->callback([compared, repeat, &exit_code] { exit_code = compare(*compared, *repeat); });
  }
}

}  // namespace gpubridge::server
