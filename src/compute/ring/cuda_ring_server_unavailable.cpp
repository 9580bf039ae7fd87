// CudaRingServer in a build without the CUDA backend (GPUBRIDGE_HAVE_CUDA off): nothing can be
// created - create() and cuda_ring_kernel_source() say why - so RingHost's CUDA placement reports
// the ring as unavailable instead of the program failing to link.
#include "gpubridge/compute/cuda_ring.hpp"

namespace gpubridge::compute::ring {

namespace {
Error unavailable() {
  return Error(ErrorCode::unavailable, "built without the CUDA backend (no CUDA toolkit at build time)", "cuda ring");
}
}  // namespace

// Never constructed (create() fails): the members below exist for the linker only.
struct CudaRingServer::Impl {
  CudaRingMode mode;
};

Result<std::unique_ptr<CudaRingServer>> CudaRingServer::create(RingMemory&, CudaHandlerSource, CudaRingServerOptions) {
  return unavailable();
}
CudaRingServer::CudaRingServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaRingServer::~CudaRingServer() = default;
Status CudaRingServer::start() { return unavailable(); }
void CudaRingServer::request_stop() {}
void CudaRingServer::request_drain() {}
Status CudaRingServer::wait() { return {}; }
Status CudaRingServer::reload(CudaHandlerSource) { return unavailable(); }
Status CudaRingServer::kernel_status() const { return unavailable(); }
std::uint64_t CudaRingServer::messages_served() const noexcept { return 0; }
RingServerStats CudaRingServer::stats() const noexcept { return {}; }
std::string CudaRingServer::last_internal_error() const { return ""; }
CudaRingPhaseTimes CudaRingServer::phase_times() const noexcept { return {}; }
const CudaRingMode& CudaRingServer::mode() const noexcept { return impl_->mode; }

Result<std::string> cuda_ring_kernel_source(const CudaHandlerSource&, bool) { return unavailable(); }

void with_rings_stepped_aside(int, const std::function<void()>& fn) { fn(); }  // no ring kernel can run

}  // namespace gpubridge::compute::ring
