// DeviceIdle (src/compute/cuda/device_idle.hpp): operations that need an idle device run with the
// device's persistent kernels stepped aside and relaunched afterwards. The kernels here are fakes
// that record the calls; the CUDA ring server is the real one (cuda_ring_coexistence_test, gpu).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "compute/cuda/device_idle.hpp"

namespace gpubridge::compute::cuda {
namespace {

// A fake persistent kernel: "runs" from launch until step_aside, and again after come_back.
class FakeKernel final : public PersistentKernel {
 public:
  explicit FakeKernel(std::vector<std::string>* log = nullptr, std::string name = "") : log_(log), name_(std::move(name)) {}
  bool step_aside() noexcept override {
    record("aside");
    ++asides;
    if (finished) return false;
    running = false;
    return true;
  }
  void come_back() noexcept override {
    record("back");
    ++backs;
    running = true;
  }
  std::atomic<bool> running{false};
  bool finished = false;  // step_aside() then reports "not running"
  int asides = 0;
  int backs = 0;

 private:
  void record(const char* what) {
    if (log_ != nullptr) log_->push_back(name_ + " " + what);
  }
  std::vector<std::string>* log_;
  std::string name_;
};

Status launch(int device, FakeKernel& k) {
  return DeviceIdle::launch(device, &k, [&]() -> Status {
    k.running = true;
    return {};
  });
}

TEST(DeviceIdleTest, WithoutPersistentKernelsTheOperationJustRuns) {
  EXPECT_EQ(DeviceIdle::registered(0), 0u);
  int ran = 0;
  DeviceIdle::run(0, [&] { ++ran; });
  EXPECT_EQ(DeviceIdle::run(0, [&] { return ran + 41; }), 42);
  EXPECT_EQ(ran, 1);
}

TEST(DeviceIdleTest, KernelsOfTheDeviceStepAsideAroundTheOperationAndComeBackInReverseOrder) {
  std::vector<std::string> log;
  FakeKernel a(&log, "a"), b(&log, "b"), other(&log, "other");
  ASSERT_TRUE(launch(0, a).ok());
  ASSERT_TRUE(launch(0, b).ok());
  ASSERT_TRUE(launch(1, other).ok());
  EXPECT_EQ(DeviceIdle::registered(0), 2u);
  EXPECT_EQ(DeviceIdle::registered(DeviceIdle::kEveryDevice), 3u);

  bool idle_inside = false;
  DeviceIdle::run(0, [&] {
    log.push_back("operation");
    idle_inside = !a.running && !b.running && other.running;
  });
  EXPECT_TRUE(idle_inside) << "the device's kernels, and only they, were aside during the operation";
  EXPECT_EQ(log, (std::vector<std::string>{"a aside", "b aside", "operation", "b back", "a back"}));
  EXPECT_TRUE(a.running && b.running);

  log.clear();
  DeviceIdle::run(DeviceIdle::kEveryDevice, [&] { log.push_back("host memory"); });
  EXPECT_EQ(log.size(), 7u) << "every device's kernels step aside for an operation on all of them";
  EXPECT_EQ(log[3], "host memory");

  DeviceIdle::leave(&a);
  DeviceIdle::leave(&b);
  DeviceIdle::leave(&other);
  EXPECT_EQ(DeviceIdle::registered(DeviceIdle::kEveryDevice), 0u);
  log.clear();
  DeviceIdle::run(0, [&] { log.push_back("operation"); });
  EXPECT_EQ(log, std::vector<std::string>{"operation"}) << "a kernel that left is not asked again";
}

TEST(DeviceIdleTest, AFinishedKernelIsNotRelaunched) {
  FakeKernel k;
  ASSERT_TRUE(launch(0, k).ok());
  k.finished = true;
  DeviceIdle::run(0, [] {});
  EXPECT_EQ(k.asides, 1);
  EXPECT_EQ(k.backs, 0);
  DeviceIdle::leave(&k);
}

TEST(DeviceIdleTest, AFailedLaunchRegistersNothing) {
  FakeKernel k;
  Status failed = DeviceIdle::launch(0, &k, []() -> Status { return Error(ErrorCode::internal, "launch failed"); });
  EXPECT_FALSE(failed.ok());
  EXPECT_EQ(DeviceIdle::registered(0), 0u);
  DeviceIdle::run(0, [] {});
  EXPECT_EQ(k.asides, 0);
}

TEST(DeviceIdleTest, AnOperationInsideALaunchRunsAtOnce) {
  FakeKernel first, second;
  ASSERT_TRUE(launch(0, first).ok());
  int ran = 0;
  ASSERT_TRUE(DeviceIdle::launch(0, &second, [&]() -> Status {
                DeviceIdle::run(0, [&] { ++ran; });  // e.g. a free the launch needs
                second.running = true;
                return {};
              }).ok());
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(first.asides, 0) << "a launch holds every operation off; its own run at once";
  DeviceIdle::leave(&second);
  DeviceIdle::leave(&first);
}

TEST(DeviceIdleTest, NestedOperationsRunAtOnceAndKernelsComeBackOnce) {
  FakeKernel k;
  ASSERT_TRUE(launch(0, k).ok());
  int inner = 0;
  DeviceIdle::run(0, [&] { DeviceIdle::run(DeviceIdle::kEveryDevice, [&] { ++inner; }); });
  EXPECT_EQ(inner, 1);
  EXPECT_EQ(k.asides, 1);
  EXPECT_EQ(k.backs, 1);
  DeviceIdle::leave(&k);
}

TEST(DeviceIdleTest, AnOperationThatThrowsStillBringsTheKernelsBack) {
  FakeKernel k;
  ASSERT_TRUE(launch(0, k).ok());
  EXPECT_THROW(DeviceIdle::run(0, [] { throw std::runtime_error("operation failed"); }), std::runtime_error);
  EXPECT_EQ(k.backs, 1);
  EXPECT_TRUE(k.running);
  int ran = 0;
  DeviceIdle::run(0, [&] { ++ran; });  // the thread is not left marked as inside an operation
  EXPECT_EQ(k.asides, 2);
  EXPECT_EQ(ran, 1);
  DeviceIdle::leave(&k);
}

// A launch waits for an operation in progress (the new kernel must not run beside it), and
// operations from many threads each see the kernel aside.
TEST(DeviceIdleTest, LaunchesAndOperationsFromManyThreadsNeverOverlap) {
  FakeKernel k;
  ASSERT_TRUE(launch(0, k).ok());
  std::atomic<int> overlaps{0}, operations{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        DeviceIdle::run(0, [&] {
          if (k.running) ++overlaps;
          ++operations;
        });
      }
    });
  }
  std::promise<void> inside;
  std::atomic<bool> release{false};
  std::thread slow([&] {
    DeviceIdle::run(0, [&] {
      inside.set_value();
      while (!release) std::this_thread::yield();
    });
  });
  inside.get_future().wait();
  FakeKernel late;
  auto launched = std::async(std::launch::async, [&] { return launch(0, late); });
  EXPECT_EQ(launched.wait_for(std::chrono::milliseconds(50)), std::future_status::timeout)
      << "a launch waits for the operation in progress";
  release = true;
  slow.join();
  EXPECT_TRUE(launched.get().ok());
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(operations.load(), 800);
  EXPECT_TRUE(k.running && late.running);
  DeviceIdle::leave(&late);
  DeviceIdle::leave(&k);
}

}  // namespace
}  // namespace gpubridge::compute::cuda
