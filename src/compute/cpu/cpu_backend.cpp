// The CPU backend: one device ("cpu:0") backed by a thread pool. Every catalog kernel has a
// CPU implementation, so can_run() always succeeds.
#include <fstream>
#include <memory>
#include <string>
#include <unistd.h>

#include "compute/backend.hpp"
#include "compute/cpu/thread_pool.hpp"

namespace gpubridge::compute {

namespace {

// Calls with at most this many input elements in total run on the submitting thread: a pool
// hop would cost more than the work.
constexpr std::size_t kInlineElements = 1 << 14;

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "CPU";
}

std::optional<std::uint64_t> mem_available_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  std::uint64_t kib = 0;
  std::string unit;
  while (f >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return std::nullopt;
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(unsigned threads) : pool_(threads) {
    device_.id = "cpu:0";
    device_.backend = BackendKind::cpu;
    device_.name = cpu_model_name();
    device_.vendor = "host";
    device_.driver = "native C++ (thread pool of " + std::to_string(pool_.size()) + ")";
    device_.memory_total_bytes =
        static_cast<std::uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<std::uint64_t>(sysconf(_SC_PAGE_SIZE));
    device_.compute_units = pool_.size();
    device_.caps = {.fp64 = true, .host_mapped_memory = true, .host_native_atomics = true, .peer_access = false};
  }

  BackendKind kind() const override { return BackendKind::cpu; }

  BackendStatus status() const override {
    Device d = device_;
    d.memory_free_bytes = mem_available_bytes();
    return {BackendKind::cpu, true, {}, {d}};
  }

  Status can_run(int ordinal, const KernelDef&, DType) const override {
    if (ordinal != 0) return Error(ErrorCode::failed_precondition, "no CPU device " + std::to_string(ordinal));
    return {};
  }

  void execute(int, std::shared_ptr<const PreparedCall> call, BackendCompletion done) override {
    if (call->n * call->inputs.size() <= kInlineElements) {
      done(run(*call));
      return;
    }
    pool_.post([this, call = std::move(call), done = std::move(done)] { done(run(*call)); });
  }

 private:
  Result<Tensor> run(const PreparedCall& call) {
    try {
      Tensor out = Tensor::uninitialized(call.dtype, call.output_count);
      std::vector<const void*> inputs;
      inputs.reserve(call.inputs.size());
      for (const auto& v : call.inputs) inputs.push_back(v.data);
      CpuKernelArgs args{call.dtype, call.n, inputs, call.scalars, out.data(), pool_};
      if (Status s = call.def->cpu(args); !s) return s.error();
      return out;
    } catch (const std::bad_alloc&) {
      return Error(ErrorCode::resource_exhausted, "out of host memory running " + call.def->id);
    } catch (const std::exception& e) {
      return Error(ErrorCode::internal, std::string("CPU kernel ") + call.def->id + " threw: " + e.what());
    }
  }

  ThreadPool pool_;
  Device device_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const BackendOptions& options) {
  return std::make_unique<CpuBackend>(options.cpu_threads);
}

}  // namespace gpubridge::compute
