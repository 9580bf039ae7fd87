#include "gpubridge/grains/gpu_services.hpp"

namespace gpubridge::grains {

GpuServices::GpuServices(compute::Executor& executor, compute::BatchPolicy policy, compute::CallOptions placement)
    : executor_(executor), policy_(policy), placement_(std::move(placement)) {}

GpuServices::~GpuServices() { stop(); }

Result<compute::DynamicBatcher*> GpuServices::batcher(std::string_view kernel, compute::DType dtype) {
  const std::string key = kernel_key(kernel, dtype);
  std::lock_guard lock(mutex_);
  if (stopped_) return Error(ErrorCode::unavailable, "GPU services stopped");
  if (auto it = batchers_.find(key); it != batchers_.end()) return it->second.get();
  // Each batch's callers are resumed with one post per activation (see runtime::open_resume_batch).
  auto created = compute::DynamicBatcher::create(executor_, std::string(kernel), dtype, policy_, placement_,
                                                 {&runtime::open_resume_batch, &runtime::close_resume_batch});
  if (!created) return created.error();
  compute::DynamicBatcher* b = created->get();
  batchers_.emplace(key, std::move(created).value());
  return b;
}

std::vector<std::pair<std::string, compute::BatcherStats>> GpuServices::batcher_stats() const {
  std::lock_guard lock(mutex_);
  std::vector<std::pair<std::string, compute::BatcherStats>> out;
  for (const auto& [key, b] : batchers_) out.emplace_back(key, b->stats());
  return out;
}

void GpuServices::stop() {
  std::lock_guard lock(mutex_);
  stopped_ = true;
  for (auto& [key, b] : batchers_) b->stop();
}

void GpuServices::park_state(const std::string& grain, compute::Tensor state) {
  std::lock_guard lock(mutex_);
  parked_.insert_or_assign(grain, std::move(state));
}

std::optional<compute::Tensor> GpuServices::take_parked_state(const std::string& grain) {
  std::lock_guard lock(mutex_);
  auto it = parked_.find(grain);
  if (it == parked_.end()) return std::nullopt;
  compute::Tensor t = std::move(it->second);
  parked_.erase(it);
  return t;
}

bool BatchAwaiter::await_suspend(std::coroutine_handle<> handle) {
  context_ = runtime::ResumeContext::current();
  resumption_.handle = handle;
  request_.user = this;
  request_.on_done = &BatchAwaiter::on_done;
  // Once accepted, another thread may resume (and finish) the awaiting coroutine at any moment:
  // nothing of this frame is touched after a successful submit.
  Status s = batcher_.submit(request_);
  if (s.ok()) return true;
  request_.status = std::move(s);  // not accepted: resume at once and report the error
  return false;
}

void BatchAwaiter::on_done(compute::BatchRequest& request) {
  auto* self = static_cast<BatchAwaiter*>(request.user);
  self->context_.resume(self->resumption_);
}

compute::BatchReport BatchAwaiter::await_resume() const {
  if (!request_.status.ok()) throw ErrorException(request_.status.error());
  return request_.report;
}

std::string kernel_key(std::string_view kernel, compute::DType dtype) {
  return std::string(kernel) + "/" + std::string(compute::to_string(dtype));
}

Result<std::pair<std::string, compute::DType>> parse_kernel_key(std::string_view key) {
  const auto slash = key.rfind('/');
  if (slash == std::string_view::npos || slash == 0) {
    return Error(ErrorCode::invalid_argument, "batch grain key '" + std::string(key) + "': expected kernel/dtype, e.g. vector.add/f32");
  }
  auto dtype = compute::parse_dtype(key.substr(slash + 1));
  if (!dtype) {
    return Error(ErrorCode::invalid_argument, "batch grain key '" + std::string(key) + "': unknown element type '" +
                                                  std::string(key.substr(slash + 1)) + "' (f32 or f64)");
  }
  return std::pair{std::string(key.substr(0, slash)), *dtype};
}

}  // namespace gpubridge::grains
