// gpubridge: the command-line entry point.
#include <cstdlib>
#include <iostream>

#include "server/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"GpuBridge: GPU-accelerated virtual actors with an honest CPU fallback"};
  app.require_subcommand(1);
  int exit_code = 0;
  gpubridge::server::add_devices_command(app, exit_code);
  gpubridge::server::add_verify_command(app, exit_code);
  gpubridge::server::add_run_command(app, exit_code);
  gpubridge::server::add_serve_command(app, exit_code);
  gpubridge::server::add_sample_commands(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "gpubridge: " << e.what() << "\n";
    return 1;
  }
  return exit_code;
}
