// gpubridge verify [--backend B] [--kernel ID] [--json]: every catalog kernel on every available
// backend against the CPU implementation. Exit codes: 0 all pass, 1 a mismatch or error,
// 2 bad arguments (unknown kernel or backend), 3 nothing could be verified on the requested backend.
#include <iomanip>
#include <iostream>

#include <nlohmann/json.hpp>

#include "gpubridge/compute/verify.hpp"
#include "server/commands.hpp"

namespace gpubridge::server {

namespace {

struct VerifyArgs {
  std::string backend;
  std::string kernel;
  bool json = false;
};

int run_verify(const VerifyArgs& args) {
  compute::VerifyOptions options;
  if (!args.backend.empty() && args.backend != "all") {
    auto b = compute::parse_backend(args.backend);
    if (!b) {
      std::cerr << "gpubridge verify: unknown backend '" << args.backend << "' (use cpu, cuda, opencl or all)\n";
      return 2;
    }
    options.backend = *b;
  }
  if (!args.kernel.empty()) options.kernel = args.kernel;

  auto executor = compute::Executor::create();
  if (!executor) {
    std::cerr << "gpubridge verify: " << executor.error().to_string() << "\n";
    return 1;
  }
  auto report = compute::verify_catalog(**executor, options);
  if (!report) {
    std::cerr << "gpubridge verify: " << report.error().message() << "\n";
    return report.error().code() == ErrorCode::not_found ? 2 : 1;
  }

  if (args.json) {
    nlohmann::json out{{"results", nlohmann::json::array()}};
    for (const auto& r : report->rows) {
      out["results"].push_back({{"kernel", r.kernel},
                                {"dtype", compute::to_string(r.dtype)},
                                {"backend", r.backend},
                                {"device", r.device},
                                {"n", r.n},
                                {"status", compute::to_string(r.status)},
                                {"max_abs_error", r.max_abs_error},
                                {"tolerance", r.tolerance},
                                {"reason", r.reason}});
    }
    out["summary"] = {{"passed", report->passed()}, {"failed", report->failed()}, {"skipped", report->skipped()}};
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << std::left << std::setw(18) << "kernel" << std::setw(6) << "dtype" << std::setw(8) << "backend"
              << std::setw(10) << "n" << std::setw(9) << "status" << std::setw(13) << "max_abs_err"
              << "device / reason\n";
    for (const auto& r : report->rows) {
      std::ostringstream err;
      err << std::scientific << std::setprecision(2) << r.max_abs_error;
      std::cout << std::left << std::setw(18) << r.kernel << std::setw(6) << compute::to_string(r.dtype) << std::setw(8)
                << r.backend << std::setw(10) << r.n << std::setw(9) << compute::to_string(r.status) << std::setw(13)
                << (r.status == compute::VerifyStatus::skipped ? "-" : err.str())
                << (r.reason.empty() ? r.device : r.device + (r.device.empty() ? "" : ": ") + r.reason) << "\n";
    }
    std::cout << report->passed() << " passed, " << report->failed() << " failed, " << report->skipped()
              << " skipped\n";
  }
  if (report->failed() > 0) return 1;
  if (options.backend && report->passed() == 0) {
    std::cerr << "gpubridge verify: nothing could be verified on backend " << args.backend << "\n";
    return 3;
  }
  return 0;
}

}  // namespace

void add_verify_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("verify", "Check every catalog kernel on every backend against the CPU implementation");
  auto args = std::make_shared<VerifyArgs>();
  cmd->add_option("--backend", args->backend, "Only this backend: cpu, cuda, opencl (default: all)");
  cmd->add_option("--kernel", args->kernel, "Only this kernel id, e.g. vector.add");
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->callback([args, &exit_code] { exit_code = run_verify(*args); });
}

}  // namespace gpubridge::server
