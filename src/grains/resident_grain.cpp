#include "gpubridge/grains/resident_grain.hpp"

namespace gpubridge::grains {

namespace {

using compute::DeviceBuffer;

CompletionAwaiter<DeviceBuffer> upload(GpuServices& services, const compute::Tensor& data) {
  return CompletionAwaiter<DeviceBuffer>([&services, &data](std::function<void(Result<DeviceBuffer>)> done) {
    compute::upload(services.executor(), data.view(), services.placement(), std::move(done));
  });
}

CompletionAwaiter<compute::Tensor> download(GpuServices& services, const DeviceBuffer& buffer) {
  return CompletionAwaiter<compute::Tensor>([&services, &buffer](std::function<void(Result<compute::Tensor>)> done) {
    compute::download(services.executor(), buffer, std::move(done));
  });
}

}  // namespace

runtime::Task<void> ResidentGrain::on_activate() {
  if (auto parked = services_.take_parked_state(id().to_string())) {
    state_ = co_await upload(services_, *parked);
  }
}

runtime::Task<void> ResidentGrain::on_deactivate() {
  if (!state_.valid()) co_return;
  compute::Tensor host = co_await download(services_, state_);
  services_.park_state(id().to_string(), std::move(host));
  state_ = DeviceBuffer();
}

runtime::Task<void> ResidentGrain::load(compute::Tensor initial) {
  state_ = co_await upload(services_, initial);
}

runtime::Task<DeviceBuffer> ResidentGrain::run(ResidentOp op, bool scalar) {
  if (!state_.valid()) {
    throw ErrorException(Error(ErrorCode::failed_precondition, id().to_string() + " has no state loaded"));
  }
  auto def = services_.executor().catalog().lookup(op.kernel);
  if (!def) throw ErrorException(def.error());
  const bool scalar_kernel = (*def)->signature.output == compute::OutputShape::scalar;
  if (scalar_kernel != scalar) {
    throw ErrorException(Error(ErrorCode::invalid_argument,
                               op.kernel + (scalar ? " does not return a scalar: use apply()" : " returns a scalar: use reduce()")));
  }
  const std::size_t inputs = (*def)->signature.inputs.size();
  if (op.operands.size() + 1 != inputs || op.state_input >= inputs) {
    throw ErrorException(Error(ErrorCode::invalid_argument, op.kernel + " takes " + std::to_string(inputs) +
                                                                " input(s): the state and " + std::to_string(inputs - 1) +
                                                                " operand(s)"));
  }
  // Operands go to the state's device for this call only.
  compute::CallOptions same_device;
  same_device.device_id = state_.device_id();
  same_device.allow_fallback = false;
  std::vector<DeviceBuffer> args;
  std::size_t next_operand = 0;
  for (std::size_t i = 0; i < inputs; ++i) {
    if (i == op.state_input) {
      args.push_back(state_);
      continue;
    }
    const compute::Tensor& operand = op.operands[next_operand++];
    args.push_back(co_await CompletionAwaiter<DeviceBuffer>(
        [this, &operand, &same_device](std::function<void(Result<DeviceBuffer>)> done) {
          compute::upload(services_.executor(), operand.view(), same_device, std::move(done));
        }));
  }
  co_return co_await CompletionAwaiter<DeviceBuffer>([this, &op, &args](std::function<void(Result<DeviceBuffer>)> done) {
    compute::run_resident(services_.executor(), op.kernel, args, op.scalars, std::move(done));
  });
}

runtime::Task<void> ResidentGrain::apply(ResidentOp op) { state_ = co_await run(std::move(op), false); }

runtime::Task<double> ResidentGrain::reduce(ResidentOp op) {
  DeviceBuffer value = co_await run(std::move(op), true);
  compute::Tensor host = co_await download(services_, value);
  co_return host.at(0);
}

runtime::Task<compute::Tensor> ResidentGrain::read() {
  if (!state_.valid()) {
    throw ErrorException(Error(ErrorCode::failed_precondition, id().to_string() + " has no state loaded"));
  }
  co_return co_await download(services_, state_);
}

runtime::Task<void> ResidentGrain::evict() {
  deactivate_on_idle();
  co_return;
}

runtime::Task<std::string> ResidentGrain::placement() {
  if (!state_.valid()) co_return std::string();
  std::string out = state_.device_id();
  if (state_.placement() != compute::FallbackReason::none) {
    out += " (fallback: " + std::string(compute::to_string(state_.placement())) + ": " + state_.placement_detail() + ")";
  }
  co_return out;
}

}  // namespace gpubridge::grains
