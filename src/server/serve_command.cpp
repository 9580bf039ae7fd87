// gpubridge serve [--config F] [--set key=value]...
//
// Starts one silo and serves until SIGINT or SIGTERM: grains are hosted, the HTTP endpoints
// (metrics, health, dashboard) answer, and a signal stops the silo cleanly (calls in flight finish
// or fail with a clear error) before the process exits 0. Rings come from the configuration: their
// programs from the shared libraries it names (ring_libraries; see gpubridge/server/ring_library.hpp),
// since this program registers none in code. Each hosted ring is printed with where it runs.
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <iostream>

#include "gpubridge/server/silo.hpp"
#include "server/commands.hpp"

namespace gpubridge::server {

namespace {

// Stop signals reach the serving thread through a pipe: a thread that exists before main (OpenBLAS
// starts its own at load time) has them unblocked, so the kernel may deliver them there, where a
// plain sigwait in the serving thread would never see them and the default action would kill the
// process. The handler only write()s (async-signal-safe), on whichever thread runs it.
int stop_pipe[2] = {-1, -1};

extern "C" void forward_stop_signal(int signal) {
  const int saved_errno = errno;
  const unsigned char byte = static_cast<unsigned char>(signal);
  [[maybe_unused]] const ssize_t written = ::write(stop_pipe[1], &byte, 1);
  errno = saved_errno;
}

// Installs the forwarding handler for SIGINT and SIGTERM; false (with errno) on failure.
bool install_stop_handler() {
  if (stop_pipe[0] < 0 && ::pipe2(stop_pipe, O_CLOEXEC) != 0) return false;
  struct sigaction action {};
  action.sa_handler = forward_stop_signal;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  return ::sigaction(SIGINT, &action, nullptr) == 0 && ::sigaction(SIGTERM, &action, nullptr) == 0;
}

// Blocks until a stop signal has been forwarded; returns it.
int wait_for_stop_signal() {
  unsigned char byte = 0;
  while (::read(stop_pipe[0], &byte, 1) != 1) {
    if (errno != EINTR) return SIGTERM;  // the pipe broke: treat as a stop request
  }
  return byte;
}

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
  // A stop signal from here on is forwarded to this thread (see forward_stop_signal). The threads
  // the silo starts keep it blocked, so their system calls are never interrupted by it.
  if (!install_stop_handler()) {
    std::cerr << "gpubridge serve: cannot install the SIGINT/SIGTERM handler: " << std::strerror(errno) << "\n";
    return 1;
  }
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
  const std::vector<grains::RingHost*> rings = silo.ring_hosts();
  for (std::size_t i = 0; i < rings.size(); ++i) {
    const grains::RingHostPlacement& placed = rings[i]->placement();
    std::cout << "ring '" << rings[i]->name() << "': program '" << config->rings[i].program << "' on " << placed.device;
    if (placed.fell_back()) std::cout << " (" << placed.fallback_reason << ")";
    std::cout << "\n";
  }
  if (auto url = silo.http_url()) std::cout << "http: listening on " << *url << "\n";
  std::cout << "serving until SIGINT or SIGTERM" << std::endl;

  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);  // a signal held back while starting arrives now
  const int signal = wait_for_stop_signal();
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
