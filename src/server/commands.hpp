#pragma once
// Subcommands of the gpubridge program. Each registers itself on the CLI11 app and returns the
// process exit code through `exit_code` when it ran.
#include <CLI/CLI.hpp>

namespace gpubridge::server {

void add_devices_command(CLI::App& app, int& exit_code);
void add_verify_command(CLI::App& app, int& exit_code);
void add_run_command(CLI::App& app, int& exit_code);
void add_serve_command(CLI::App& app, int& exit_code);
void add_sample_commands(CLI::App& app, int& exit_code);  // sample, compare

}  // namespace gpubridge::server
