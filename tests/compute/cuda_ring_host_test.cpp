// The CUDA ring kernel's logic without a GPU: the generated kernel source (cuda_ring_kernel_source,
// what NVRTC compiles, for cuda_ring_handlers.hpp's handlers) built as host C++ with a small shim
// (ring_host_kernel/host_shim.hpp), run on a thread by HostKernelServer against a real RingMemory
// block and the real RingClient. Runs the cases shared with the gpu test (cuda_ring_cases.hpp:
// protocol, lifecycle, watchdog, device-side messaging) and the ones only the harness can set up
// (it sees the kernel's control words).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "compute/cuda/device_idle.hpp"
#include "cuda_ring_cases.hpp"
#include "ring_host_kernel/host_kernel_server.hpp"

extern "C" void gb_ring_serve_host_v1(unsigned char*, unsigned char*, unsigned char*, unsigned char*);
extern "C" void gb_ring_serve_host_v2(unsigned char*, unsigned char*, unsigned char*, unsigned char*);
extern "C" void gb_ring_serve_host_v1_timed(unsigned char*, unsigned char*, unsigned char*, unsigned char*);

namespace gpubridge::testing::cuda_ring {
namespace {

// What kHold waits on in a host-compiled kernel (one server at a time per process holds it).
using Gate = ring_support::Gate;
std::atomic<Gate*> current_gate{nullptr};

}  // namespace
}  // namespace gpubridge::testing::cuda_ring

// Called by the host-compiled kHold handlers (cuda_ring_handlers.hpp).
extern "C" void gb_host_test_gate_wait() {
  gpubridge::testing::cuda_ring::Gate* gate = gpubridge::testing::cuda_ring::current_gate.load();
  if (gate != nullptr) gate->wait();
}

// The cases' server adapter (see cuda_ring_cases.hpp) over HostKernelServer, with handlers(1) and
// handlers(2) as the two host-compiled kernels, serving blocks of `Shards` shards (one thread per
// block). Its gate is the one kHold waits on once started. At global scope for short test names.
template <std::uint32_t Shards>
class HostRingServer {
  using Gate = gpubridge::testing::cuda_ring::Gate;
  using HostKernelServer = gpubridge::testing::ring_host::HostKernelServer;
  using KernelEntry = gpubridge::testing::ring_host::KernelEntry;

 public:
  static constexpr std::size_t kLargestPayload = std::size_t{1} << 20;
  static constexpr const char* kTrapError = "ring kernel trapped";
  static constexpr std::uint32_t kShards = Shards;
  struct Environment {
    void require() {}  // runs anywhere
  };

  static gpubridge::Result<std::unique_ptr<HostRingServer>> create(
      gpubridge::compute::ring::RingMemory& memory, std::uint64_t handlers_version,
      gpubridge::compute::ring::CudaRingServerOptions options) {
    const KernelEntry kernel = kernel_of(handlers_version, options.time_phases);
    if (kernel == nullptr) return unknown_version(handlers_version, options.time_phases);
    auto server = HostKernelServer::create(memory, kernel, options);
    if (!server) return server.error();
    return std::unique_ptr<HostRingServer>(new HostRingServer(std::move(server).value(), options.time_phases));
  }
  ~HostRingServer() {
    gate_.open();
    server_.reset();
    Gate* self = &gate_;
    gpubridge::testing::cuda_ring::current_gate.compare_exchange_strong(self, nullptr);
  }
  HostRingServer(const HostRingServer&) = delete;
  HostRingServer& operator=(const HostRingServer&) = delete;

  gpubridge::Status start() {
    gpubridge::testing::cuda_ring::current_gate.store(&gate_);
    return server_->start();
  }
  void request_stop() { server_->request_stop(); }
  void request_drain() { server_->request_drain(); }
  gpubridge::Status wait() { return server_->wait(); }
  gpubridge::Status reload(std::uint64_t handlers_version) {
    const KernelEntry kernel = kernel_of(handlers_version, timed_);
    if (kernel == nullptr) return unknown_version(handlers_version, timed_);
    return server_->reload(kernel);
  }
  gpubridge::Status kernel_status() const { return server_->kernel_status(); }
  std::uint64_t messages_served() const { return server_->messages_served(); }
  gpubridge::compute::ring::RingServerStats stats() const { return server_->stats(); }
  gpubridge::compute::ring::CudaRingPhaseTimes phase_times() const { return server_->phase_times(); }
  std::string last_internal_error() const { return server_->last_internal_error(); }
  void wait_until_holding() const { gate_.wait_entered(); }
  void release_holds() { gate_.open(); }

  HostKernelServer& harness() { return *server_; }

 private:
  HostRingServer(std::unique_ptr<HostKernelServer> server, bool timed) : server_(std::move(server)), timed_(timed) {}
  // The host-compiled kernel serving handlers(version), with the phase timing compiled in when
  // `timed`; null for one kernel_generator.cpp does not write.
  static KernelEntry kernel_of(std::uint64_t handlers_version, bool timed) {
    if (timed) return handlers_version == 1 ? &gb_ring_serve_host_v1_timed : nullptr;
    if (handlers_version == 1) return &gb_ring_serve_host_v1;
    if (handlers_version == 2) return &gb_ring_serve_host_v2;
    return nullptr;
  }
  static gpubridge::Error unknown_version(std::uint64_t handlers_version, bool timed) {
    return gpubridge::Error(gpubridge::ErrorCode::invalid_argument,
                            "no host-compiled kernel for handlers version " + std::to_string(handlers_version) +
                                (timed ? " with time_phases (only 1 is generated)" : " (only 1 and 2 are generated)"));
  }

  Gate gate_;
  std::unique_ptr<HostKernelServer> server_;
  bool timed_;
};

namespace gpubridge::testing::cuda_ring {
namespace {

using HostRig = RingRig<HostRingServer<1>>;

// Only the harness can order a reload request against a running handler: it sees the yield word.
TEST(CudaRingHostTest, QueuedDeviceMessagesSurviveAHotReload) {
  HostRig rig(config_of(8), patient());
  ASSERT_NE(rig.server, nullptr);
  const std::uint32_t a = rig.activate();
  auto posting = rig.client->try_send(a, kHoldThenPostCounts, {}).value();
  rig.wait_until_holding(2);
  // The kernel sees the reload request right after the held handler commits its 3 posts.
  std::thread reloader([&] { EXPECT_TRUE(rig.server->reload(2).ok()); });
  while (std::atomic_ref<std::uint32_t>(rig.server->harness().control().yield).load() == 0) {
    std::this_thread::yield();
  }
  rig.server->release_holds();
  reloader.join();
  EXPECT_TRUE(posting.get().ok());
  auto after = rig.call(a, kCount, {});
  ASSERT_TRUE(after.ok()) << after.error().to_string();
  EXPECT_EQ(u64_of(*after), 2u);     // the new code
  EXPECT_EQ(u64_of(*after, 8), 4u);  // after the 3 queued kCount messages
  EXPECT_EQ(rig.server->stats().internal_messages, 3u);
}

// An operation that needs the device idle (DeviceIdle::run, e.g. the executor loading a module)
// steps the serving kernel aside - every block returns after its current message - and relaunches
// it afterwards, while producers keep sending: nothing is lost or answered twice, states survive.
TEST(CudaRingHostTest, DeviceIdleStepsAServingKernelAsideWhileProducersSend) {
  RingRig<HostRingServer<4>> rig(config_of(64));
  ASSERT_NE(rig.server, nullptr);
  EXPECT_EQ(compute::cuda::DeviceIdle::registered(0), 1u);
  constexpr std::uint32_t kActors = 4;
  std::vector<std::uint32_t> actors;
  for (std::uint32_t i = 0; i < kActors; ++i) actors.push_back(rig.activate());
  std::atomic<bool> sending{true};
  std::atomic<int> idle_runs{0}, overlapped{0};
  std::thread idler([&] {
    while (sending.load()) {
      compute::cuda::DeviceIdle::run(0, [&] {
        // Aside: no block runs, so nothing is served while the operation runs.
        const std::uint64_t before = rig.server->messages_served();
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        if (rig.server->messages_served() != before) ++overlapped;
        ++idle_runs;
      });
      std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
  });
  constexpr std::uint64_t kThreads = 4, kPerThread = 5'000;
  const ExactlyOnce sent = echo_from_producers(*rig.client, actors, kEcho, kThreads, kPerThread);
  sending = false;
  idler.join();
  EXPECT_EQ(sent.wrong, 0u);
  EXPECT_EQ(sent.missing_or_duplicated, 0u);
  EXPECT_GT(idle_runs.load(), 0);
  EXPECT_EQ(overlapped.load(), 0) << "the kernel served messages while it was aside";
  EXPECT_TRUE(rig.server->kernel_status().ok());
  std::uint64_t counted = 0;
  for (std::uint32_t actor : actors) counted += rig.deactivate_count(actor);
  EXPECT_EQ(counted, kThreads * kPerThread);
}

// A kernel that finished (stopped) is not relaunched by a later step aside; one that left
// DeviceIdle is not asked at all.
TEST(CudaRingHostTest, AStoppedKernelStaysStoppedAcrossDeviceIdle) {
  {
    HostRig rig(config_of(8));
    ASSERT_NE(rig.server, nullptr);
    const std::uint32_t a = rig.activate();
    ASSERT_TRUE(rig.call(a, kCount, {}).ok());
    rig.server->request_stop();
    ASSERT_TRUE(rig.server->wait().ok());
    ring::with_rings_stepped_aside(0, [] {});  // the public face of DeviceIdle::run
    EXPECT_TRUE(rig.server->wait().ok());
    EXPECT_EQ(std::atomic_ref<std::uint32_t>(rig.memory->header().server_state).load(),
              static_cast<std::uint32_t>(ring::ServerState::stopped));
  }
  EXPECT_EQ(compute::cuda::DeviceIdle::registered(0), 0u) << "a destroyed server has left";
}

}  // namespace

// The shared cases with one shard (as before sharding) and with four (one thread per block).
using HostServers = ::testing::Types<::HostRingServer<1>, ::HostRingServer<4>>;
INSTANTIATE_TYPED_TEST_SUITE_P(CudaRingHostTest, CudaRingCases, HostServers);

}  // namespace gpubridge::testing::cuda_ring
