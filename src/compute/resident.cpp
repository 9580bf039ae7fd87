// Resident data (device_buffer.hpp): placement, validation and the backend calls.
#include <cstring>

#include "compute/backend.hpp"
#include "compute/executor_access.hpp"
#include "gpubridge/compute/device_buffer.hpp"

namespace gpubridge::compute {

struct DeviceBuffer::State {
  std::shared_ptr<ResidentBlock> block;
  const DeviceSlot* slot = nullptr;
  DType dtype = DType::f32;
  std::size_t count = 0;
  FallbackReason placement = FallbackReason::none;
  std::string placement_detail;
};

struct DeviceBufferAccess {
  static DeviceBuffer make(std::shared_ptr<const DeviceBuffer::State> s) {
    DeviceBuffer b;
    b.state_ = std::move(s);
    return b;
  }
  static const std::shared_ptr<const DeviceBuffer::State>& state(const DeviceBuffer& b) { return b.state_; }
};

namespace {

const std::string kEmpty;

using detail::ExecutorAccess;

// The device resident data goes to: the requested one, or the best GPU for auto, else the CPU.
// `detail` is set when it is not where the caller asked.
const DeviceSlot* place_memory(const FallbackPolicy& policy, const CallOptions& where, FallbackReason& reason,
                               std::string& detail) {
  for (const auto& s : policy.devices()) {
    const bool wanted = !where.device_id.empty() ? s.device.id == where.device_id
                        : where.backend == BackendChoice::automatic
                            ? s.device.is_gpu || s.device.backend == BackendKind::cpu
                            : to_string(s.device.backend) == to_string(where.backend);
    if (wanted) return &s;
  }
  reason = FallbackReason::no_device;
  detail = "no " + describe_request(where) + " device";
  for (const auto& st : policy.statuses()) {
    if (!where.device_id.empty() ? where.device_id.rfind(std::string(to_string(st.kind)) + ":", 0) == 0
                                 : to_string(st.kind) == to_string(where.backend)) {
      if (!st.reason.empty()) detail += ": " + st.reason;
    }
  }
  return nullptr;
}

}  // namespace

const std::string& DeviceBuffer::device_id() const { return state_ ? state_->slot->device.id : kEmpty; }
DType DeviceBuffer::dtype() const { return state_ ? state_->dtype : DType::f32; }
std::size_t DeviceBuffer::count() const { return state_ ? state_->count : 0; }
FallbackReason DeviceBuffer::placement() const { return state_ ? state_->placement : FallbackReason::none; }
const std::string& DeviceBuffer::placement_detail() const { return state_ ? state_->placement_detail : kEmpty; }

void upload(Executor& executor, TensorView data, const CallOptions& where, BufferCompletion done) {
  if (data.count == 0 || data.data == nullptr) {
    return done(Error(ErrorCode::invalid_argument, "upload: empty data"));
  }
  if (data.count > kMaxElements) {
    return done(Error(ErrorCode::out_of_range, "upload: more than " + std::to_string(kMaxElements) + " elements"));
  }
  const FallbackPolicy& policy = ExecutorAccess::policy(executor);
  auto state = std::make_shared<DeviceBuffer::State>();
  state->dtype = data.dtype;
  state->count = data.count;
  const DeviceSlot* slot = place_memory(policy, where, state->placement, state->placement_detail);
  if (slot != nullptr && data.dtype == DType::f64 && !slot->device.caps.fp64) {
    state->placement = FallbackReason::kernel_missing;
    state->placement_detail = slot->device.id + " has no fp64 support";
    slot = nullptr;
  }
  Result<std::unique_ptr<ResidentBlock>> block = Error(ErrorCode::unavailable, "not placed");
  if (slot != nullptr) {
    block = slot->backend->allocate_resident(slot->device.ordinal, data.bytes());
    if (!block && slot->device.backend != BackendKind::cpu) {
      state->placement = FallbackPolicy::reason_for(block.error()) == FallbackReason::out_of_memory
                             ? FallbackReason::out_of_memory
                             : FallbackReason::kernel_missing;
      state->placement_detail = slot->device.id + ": " + block.error().to_string();
      slot = nullptr;
    }
  }
  if (slot == nullptr) {
    if (!where.allow_fallback) {
      return done(Error(state->placement == FallbackReason::no_device ? ErrorCode::unavailable
                                                                       : ErrorCode::failed_precondition,
                        state->placement_detail, "upload, fallback disabled"));
    }
    slot = &policy.cpu();
    ExecutorAccess::count_fallback(executor, state->placement, 1);
    block = slot->backend->allocate_resident(slot->device.ordinal, data.bytes());
  }
  if (!block) return done(block.error().with_context("upload to " + slot->device.id));
  state->slot = slot;
  state->block = std::move(block).value();
  ResidentBlock& target = *state->block;
  slot->backend->write_resident(slot->device.ordinal, target, data.data, data.bytes(),
                                [state, done = std::move(done)](Status s) {
                                  if (!s) return done(s.error().with_context("upload"));
                                  done(DeviceBufferAccess::make(state));
                                });
}

void download(Executor&, const DeviceBuffer& buffer, std::function<void(Result<Tensor>)> done) {
  const auto& state = DeviceBufferAccess::state(buffer);
  if (!state) return done(Error(ErrorCode::invalid_argument, "download: invalid buffer"));
  std::shared_ptr<Tensor> out;
  try {
    out = std::make_shared<Tensor>(Tensor::uninitialized(state->dtype, state->count));
  } catch (const std::bad_alloc&) {
    return done(Error(ErrorCode::resource_exhausted, "download: out of host memory"));
  }
  void* dst = out->data();
  const std::size_t bytes = out->bytes();
  state->slot->backend->read_resident(state->slot->device.ordinal, *state->block, dst, bytes,
                                      [state, out, done = std::move(done)](Status s) {
                                        if (!s) return done(s.error().with_context("download"));
                                        done(std::move(*out));
                                      });
}

void run_resident(Executor& executor, std::string_view kernel, std::span<const DeviceBuffer> inputs,
                  std::span<const double> scalars, BufferCompletion done) {
  auto found = executor.catalog().lookup(kernel);
  if (!found) return done(found.error());
  const KernelDef& def = **found;
  const std::string where = "kernel '" + def.id + "' on resident buffers";
  if (def.signature.output == OutputShape::computed) {
    return done(Error(ErrorCode::failed_precondition,
                      where + ": not batchable: kernels whose inputs have their own shapes do not run on resident "
                              "buffers (run it with Executor::submit)"));
  }
  if (inputs.size() != def.signature.inputs.size()) {
    return done(Error(ErrorCode::invalid_argument, where + ": takes " + std::to_string(def.signature.inputs.size()) +
                                                       " input(s), got " + std::to_string(inputs.size())));
  }
  if (scalars.size() != def.signature.scalars.size() || scalars.size() > 2) {
    return done(Error(ErrorCode::invalid_argument, where + ": takes " + std::to_string(def.signature.scalars.size()) +
                                                       " scalar(s), got " + std::to_string(scalars.size())));
  }
  std::vector<std::shared_ptr<const DeviceBuffer::State>> keep;  // inputs stay alive until done
  for (const auto& b : inputs) {
    const auto& s = DeviceBufferAccess::state(b);
    if (!s) return done(Error(ErrorCode::invalid_argument, where + ": an input buffer is invalid"));
    const auto& first = keep.empty() ? s : keep.front();
    if (s->slot != first->slot) {
      return done(Error(ErrorCode::invalid_argument, where + ": inputs live on different devices (" +
                                                         first->slot->device.id + ", " + s->slot->device.id + ")"));
    }
    if (s->dtype != first->dtype || s->count != first->count) {
      return done(Error(ErrorCode::invalid_argument, where + ": inputs differ in element type or length"));
    }
    keep.push_back(s);
  }
  const auto& first = *keep.front();
  const auto& dtypes = def.signature.dtypes;
  if (std::find(dtypes.begin(), dtypes.end(), first.dtype) == dtypes.end()) {
    return done(Error(ErrorCode::invalid_argument, where + ": does not accept " + std::string(to_string(first.dtype))));
  }
  const DeviceSlot* slot = first.slot;
  if (Status s = slot->backend->can_run(slot->device.ordinal, def, first.dtype); !s) {
    return done(Error(ErrorCode::failed_precondition, s.error().message(), where + " on " + slot->device.id));
  }
  auto out = std::make_shared<DeviceBuffer::State>();
  out->slot = slot;
  out->dtype = first.dtype;
  out->count = KernelCatalog::output_count(def, first.count);
  out->placement = first.placement;
  out->placement_detail = first.placement_detail;
  auto block = slot->backend->allocate_resident(slot->device.ordinal, out->count * size_of(out->dtype));
  if (!block) return done(block.error().with_context(where));
  out->block = std::move(block).value();

  ResidentCall call;
  call.def = &def;
  call.dtype = first.dtype;
  call.n = first.count;
  call.output_count = out->count;
  call.input_count = keep.size();
  for (std::size_t i = 0; i < keep.size(); ++i) call.inputs[i] = keep[i]->block.get();
  call.scalar_count = scalars.size();
  for (std::size_t i = 0; i < scalars.size(); ++i) call.scalars[i] = scalars[i];
  call.output = out->block.get();
  slot->backend->execute_resident(slot->device.ordinal, call,
                                  [keep = std::move(keep), out, where, done = std::move(done)](Status s) {
                                    if (!s) return done(s.error().with_context(where));
                                    done(DeviceBufferAccess::make(out));
                                  });
}

namespace {
template <typename T, typename Start>
Result<T> wait_for(Start start) {
  std::promise<Result<T>> promise;
  auto future = promise.get_future();
  start([&promise](Result<T> r) { promise.set_value(std::move(r)); });
  return future.get();
}
}  // namespace

Result<DeviceBuffer> upload_now(Executor& executor, TensorView data, const CallOptions& where) {
  return wait_for<DeviceBuffer>([&](BufferCompletion done) { upload(executor, data, where, std::move(done)); });
}

Result<Tensor> download_now(Executor& executor, const DeviceBuffer& buffer) {
  return wait_for<Tensor>([&](std::function<void(Result<Tensor>)> done) { download(executor, buffer, std::move(done)); });
}

Result<DeviceBuffer> run_resident_now(Executor& executor, std::string_view kernel, std::span<const DeviceBuffer> inputs,
                                      std::span<const double> scalars) {
  return wait_for<DeviceBuffer>(
      [&](BufferCompletion done) { run_resident(executor, kernel, inputs, scalars, std::move(done)); });
}

}  // namespace gpubridge::compute
