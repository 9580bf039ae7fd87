// HostKernelServer: CudaRingServer's host side, with a std::thread for the launch and plain
// memory for device memory (see host_kernel_server.hpp).
#include "ring_host_kernel/host_kernel_server.hpp"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <new>
#include <vector>

#include "ring_host_kernel/host_trap.hpp"

namespace gpubridge::testing::ring_host {

namespace ring = compute::ring;
using ring::detail::KernelControl;
using ring::detail::KernelExit;

namespace {

Error harness_error(ErrorCode code, std::string message) {
  return Error(code, std::move(message), "host ring kernel");
}
std::uint32_t load(std::uint32_t& word) {
  return std::atomic_ref<std::uint32_t>(word).load(std::memory_order_acquire);
}
void store(std::uint32_t& word, std::uint32_t value) {
  std::atomic_ref<std::uint32_t>(word).store(value, std::memory_order_release);
}

}  // namespace

void HostKernelServer::AlignedFree::operator()(std::byte* p) const noexcept {
  ::operator delete[](p, std::align_val_t{ring::kRegionAlignment});
}

HostKernelServer::DeviceBuffer HostKernelServer::allocate(std::size_t bytes) {
  auto* p = static_cast<std::byte*>(::operator new[](bytes == 0 ? 1 : bytes, std::align_val_t{ring::kRegionAlignment}));
  std::memset(p, 0, bytes == 0 ? 1 : bytes);
  return DeviceBuffer(p);
}

HostKernelServer::HostKernelServer(ring::RingMemory& memory, KernelEntry kernel, ring::CudaRingServerOptions options)
    : memory_(memory), options_(options), kernel_(kernel) {}

Result<std::unique_ptr<HostKernelServer>> HostKernelServer::create(ring::RingMemory& memory, KernelEntry kernel,
                                                                   ring::CudaRingServerOptions options) {
  const ring::RingHeader& h = memory.header();
  if (h.magic != ring::kRingMagic || h.version != ring::kRingVersion) {
    return harness_error(ErrorCode::invalid_argument, "memory block is not a ring block");
  }
  if (load(memory.header().server_state) != static_cast<std::uint32_t>(ring::ServerState::not_started)) {
    return harness_error(ErrorCode::failed_precondition, "the ring block has already been served");
  }
  if (Status valid = ring::detail::validate_options(options); !valid) return valid.error();
  std::unique_ptr<HostKernelServer> server(new HostKernelServer(memory, kernel, options));
  server->actors_bytes_ = h.pool_offset - h.actor_table_offset;
  server->actors_ = allocate(server->actors_bytes_);
  server->shards_ = h.shard_count;
  server->internal_ = allocate(ring::detail::internal_area_bytes(options.internal_queue_slots, h.shard_count));
  server->control_storage_ = allocate(sizeof(KernelControl));
  server->control_ = reinterpret_cast<KernelControl*>(server->control_storage_.get());
  ring::detail::KernelPlatform& platform = *server;
  server->lifecycle_ =
      std::make_unique<ring::detail::KernelLifecycle>(platform, memory, options.device, server->shards_);
  return server;
}

HostKernelServer::~HostKernelServer() {
  request_stop();
  store(control_->abandon, 1);
  if (Status s = wait(); !s) {
    std::fprintf(stderr, "host ring kernel ended with an error: %s\n", s.error().to_string().c_str());
  }
  lifecycle_->leave();
  for (std::thread& t : threads_) t.join();
}

Status HostKernelServer::start() {
  return lifecycle_->start([&]() -> Status {
    std::memcpy(actors_.get(), memory_.base() + memory_.header().actor_table_offset, actors_bytes_);
    const std::vector<std::byte> area = ring::detail::initial_internal_area(options_, shards_);
    std::memcpy(internal_.get(), area.data(), area.size());
    return {};
  });
}

// One thread per block (shard), as a grid of `shards_` blocks; the launch has returned when the
// last of them has. Runs under the lifecycle's lock (kernel_ is stable).
Status HostKernelServer::launch() {
  std::lock_guard lock(threads_mutex_);
  const std::uint64_t launch = ++launches_;
  blocks_running_ = shards_;
  auto* block = reinterpret_cast<unsigned char*>(memory_.base());
  auto* actors = reinterpret_cast<unsigned char*>(actors_.get());
  auto* control = reinterpret_cast<unsigned char*>(control_);
  auto* internal = reinterpret_cast<unsigned char*>(internal_.get());
  for (std::uint32_t index = 0; index < shards_; ++index) {
    threads_.emplace_back([this, launch, index, kernel = kernel_, block, actors, control, internal] {
      host_grid = HostGrid{&grid_trapped_, index};
      bool trapped = false;
      try {
        kernel(block, actors, control, internal);
      } catch (const HostTrap&) {
        trapped = true;  // as a trapped device kernel: no state change, no heartbeat, no stop
      }
      host_grid = HostGrid{};
      std::lock_guard done(threads_mutex_);
      trapped_ = trapped_ || trapped;
      if (--blocks_running_ == 0) {
        returned_ = launch;
        returned_cv_.notify_all();
      }
    });
  }
  return {};
}

Status HostKernelServer::wait_returned() {
  std::unique_lock lock(threads_mutex_);
  returned_cv_.wait(lock, [&] { return returned_ == launches_; });
  if (trapped_) return harness_error(ErrorCode::internal, "ring kernel trapped");
  return {};
}

std::optional<Status> HostKernelServer::wait_returned_for(std::chrono::milliseconds limit) {
  std::unique_lock lock(threads_mutex_);
  if (!returned_cv_.wait_for(lock, limit, [&] { return returned_ == launches_; })) return std::nullopt;
  if (trapped_) return Status(harness_error(ErrorCode::internal, "ring kernel trapped"));
  return Status{};
}

Status HostKernelServer::copy_back() {
  std::memcpy(memory_.base() + memory_.header().actor_table_offset, actors_.get(), actors_bytes_);
  return {};
}

Status HostKernelServer::poll() const {
  std::lock_guard lock(threads_mutex_);
  if (trapped_) return harness_error(ErrorCode::internal, "ring kernel trapped");
  return {};
}

void HostKernelServer::request_stop() {
  store(memory_.header().control, static_cast<std::uint32_t>(ring::ControlWord::stop));
}

void HostKernelServer::request_drain() {
  std::atomic_ref<std::uint32_t> control(memory_.header().control);
  auto expected = static_cast<std::uint32_t>(ring::ControlWord::run);
  control.compare_exchange_strong(expected, static_cast<std::uint32_t>(ring::ControlWord::drain),
                                  std::memory_order_acq_rel);
}

Status HostKernelServer::wait() { return lifecycle_->wait(); }

Status HostKernelServer::reload(KernelEntry kernel) {
  return lifecycle_->reload([&]() -> Status {
    std::lock_guard lock(lifecycle_->mutex());
    kernel_ = kernel;
    return {};
  });
}

Status HostKernelServer::kernel_status() const { return lifecycle_->status(); }

std::uint64_t HostKernelServer::messages_served() const noexcept { return stats().completions; }

ring::RingServerStats HostKernelServer::stats() const noexcept {
  return ring::detail::read_kernel_stats(*control_, memory_);
}

compute::ring::CudaRingPhaseTimes HostKernelServer::phase_times() const noexcept {
  return ring::detail::read_phase_times(*control_, shards_);
}

std::string HostKernelServer::last_internal_error() const {
  return ring::detail::read_kernel_error(*control_, shards_);
}

}  // namespace gpubridge::testing::ring_host
