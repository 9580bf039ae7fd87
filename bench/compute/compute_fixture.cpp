#include "compute/compute_fixture.hpp"

#include <map>
#include <memory>

#include "common/ratio_report.hpp"

namespace gpubridge::bench {

namespace {

using compute::BackendKind;

struct Shared {
  bool created = false;
  std::unique_ptr<compute::Executor> executor;
  std::string create_error;
  std::vector<compute::BackendStatus> backends;
  std::vector<compute::Device> devices;  // best first
  std::map<std::size_t, std::unique_ptr<HostInputs>> inputs;
  std::optional<Result<std::unique_ptr<RawCuda>>> raw_cuda;      // set on first use
  std::optional<Result<std::unique_ptr<RawOpenCl>>> raw_opencl;  // set on first use
};

Shared& shared() {
  static Shared s;
  if (!s.created) {
    s.created = true;
    auto ex = compute::Executor::create();
    if (ex) {
      s.executor = std::move(*ex);
      s.backends = s.executor->backends();
      s.devices = s.executor->devices();
    } else {
      s.create_error = ex.error().to_string();
    }
    // The Executor waits for its calls and releases device memory and contexts: do that while the
    // drivers are still loaded, not during static destruction.
    on_shutdown([] {
      s.raw_cuda.reset();
      s.raw_opencl.reset();
      s.executor.reset();
      s.inputs.clear();
    });
  }
  return s;
}

}  // namespace

compute::KernelCall add_call(const HostInputs& in) {
  return {"vector.add", compute::DType::f32, {compute::TensorView(in.a), compute::TensorView(in.b)}, {}};
}

compute::CallOptions pinned_to(BackendKind backend) { return {to_choice(backend), {}, false}; }

bool catalog_warm_up(benchmark::State& state, compute::Executor& executor, const HostInputs& in, BackendKind backend) {
  auto r = executor.run(add_call(in), pinned_to(backend));
  if (!r) {
    skip(state, "Executor::run", r.error().to_string());
    return false;
  }
  if (r->report.backend != backend) {
    skip(state, "Executor::run", "ran on " + r->report.device_id + ", not on " + std::string(compute::to_string(backend)));
    return false;
  }
  const compute::Tensor& out = r->outputs.front();
  if (out.dtype() != compute::DType::f32 || out.count() != in.a.size()) {
    skip(state, "Executor::run", "unexpected output shape");
    return false;
  }
  if (auto bad = check_sum(out.as<float>().data(), out.count())) {
    skip(state, "Executor::run", *bad);
    return false;
  }
  state.SetLabel(device_label(r->report.device_id).c_str());
  return true;
}

void skip(benchmark::State& state, const std::string& what, const std::string& message) {
  const std::string text = what + ": " + message;
  state.SkipWithError(text.c_str());
}

compute::Executor* executor_for(benchmark::State& state, BackendKind backend) {
  Shared& s = shared();
  if (!s.executor) {
    skip(state, "Executor::create", s.create_error);
    return nullptr;
  }
  for (const auto& b : s.backends) {
    if (b.kind != backend) continue;
    if (b.available && !b.devices.empty()) return s.executor.get();
    const std::string text = "no " + std::string(compute::to_string(backend)) + " device: " + b.reason;
    state.SkipWithError(text.c_str());
    return nullptr;
  }
  const std::string text = "no " + std::string(compute::to_string(backend)) + " device: backend not reported";
  state.SkipWithError(text.c_str());
  return nullptr;
}

RawCuda* raw_cuda_for(benchmark::State& state) {
  if (executor_for(state, BackendKind::cuda) == nullptr) return nullptr;
  Shared& s = shared();
  if (!s.raw_cuda) s.raw_cuda = RawCuda::create(0);
  if (!*s.raw_cuda) {
    skip(state, "raw CUDA setup", s.raw_cuda->error().message());
    return nullptr;
  }
  return s.raw_cuda->value().get();
}

RawOpenCl* raw_opencl_for(benchmark::State& state) {
  if (executor_for(state, BackendKind::opencl) == nullptr) return nullptr;
  Shared& s = shared();
  if (!s.raw_opencl) {
    const auto device = first_device(BackendKind::opencl);
    s.raw_opencl = device ? RawOpenCl::create(device->name)
                          : Result<std::unique_ptr<RawOpenCl>>(Error(ErrorCode::not_found, "no OpenCL device"));
  }
  if (!*s.raw_opencl) {
    skip(state, "raw OpenCL setup", s.raw_opencl->error().message());
    return nullptr;
  }
  return s.raw_opencl->value().get();
}

std::optional<compute::Device> first_device(BackendKind backend) {
  for (const auto& d : shared().devices) {
    if (d.backend == backend) return d;
  }
  return std::nullopt;
}

compute::BackendChoice to_choice(BackendKind backend) {
  switch (backend) {
    case BackendKind::cpu: return compute::BackendChoice::cpu;
    case BackendKind::cuda: return compute::BackendChoice::cuda;
    case BackendKind::opencl: return compute::BackendChoice::opencl;
  }
  return compute::BackendChoice::automatic;
}

std::string device_label(const std::string& device_id) {
  for (const auto& d : shared().devices) {
    if (d.id == device_id) return d.id + " " + d.name;
  }
  return device_id;
}

std::string backend_label(BackendKind backend) {
  const auto d = first_device(backend);
  return d ? d->id + " " + d->name : std::string();
}

float expected_sum(std::size_t i) {
  // Quarter steps below 256 plus integers below 101: every sum is exact in f32.
  return static_cast<float>(i % 1024) * 0.25f + static_cast<float>(i % 101);
}

const HostInputs& host_inputs(std::size_t n) {
  auto& slot = shared().inputs[n];
  if (!slot) {
    slot = std::make_unique<HostInputs>();
    slot->a.resize(n);
    slot->b.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      slot->a[i] = static_cast<float>(i % 1024) * 0.25f;
      slot->b[i] = static_cast<float>(i % 101);
    }
  }
  return *slot;
}

std::optional<std::string> check_sum(const float* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (out[i] != expected_sum(i)) {
      return "wrong result at index " + std::to_string(i) + ": got " + std::to_string(out[i]) + ", expected " +
             std::to_string(expected_sum(i));
    }
  }
  return std::nullopt;
}

}  // namespace gpubridge::bench
