// gpubridge serve [--config F] [--set key=value]...
//
// Starts one silo and serves until SIGINT or SIGTERM: grains are hosted, the HTTP endpoints
// (metrics, health, dashboard) answer, and a signal stops the silo cleanly (calls in flight finish
// or fail with a clear error) before the process exits 0.
#include <csignal>
#include <iostream>
#include <pthread.h>

#include "gpubridge/server/silo.hpp"
#include "server/commands.hpp"

namespace gpubridge::server {

namespace {

struct ServeArgs {
  std::string config;
  std::vector<std::string> overrides;
};

int serve(const ServeArgs& args) {
  auto config = load_silo_config(args.config, args.overrides);
  if (!config) {
    std::cerr << "gpubridge serve: " << config.error().message() << "\n";
    return 2;
  }
  // Block the stop signals in every thread the silo starts; this thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto started = Silo::start(*config);
  if (!started) {
    std::cerr << "gpubridge serve: " << started.error().to_string() << "\n";
    return 1;
  }
  Silo& silo = **started;
  std::cout << "silo '" << config->name << "': " << silo.runtime().worker_count() << " grain workers\n";
  if (auto url = silo.http_url()) std::cout << "http: listening on " << *url << "\n";
  std::cout << "serving until SIGINT or SIGTERM" << std::endl;

  int signal = 0;
  sigwait(&stop_signals, &signal);
  std::cout << "received " << (signal == SIGINT ? "SIGINT" : "SIGTERM") << ", stopping" << std::endl;
  silo.stop();
  std::cout << "stopped" << std::endl;
  return 0;
}

}  // namespace

void add_serve_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("serve", "Start a silo and serve until SIGINT or SIGTERM");
  auto args = std::make_shared<ServeArgs>();
  cmd->add_option("--config", args->config, "Silo configuration file (JSON)");
  cmd->add_option("--set", args->overrides, "Configuration override key=value (repeatable), e.g. http.port=9090");
  cmd->callback([args, &exit_code] { exit_code = serve(*args); });
}

}  // namespace gpubridge::server
