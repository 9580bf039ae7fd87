#include "compute/backend.hpp"

#include <string>

namespace gpubridge::compute {

namespace {
Error no_resident_memory(const Backend& b) {
  return Error(ErrorCode::unimplemented,
               "the " + std::string(to_string(b.kind())) + " backend keeps no memory resident on its devices");
}
}  // namespace

Result<std::unique_ptr<ResidentBlock>> Backend::allocate_resident(int, std::size_t) { return no_resident_memory(*this); }
void Backend::write_resident(int, ResidentBlock&, const void*, std::size_t, ResidentDone done) {
  done(no_resident_memory(*this));
}
void Backend::read_resident(int, const ResidentBlock&, void*, std::size_t, ResidentDone done) {
  done(no_resident_memory(*this));
}
void Backend::execute_resident(int, const ResidentCall&, ResidentDone done) { done(no_resident_memory(*this)); }

namespace {

// A backend that is not usable on this machine or in this build; status() says why.
class AbsentBackend final : public Backend {
 public:
  AbsentBackend(BackendKind kind, std::string reason) : kind_(kind), reason_(std::move(reason)) {}
  BackendKind kind() const override { return kind_; }
  BackendStatus status() const override { return {kind_, false, reason_, {}}; }
  Status can_run(int, const KernelDef&, DType) const override {
    return Error(ErrorCode::failed_precondition, reason_);
  }
  void execute(int, std::shared_ptr<const PreparedCall>, BackendCompletion done) override {
    done(Error(ErrorCode::unavailable, reason_));
  }
  void execute_batch(int, const BatchCall&, BatchCompletion done) override {
    done(Error(ErrorCode::unavailable, reason_));
  }

 private:
  BackendKind kind_;
  std::string reason_;
};

}  // namespace

bool Backend::run_request_here(int, const KernelDef&, DType, BatchRequest&) { return false; }

void Backend::execute_batch(int, const BatchCall& call, BatchCompletion done) {
  done(Error(ErrorCode::failed_precondition,
             "the " + std::string(to_string(kind())) + " backend cannot run batches of " + call.def->id));
}

std::unique_ptr<Backend> make_absent_backend(BackendKind kind, std::string reason) {
  return std::make_unique<AbsentBackend>(kind, std::move(reason));
}

#ifndef GPUBRIDGE_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions&) {
  return make_absent_backend(BackendKind::cuda, "this build has no CUDA backend (CUDA toolkit not found at configure time)");
}
#endif
#ifndef GPUBRIDGE_HAVE_OPENCL
std::unique_ptr<Backend> make_opencl_backend(const BackendOptions&) {
  return make_absent_backend(BackendKind::opencl, "this build has no OpenCL backend (OpenCL not found at configure time)");
}
#endif

}  // namespace gpubridge::compute
