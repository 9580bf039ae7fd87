// gpubridge devices [--json]: every backend, its devices, or why it is absent.
#include <iomanip>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "gpubridge/compute/executor.hpp"
#include "server/commands.hpp"

namespace gpubridge::server {

namespace {

using compute::BackendStatus;
using compute::Device;

std::string mib(std::uint64_t bytes) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(0) << static_cast<double>(bytes) / (1024.0 * 1024.0) << " MiB";
  return s.str();
}

nlohmann::json device_json(const Device& d) {
  nlohmann::json j{{"id", d.id},
                   {"backend", compute::to_string(d.backend)},
                   {"name", d.name},
                   {"vendor", d.vendor},
                   {"driver", d.driver},
                   {"is_gpu", d.is_gpu},
                   {"memory_total_bytes", d.memory_total_bytes},
                   {"compute_units", d.compute_units},
                   {"capabilities",
                    {{"fp64", d.caps.fp64},
                     {"host_mapped_memory", d.caps.host_mapped_memory},
                     {"host_native_atomics", d.caps.host_native_atomics},
                     {"peer_access", d.caps.peer_access}}}};
  // Absent when the backend cannot tell: never reported as zero.
  j["memory_free_bytes"] = d.memory_free_bytes ? nlohmann::json(*d.memory_free_bytes) : nlohmann::json(nullptr);
  j["pci_bus_id"] = d.pci_bus_id.empty() ? nlohmann::json(nullptr) : nlohmann::json(d.pci_bus_id);
  return j;
}

int run_devices(bool json) {
  auto executor = compute::Executor::create();
  if (!executor) {
    std::cerr << "gpubridge devices: " << executor.error().to_string() << "\n";
    return 1;
  }
  const std::vector<BackendStatus> backends = (*executor)->backends();
  if (json) {
    nlohmann::json out{{"backends", nlohmann::json::array()}};
    for (const auto& b : backends) {
      nlohmann::json jb{{"backend", compute::to_string(b.kind)}, {"available", b.available}, {"devices", nlohmann::json::array()}};
      if (!b.reason.empty()) jb["reason"] = b.reason;
      for (const auto& d : b.devices) jb["devices"].push_back(device_json(d));
      out["backends"].push_back(jb);
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  for (const auto& b : backends) {
    std::cout << compute::to_string(b.kind) << ": ";
    if (!b.available) {
      std::cout << "absent (" << b.reason << ")\n";
      continue;
    }
    std::cout << b.devices.size() << " device(s)";
    if (!b.reason.empty()) std::cout << " (" << b.reason << ")";
    std::cout << "\n";
    for (const auto& d : b.devices) {
      std::cout << "  " << std::left << std::setw(10) << d.id << d.name << (d.is_gpu ? " [gpu]" : "") << "\n"
                << "            " << d.driver << "\n"
                << "            memory " << mib(d.memory_total_bytes) << " total, "
                << (d.memory_free_bytes ? mib(*d.memory_free_bytes) + " free" : std::string("free unknown")) << "; "
                << d.compute_units << " compute units\n"
                << "            fp64 " << (d.caps.fp64 ? "yes" : "no") << ", host-mapped memory "
                << (d.caps.host_mapped_memory ? "yes" : "no") << ", host-native atomics "
                << (d.caps.host_native_atomics ? "yes" : "no") << ", peer access " << (d.caps.peer_access ? "yes" : "no")
                << "\n";
    }
  }
  return 0;
}

}  // namespace

void add_devices_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("devices", "List compute devices per backend, or why a backend is absent");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([json, &exit_code] { exit_code = run_devices(*json); });
}

}  // namespace gpubridge::server
