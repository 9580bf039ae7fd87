#pragma once
// HostKernelServer: runs the host-compiled CUDA ring kernel (kernel_generator.cpp), one std::thread
// per block (one block per shard of the ring block),
// and does for it what CudaRingServer does around the device kernel: a "device" mirror of the
// actor table and states (copied in at start, back when the kernel has finished for good), the
// internal-queue header in "device memory", the KernelControl words (yield, abandon at
// destruction, the kernel's counters). The lifecycle (start, wait, reload, stepping aside for
// DeviceIdle) is CudaRingServer's own, detail::KernelLifecycle; this is its KernelPlatform. The
// kernel code itself is never reimplemented here. Thread-safe like CudaRingServer; one-shot.
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "compute/ring/cuda_ring_server.hpp"
#include "compute/ring/kernel_lifecycle.hpp"
#include "gpubridge/compute/cuda_ring.hpp"
#include "gpubridge/compute/ring.hpp"
#include "gpubridge/core/result.hpp"

namespace gpubridge::testing::ring_host {

// The generated entry point: gb_ring_serve(block, actors, control, internal).
using KernelEntry = void (*)(unsigned char*, unsigned char*, unsigned char*, unsigned char*);

class HostKernelServer final : private compute::ring::detail::KernelPlatform {
 public:
  // As CudaRingServer::create: invalid_argument for a block that is not a ring block or bad
  // options; failed_precondition for a block that was already served.
  static Result<std::unique_ptr<HostKernelServer>> create(compute::ring::RingMemory& memory, KernelEntry kernel,
                                                          compute::ring::CudaRingServerOptions options = {});
  ~HostKernelServer();  // stop, abandon, wait for the kernel, copy states back
  HostKernelServer(const HostKernelServer&) = delete;
  HostKernelServer& operator=(const HostKernelServer&) = delete;

  Status start();
  void request_stop();
  void request_drain();
  // Until the kernel has returned for good; the error when it trapped or returned unfinished.
  Status wait();
  Status stop() { request_stop(); return wait(); }
  Status drain() { request_drain(); return wait(); }
  // Replaces the code with the kernel stepped aside (registered with DeviceIdle on options.device).
  Status reload(KernelEntry kernel);
  // As CudaRingServer::kernel_status: ok while the kernel runs or has finished cleanly; the error
  // once it has trapped (seen at once) or wait() found it returned unfinished.
  Status kernel_status() const;
  std::uint64_t messages_served() const noexcept;
  compute::ring::RingServerStats stats() const noexcept;
  compute::ring::CudaRingPhaseTimes phase_times() const noexcept;
  std::string last_internal_error() const;
  // The kernel's control words (tests watch `yield` to order a reload against a handler).
  compute::ring::detail::KernelControl& control() override { return *control_; }

 private:
  struct AlignedFree {
    void operator()(std::byte* p) const noexcept;
  };
  using DeviceBuffer = std::unique_ptr<std::byte[], AlignedFree>;
  static DeviceBuffer allocate(std::size_t bytes);

  HostKernelServer(compute::ring::RingMemory& memory, KernelEntry kernel,
                   compute::ring::CudaRingServerOptions options);

  // KernelPlatform: a launch is one thread per block; it has returned when all of them have.
  Status launch() override;
  Status wait_returned() override;
  std::optional<Status> wait_returned_for(std::chrono::milliseconds limit) override;
  Status copy_back() override;
  Status poll() const override;

  compute::ring::RingMemory& memory_;
  compute::ring::CudaRingServerOptions options_;
  KernelEntry kernel_;        // under lifecycle_.mutex()
  std::uint32_t shards_ = 1;  // blocks per launch (the block's shard count)
  std::size_t actors_bytes_ = 0;
  DeviceBuffer actors_;    // mirror of [actor_table_offset, pool_offset)
  DeviceBuffer internal_;  // the internal area (server words, per-shard queues)
  DeviceBuffer control_storage_;
  compute::ring::detail::KernelControl* control_ = nullptr;

  mutable std::mutex threads_mutex_;
  std::condition_variable returned_cv_;
  std::uint64_t launches_ = 0;        // launches started
  std::uint64_t returned_ = 0;        // launches that have returned (all their blocks)
  std::uint32_t blocks_running_ = 0;  // blocks of the current launch still running
  std::atomic<bool> grid_trapped_{false};  // a block trapped: the others leave at their next check
  bool trapped_ = false;
  std::vector<std::thread> threads_;  // one per block and launch; joined at destruction
  std::unique_ptr<compute::ring::detail::KernelLifecycle> lifecycle_;  // after what it uses
};

}  // namespace gpubridge::testing::ring_host
