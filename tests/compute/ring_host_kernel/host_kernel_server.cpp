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
  return server;
}

HostKernelServer::~HostKernelServer() {
  request_stop();
  store(control_->abandon, 1);
  if (Status s = wait(); !s) {
    std::fprintf(stderr, "host ring kernel ended with an error: %s\n", s.error().to_string().c_str());
  }
  for (std::thread& t : threads_) t.join();
}

Status HostKernelServer::start() {
  std::lock_guard lock(mutex_);
  if (phase_ != Phase::created) return harness_error(ErrorCode::failed_precondition, "ring server already started");
  std::memcpy(actors_.get(), memory_.base() + memory_.header().actor_table_offset, actors_bytes_);
  const std::vector<std::byte> area = ring::detail::initial_internal_area(options_, shards_);
  std::memcpy(internal_.get(), area.data(), area.size());
  store(memory_.header().server_state, static_cast<std::uint32_t>(ring::ServerState::running));
  launch_locked();
  phase_ = Phase::running;
  return {};
}

// One thread per block (shard), as a grid of `shards_` blocks; the launch has returned when the
// last of them has.
void HostKernelServer::launch_locked() {
  for (std::uint32_t i = 0; i < shards_; ++i) {
    store(control_->shards[i].exit_reason, static_cast<std::uint32_t>(KernelExit::running));
  }
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
      std::lock_guard lock(mutex_);
      trapped_ = trapped_ || trapped;
      if (--blocks_running_ == 0) {
        returned_ = launch;
        returned_cv_.notify_all();
      }
    });
  }
}

void HostKernelServer::wait_returned(std::unique_lock<std::mutex>& lock) {
  returned_cv_.wait(lock, [&] { return returned_ == launches_; });
}

void HostKernelServer::finish_locked() {
  phase_ = Phase::finished;
  std::memcpy(memory_.base() + memory_.header().actor_table_offset, actors_.get(), actors_bytes_);
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

Status HostKernelServer::wait() {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (phase_ == Phase::created) return {};
    if (phase_ == Phase::finished) return kernel_error_ ? Status(*kernel_error_) : Status{};
    returned_cv_.wait(lock, [&] { return returned_ == launches_ && !reloading_; });
    if (phase_ == Phase::finished) continue;
    if (trapped_) {
      kernel_error_ = harness_error(ErrorCode::internal, "ring kernel trapped");
      phase_ = Phase::finished;
    } else if (ring::detail::all_shards_finished(*control_, shards_)) {
      finish_locked();
    } else {
      kernel_error_ = harness_error(ErrorCode::internal, "ring kernel returned without finishing");
      phase_ = Phase::finished;
    }
  }
}

Status HostKernelServer::reload(KernelEntry kernel) {
  std::unique_lock lock(mutex_);
  if (phase_ != Phase::running) {
    kernel_ = kernel;
    return {};
  }
  reloading_ = true;
  store(control_->yield, 1);
  wait_returned(lock);
  store(control_->yield, 0);
  reloading_ = false;
  kernel_ = kernel;
  if (trapped_) {
    kernel_error_ = harness_error(ErrorCode::internal, "ring kernel trapped");
    phase_ = Phase::finished;
    returned_cv_.notify_all();
    return *kernel_error_;
  }
  if (ring::detail::all_shards_finished(*control_, shards_)) {
    finish_locked();  // it stopped (stop/drain) before it saw the request
  } else {
    launch_locked();
  }
  returned_cv_.notify_all();
  return {};
}

Status HostKernelServer::kernel_status() const {
  std::lock_guard lock(mutex_);
  if (kernel_error_) return *kernel_error_;
  if (trapped_) return harness_error(ErrorCode::internal, "ring kernel trapped");
  return {};
}

std::uint64_t HostKernelServer::messages_served() const noexcept { return stats().completions; }

ring::RingServerStats HostKernelServer::stats() const noexcept {
  return ring::detail::read_kernel_stats(*control_, memory_);
}

std::string HostKernelServer::last_internal_error() const {
  return ring::detail::read_kernel_error(*control_, shards_);
}

}  // namespace gpubridge::testing::ring_host
