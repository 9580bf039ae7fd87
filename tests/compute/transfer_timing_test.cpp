// Timed memory transfers on the OpenCL backend (PoCL in CI): with an observer that wants them,
// a plain call and a batch report each copy with the device's own measurement (OpenCL event
// profiling), in both directions, with the bytes on_bytes_moved reported and times that lie
// inside the call; with an observer that does not want them, none are reported.
#include <algorithm>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "batcher_support.hpp"

namespace gpubridge::compute {
namespace {

using Clock = std::chrono::steady_clock;
using testing::Completions;
using testing::make_job;

struct Moved {
  std::string device;
  TransferDirection direction;
  std::uint64_t bytes;
};

struct Timed {
  std::string device;
  TransferDirection direction;
  std::uint64_t bytes;
  Clock::time_point start;
  std::chrono::nanoseconds duration;
};

// Records bytes moved and timed transfers; asks for timings when constructed to.
class TransferRecorder final : public ComputeObserver {
 public:
  explicit TransferRecorder(bool wants_timing) : wants_timing_(wants_timing) {}

  bool wants_transfer_timing() const noexcept override {
    asked_ = true;
    return wants_timing_;
  }
  void on_bytes_moved(std::string_view device, TransferDirection direction, std::uint64_t bytes) noexcept override {
    std::lock_guard lock(mu_);
    moved_.push_back({std::string(device), direction, bytes});
  }
  void on_transfer_timed(const TransferTiming& t) noexcept override {
    std::lock_guard lock(mu_);
    timed_.push_back({std::string(t.device), t.direction, t.bytes, t.start, t.duration});
  }

  bool asked() const { return asked_; }
  std::vector<Moved> moved() const {
    std::lock_guard lock(mu_);
    return moved_;
  }
  std::vector<Timed> timed() const {
    std::lock_guard lock(mu_);
    return timed_;
  }
  void clear() {
    std::lock_guard lock(mu_);
    moved_.clear();
    timed_.clear();
  }

 private:
  const bool wants_timing_;
  mutable std::atomic<bool> asked_{false};
  mutable std::mutex mu_;
  std::vector<Moved> moved_;
  std::vector<Timed> timed_;
};

std::vector<std::uint64_t> bytes_of(const std::vector<Moved>& moved, TransferDirection d) {
  std::vector<std::uint64_t> out;
  for (const Moved& m : moved) {
    if (m.direction == d) out.push_back(m.bytes);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::uint64_t> bytes_of(const std::vector<Timed>& timed, TransferDirection d) {
  std::vector<std::uint64_t> out;
  for (const Timed& t : timed) {
    if (t.direction == d) out.push_back(t.bytes);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Every timed transfer ran on `device`, took a measured time shorter than the call's wall time,
// and lies within [before, after]; every upload ended before any download started.
void expect_timings_inside(const std::vector<Timed>& timed, const std::string& device, Clock::time_point before,
                           Clock::time_point after) {
  const auto wall = after - before;
  Clock::time_point last_upload_end = Clock::time_point::min();
  Clock::time_point first_download_start = Clock::time_point::max();
  for (const Timed& t : timed) {
    SCOPED_TRACE(std::string(to_string(t.direction)) + " of " + std::to_string(t.bytes) + " bytes");
    EXPECT_EQ(t.device, device);
    EXPECT_GT(t.duration.count(), 0);
    EXPECT_LT(t.duration, wall);
    EXPECT_GE(t.start, before);
    EXPECT_LE(t.start + t.duration, after);
    if (t.direction == TransferDirection::host_to_device) {
      last_upload_end = std::max(last_upload_end, t.start + t.duration);
    } else {
      first_download_start = std::min(first_download_start, t.start);
    }
  }
  EXPECT_LE(last_upload_end, first_download_start) << "one in-order queue: uploads, kernels, downloads";
}

class TransferTimingTest : public ::testing::Test {
 protected:
  void open(bool wants_timing) {
    recorder = std::make_shared<TransferRecorder>(wants_timing);
    executor = testing::make_executor({.enable_cuda = false, .enable_opencl = true, .observer = recorder});
  }
  // One vector.add of n floats on OpenCL, after a warm-up call (which builds the program).
  void run_call(std::size_t n) {
    const auto a = testing::random_f32(n, 1);
    const auto b = testing::random_f32(n, 2);
    const KernelCall call{"vector.add", DType::f32, {TensorView(a), TensorView(b)}, {}};
    auto warm = executor->run(call, testing::only_on(BackendChoice::opencl));
    ASSERT_TRUE(warm.ok()) << warm.error().to_string();
    recorder->clear();
    before = Clock::now();
    auto result = executor->run(call, testing::only_on(BackendChoice::opencl));
    after = Clock::now();
    ASSERT_TRUE(result.ok()) << result.error().to_string();
    device = result->report.device_id;
    ASSERT_EQ(result->outputs.at(0).count(), n);
    EXPECT_FLOAT_EQ(result->outputs[0].at(n - 1), a[n - 1] + b[n - 1]);
  }
  // One batch of `requests` vector.add requests of n floats on OpenCL.
  void run_batch(std::size_t requests, std::size_t n) {
    const KernelDef& add = **executor->catalog().lookup("vector.add");
    BatchPolicy policy;
    policy.max_batch = requests;  // closes by size: one batch
    policy.max_delay = std::chrono::seconds(10);
    auto batcher = DynamicBatcher::create(*executor, "vector.add", DType::f32, policy,
                                          testing::only_on(BackendChoice::opencl));
    ASSERT_TRUE(batcher.ok()) << batcher.error().to_string();
    device = (*batcher)->device().id;
    Completions done;
    std::vector<std::unique_ptr<testing::Job>> jobs;
    for (unsigned i = 0; i < requests; ++i) jobs.push_back(make_job(add, DType::f32, n, i + 1, done));
    recorder->clear();
    before = Clock::now();
    for (auto& j : jobs) ASSERT_TRUE((*batcher)->submit(j->request).ok());
    ASSERT_TRUE(done.wait_for(requests)) << "the batch did not complete";
    after = Clock::now();
    for (auto& j : jobs) {
      ASSERT_TRUE(j->request.status.ok()) << j->request.status.error().to_string();
      EXPECT_EQ(j->request.report.batch_size, requests);
    }
    EXPECT_EQ((*batcher)->stats().batches, 1u);
  }

  std::shared_ptr<TransferRecorder> recorder;
  std::unique_ptr<Executor> executor;
  std::string device;
  Clock::time_point before, after;
};

TEST_F(TransferTimingTest, CallReportsEachCopyWithItsDeviceTime) {
  open(true);
  GB_REQUIRE_BACKEND(executor, BackendKind::opencl);
  EXPECT_TRUE(recorder->asked());
  constexpr std::size_t n = 1 << 16;
  run_call(n);
  const auto timed = recorder->timed();
  const auto moved = recorder->moved();
  // Two inputs up, the output down (vector.add has no aux), exactly as on_bytes_moved said.
  EXPECT_EQ(bytes_of(timed, TransferDirection::host_to_device), (std::vector<std::uint64_t>{n * 4, n * 4}));
  EXPECT_EQ(bytes_of(timed, TransferDirection::device_to_host), (std::vector<std::uint64_t>{n * 4}));
  EXPECT_EQ(bytes_of(timed, TransferDirection::host_to_device), bytes_of(moved, TransferDirection::host_to_device));
  EXPECT_EQ(bytes_of(timed, TransferDirection::device_to_host), bytes_of(moved, TransferDirection::device_to_host));
  expect_timings_inside(timed, device, before, after);
}

TEST_F(TransferTimingTest, BatchReportsItsUploadAndDownloadWithDeviceTimes) {
  open(true);
  GB_REQUIRE_BACKEND(executor, BackendKind::opencl);
  constexpr std::size_t requests = 8;
  constexpr std::size_t n = 1000;
  run_batch(requests, n);
  const auto timed = recorder->timed();
  const auto moved = recorder->moved();
  // One staged upload and one download per batch, of the bytes on_bytes_moved reported: at least
  // every segment's inputs up (plus the offsets table) and every segment's output down.
  const auto up = bytes_of(timed, TransferDirection::host_to_device);
  const auto down = bytes_of(timed, TransferDirection::device_to_host);
  ASSERT_EQ(up.size(), 1u);
  ASSERT_EQ(down.size(), 1u);
  EXPECT_EQ(up, bytes_of(moved, TransferDirection::host_to_device));
  EXPECT_EQ(down, bytes_of(moved, TransferDirection::device_to_host));
  EXPECT_GE(up[0], requests * 2 * n * sizeof(float) + (requests + 1) * sizeof(std::uint64_t));
  EXPECT_GE(down[0], requests * n * sizeof(float));
  expect_timings_inside(timed, device, before, after);
}

TEST_F(TransferTimingTest, NoTimingsWhenTheObserverDoesNotAskForThem) {
  open(false);
  GB_REQUIRE_BACKEND(executor, BackendKind::opencl);
  EXPECT_TRUE(recorder->asked());
  run_call(4096);
  EXPECT_FALSE(recorder->moved().empty()) << "bytes moved are still counted";
  EXPECT_TRUE(recorder->timed().empty());
  run_batch(4, 256);
  EXPECT_FALSE(recorder->moved().empty());
  EXPECT_TRUE(recorder->timed().empty());
}

TEST(TransferTimingDefaults, AnObserverAsksForNoTimingsUnlessItSaysSo) {
  const ComputeObserver plain;
  EXPECT_FALSE(plain.wants_transfer_timing());
}

}  // namespace
}  // namespace gpubridge::compute
