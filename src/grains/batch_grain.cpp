#include "gpubridge/grains/batch_grain.hpp"

namespace gpubridge::grains {

runtime::Task<void> BatchGrain::on_activate() {
  auto key = parse_kernel_key(id().key().to_string());
  if (!key) throw ErrorException(key.error());
  auto def = services_.executor().catalog().lookup(key->first);
  if (!def) throw ErrorException(def.error());
  auto batcher = services_.batcher(key->first, key->second);
  if (!batcher) throw ErrorException(batcher.error());
  def_ = *def;
  dtype_ = key->second;
  batcher_ = *batcher;
  co_return;
}

runtime::Task<compute::BatchReport> BatchGrain::run(const BatchCall& call) {
  compute::BatchRequest request;
  request.inputs = call.inputs;
  request.scalars = call.scalars;
  request.output = call.output;
  request.output_capacity = call.output_capacity;
  request.priority = call.priority;
  request.deadline = call.deadline;
  if (call.input_count != def_->signature.inputs.size()) {
    throw ErrorException(Error(ErrorCode::invalid_argument,
                               def_->id + " takes " + std::to_string(def_->signature.inputs.size()) +
                                   " input(s), the call has " + std::to_string(call.input_count)));
  }
  co_return co_await submit_batch(*batcher_, request);
}

runtime::Task<compute::KernelResult> BatchGrain::compute(std::vector<compute::TensorView> inputs,
                                                         std::vector<double> scalars) {
  if (inputs.empty() || inputs.size() > compute::BatchRequest::kMaxInputs ||
      scalars.size() > compute::BatchRequest::kMaxScalars) {
    throw ErrorException(Error(ErrorCode::invalid_argument, def_->id + ": wrong number of inputs or scalars"));
  }
  BatchCall call;
  for (std::size_t i = 0; i < inputs.size(); ++i) call.inputs[i] = inputs[i];
  call.input_count = inputs.size();
  for (std::size_t i = 0; i < scalars.size(); ++i) call.scalars[i] = scalars[i];
  compute::Tensor out(dtype_, compute::KernelCatalog::output_count(*def_, inputs.front().count));
  call.output = out.data();
  call.output_capacity = out.count();
  const compute::BatchReport report = co_await run(call);
  compute::KernelResult result;
  result.outputs.push_back(std::move(out));
  result.report.device_id = report.device_id;
  result.report.backend = report.backend;
  result.report.fallback = report.fallback;
  result.report.elapsed = report.queued + report.executed;
  co_return result;
}

}  // namespace gpubridge::grains
