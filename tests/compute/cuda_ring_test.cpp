// The CUDA persistent ring kernel on a device (label gpu): the cases shared with the host-compiled
// kernel (cuda_ring_cases.hpp: protocol, lifecycle, the watchdog on a hung and on a dead kernel,
// device-side messaging) against CudaRingServer, and the ones only a device has (mode(), NVRTC
// errors on reload). The same kernel source runs host-compiled in cuda_ring_host_test (unit).
// Skips without a CUDA device (fails when GPUBRIDGE_REQUIRE_BACKENDS names cuda).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <iostream>
#include <memory>
#include <string>

#include "cuda_ring_cases.hpp"
#include "gpubridge/compute/cuda_ring.hpp"
#include "gpubridge/compute/executor.hpp"
#include "test_support.hpp"

// The cases' server adapter (see cuda_ring_cases.hpp) over CudaRingServer. At global scope for
// short test names (CudaRingTest.<case><DeviceRingServer>).
class DeviceRingServer {
 public:
  // One device thread copies a payload byte by byte over the bus, without heartbeats meanwhile:
  // stay well inside the client's 2 s watchdog.
  static constexpr std::size_t kLargestPayload = 70'000;
  static constexpr const char* kTrapError = "ring kernel";
  // One instantiation per binary (the last case traps the kernel, which leaves the context
  // unusable): one shard here; bench_ring measures 1 and 4 shards on a device.
  static constexpr std::uint32_t kShards = 1;
  // Skips without a CUDA device; keeps the executor (and the CUDA context it opened) for the test.
  class Environment {
   public:
    void require() {
      executor_ = gpubridge::testing::make_executor();
      ASSERT_NE(executor_, nullptr);
      GB_REQUIRE_BACKEND(executor_, gpubridge::compute::BackendKind::cuda);
    }

   private:
    std::unique_ptr<gpubridge::compute::Executor> executor_;
  };

  static gpubridge::Result<std::unique_ptr<DeviceRingServer>> create(
      gpubridge::compute::ring::RingMemory& memory, std::uint64_t handlers_version,
      gpubridge::compute::ring::CudaRingServerOptions options) {
    auto server = CudaRingServer::create(memory, gpubridge::testing::cuda_ring::handlers(handlers_version), options);
    if (!server) return server.error();
    return std::unique_ptr<DeviceRingServer>(new DeviceRingServer(std::move(server).value()));
  }

  gpubridge::Status start() { return server_->start(); }
  void request_stop() { server_->request_stop(); }
  void request_drain() { server_->request_drain(); }
  gpubridge::Status wait() { return server_->wait(); }
  gpubridge::Status reload(std::uint64_t handlers_version) {
    return server_->reload(gpubridge::testing::cuda_ring::handlers(handlers_version));
  }
  gpubridge::Status kernel_status() const { return server_->kernel_status(); }
  std::uint64_t messages_served() const { return server_->messages_served(); }
  gpubridge::compute::ring::RingServerStats stats() const { return server_->stats(); }
  gpubridge::compute::ring::CudaRingPhaseTimes phase_times() const { return server_->phase_times(); }
  std::string last_internal_error() const { return server_->last_internal_error(); }
  // A running kernel is out of the test's reach: taking the request is all there is to see, and a
  // held handler returns after kDeviceHoldNanoseconds on its own.
  void wait_until_holding() const {}
  void release_holds() {}

  gpubridge::compute::ring::CudaRingServer& device() { return *server_; }

 private:
  using CudaRingServer = gpubridge::compute::ring::CudaRingServer;
  explicit DeviceRingServer(std::unique_ptr<CudaRingServer> server) : server_(std::move(server)) {}
  std::unique_ptr<CudaRingServer> server_;
};

namespace gpubridge::testing::cuda_ring {
namespace {

using DeviceRig = RingRig<DeviceRingServer>;

class CudaRingTest : public ::testing::Test {
 protected:
  void SetUp() override { environment_.require(); }

 private:
  DeviceRingServer::Environment environment_;
};

TEST_F(CudaRingTest, ModeDescribesTheDeviceAndTarget) {
  DeviceRig rig(config_of(8));
  ASSERT_NE(rig.server, nullptr);
  const ring::CudaRingMode& mode = rig.server->device().mode();
  EXPECT_FALSE(mode.description.empty());
  EXPECT_FALSE(mode.device_name.empty());
  EXPECT_GT(mode.compute_capability, 0);
  EXPECT_FALSE(mode.target.empty());
  std::cout << "mode: " << mode.description << "\n";
  const std::uint32_t actor = rig.activate();
  auto echoed = rig.call(actor, kEcho, bytes_of(7));
  ASSERT_TRUE(echoed.ok()) << echoed.error().to_string();
  EXPECT_EQ(u64_of(*echoed), 7u);
  EXPECT_TRUE(rig.server->kernel_status().ok());
}

// NVRTC runs before the old kernel is asked to yield: a reload that does not compile leaves it serving.
TEST_F(CudaRingTest, ReloadThatDoesNotCompileKeepsTheRunningKernel) {
  DeviceRig rig(config_of(8));
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t actor = rig.activate();
  EXPECT_EQ(u64_of(rig.call(actor, kCount, {}).value(), 8), 1u);
  ring::CudaHandlerSource broken = handlers(3);
  broken.source += "__device__ int nope(const gb_ring_call&) { return undefined_name; }\n";
  Status refused = rig.server->device().reload(broken);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.error().message(), HasSubstr("undefined_name"));
  auto after = rig.call(actor, kCount, {});
  ASSERT_TRUE(after.ok()) << after.error().to_string();
  EXPECT_EQ(u64_of(*after), 1u);     // the old code
  EXPECT_EQ(u64_of(*after, 8), 2u);  // and the actor's state
  ASSERT_TRUE(rig.server->reload(2).ok());
  auto reloaded = rig.call(actor, kCount, {});
  ASSERT_TRUE(reloaded.ok()) << reloaded.error().to_string();
  EXPECT_EQ(u64_of(*reloaded), 2u);
  EXPECT_EQ(u64_of(*reloaded, 8), 3u);
}

}  // namespace

// After this file's own tests: the shared suite ends with a trapped kernel, which leaves the
// process's CUDA context unusable.
INSTANTIATE_TYPED_TEST_SUITE_P(CudaRingTest, CudaRingCases, ::DeviceRingServer);

}  // namespace gpubridge::testing::cuda_ring
