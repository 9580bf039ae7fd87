#pragma once
// The Executor runs catalog kernels asynchronously on the best (or requested) device.
//
// Contract:
// - submit() validates the call at the boundary; an invalid call completes with an error and
//   runs nothing. Input views must stay valid until completion.
// - The fallback policy picks the device per call. When the call runs anywhere other than asked
//   (or than the best device for `auto`), the report names the reason and it is counted.
//   With allow_fallback = false such a call fails instead (code unavailable / resource_exhausted).
// - Completion happens exactly once: the future becomes ready, or the callback runs on an
//   executor thread (never on a driver callback thread), possibly before submit() returns.
// - Thread-safe: any thread may submit. The destructor waits for every call in flight.
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gpubridge/compute/device.hpp"
#include "gpubridge/compute/kernel_catalog.hpp"
#include "gpubridge/compute/tensor.hpp"
#include "gpubridge/core/result.hpp"

namespace gpubridge::compute {

class Backend;  // internal (src/compute/backend.hpp)
namespace detail {
struct ExecutorAccess;  // internal (src/compute/executor_access.hpp): the batcher's view of an Executor
}

enum class BackendChoice { automatic, cpu, cuda, opencl };
std::string_view to_string(BackendChoice c) noexcept;
std::optional<BackendChoice> parse_backend_choice(std::string_view s) noexcept;  // "auto", "cpu", ...

// Why a call ran somewhere other than asked.
enum class FallbackReason : std::uint8_t {
  none = 0,
  no_device,       // the requested backend or device is absent
  kernel_missing,  // the kernel (or its dtype) has no implementation on that device
  device_error,    // the device failed while running the call
  out_of_memory,   // the device (or its pool) could not hold the call's buffers
};
inline constexpr std::size_t kFallbackReasonCount = 5;
std::string_view to_string(FallbackReason r) noexcept;

struct CallOptions {
  BackendChoice backend = BackendChoice::automatic;
  std::string device_id;      // optional exact device ("cuda:1"); overrides `backend`
  bool allow_fallback = true; // fall back to the CPU when the chosen device cannot run the call
};

struct ExecutionReport {
  std::string device_id;  // the device that produced the outputs
  BackendKind backend = BackendKind::cpu;
  std::string requested;  // what the caller asked for: "auto", "cuda", "cuda:0", ...
  FallbackReason fallback = FallbackReason::none;
  std::string fallback_detail;  // the underlying error or absence reason
  std::chrono::nanoseconds elapsed{0};  // submit to completion
};

struct KernelResult {
  std::vector<Tensor> outputs;
  ExecutionReport report;
};

using Completion = std::function<void(Result<KernelResult>)>;

// Bytes held by a memory pool and how often requests were served without a new allocation.
struct PoolStats {
  std::uint64_t bytes_in_use = 0;
  std::uint64_t peak_bytes_in_use = 0;
  std::uint64_t bytes_reserved = 0;  // held by the pool, in use or cached
  std::uint64_t hits = 0;            // served from cached memory
  std::uint64_t misses = 0;          // needed a new allocation from the driver / OS
};

struct DeviceStats {
  std::string device_id;
  std::uint64_t calls = 0;   // calls completed on this device (success or error); a batch counts once
  std::uint64_t errors = 0;  // calls (batches) that failed on this device
  PoolStats device_pool;     // device memory (absent for the CPU: all zeros)
  PoolStats staging_pool;    // page-locked host staging memory
};

struct ExecutorStats {
  // Calls (batched requests included, one each) that ran somewhere other than asked, indexed by
  // FallbackReason.
  std::array<std::uint64_t, kFallbackReasonCount> fallbacks{};
  std::vector<DeviceStats> devices;
  std::uint64_t fallback_count(FallbackReason r) const { return fallbacks[static_cast<std::size_t>(r)]; }
};

struct ExecutorOptions {
  // Backends to discover. The CPU backend is always present.
  bool enable_cuda = true;
  bool enable_opencl = true;
  unsigned cpu_threads = 0;  // 0: hardware concurrency
  // Cap on device memory each GPU pool may hold (0: no cap beyond the device's own memory).
  // A call that would exceed it fails on that device with out_of_memory.
  std::uint64_t device_pool_limit_bytes = 0;
};

class Executor {
 public:
  static Result<std::unique_ptr<Executor>> create(ExecutorOptions options = {},
                                                  KernelCatalog catalog = KernelCatalog::with_builtin_kernels());
  // For tests and embedders that supply their own backends (a CPU backend is added when missing).
  static Result<std::unique_ptr<Executor>> create_with_backends(
      std::vector<std::unique_ptr<Backend>> backends, KernelCatalog catalog, ExecutorOptions options = {});
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  std::future<Result<KernelResult>> submit(KernelCall call, CallOptions options = {});
  void submit(KernelCall call, CallOptions options, Completion done);
  Result<KernelResult> run(KernelCall call, CallOptions options = {});  // submit and wait

  const KernelCatalog& catalog() const noexcept;
  std::vector<BackendStatus> backends() const;
  std::vector<Device> devices() const;  // every available device, best first
  ExecutorStats stats() const;

 private:
  friend struct detail::ExecutorAccess;
  struct Impl;
  explicit Executor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpubridge::compute
