#include "compute/ring/kernel_lifecycle.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <utility>

namespace gpubridge::compute::ring::detail {

namespace {

void set_server_state(RingMemory& memory, ServerState state) {
  std::atomic_ref<std::uint32_t>(memory.header().server_state)
      .store(static_cast<std::uint32_t>(state), std::memory_order_release);
}
void write_word(std::uint32_t& word, std::uint32_t value) {
  std::atomic_ref<std::uint32_t>(word).store(value, std::memory_order_release);
}
Error lifecycle_error(ErrorCode code, std::string message) { return Error(code, std::move(message), "ring kernel"); }

constexpr std::chrono::seconds kStepAsideNotice{10};

}  // namespace

Status KernelLifecycle::launch_locked() {
  KernelControl& control = platform_.control();
  for (std::uint32_t i = 0; i < shards_; ++i) {
    write_word(control.shards[i].exit_reason, static_cast<std::uint32_t>(KernelExit::running));
  }
  if (Status s = platform_.launch(); !s) return s;
  ++launches_;
  return {};
}

void KernelLifecycle::finish_locked() {
  phase_ = Phase::finished;
  if (Status s = platform_.copy_back(); !s) error_ = s.error();
  phase_changed_.notify_all();
}

void KernelLifecycle::fail_locked(Error error) {
  error_ = std::move(error);
  phase_ = Phase::finished;
  // Nothing serves the ring any more: callers see a stopped server instead of waiting.
  set_server_state(memory_, ServerState::stopped);
  phase_changed_.notify_all();
}

Status KernelLifecycle::start(const std::function<Status()>& prepare) {
  return cuda::DeviceIdle::launch(device_, this, [&]() -> Status {
    std::lock_guard lock(mutex_);
    if (phase_ != Phase::created) {
      return lifecycle_error(ErrorCode::failed_precondition, "ring server already started");
    }
    if (Status s = prepare(); !s) return s;
    set_server_state(memory_, ServerState::running);
    if (Status s = launch_locked(); !s) {
      fail_locked(s.error());
      return s;
    }
    phase_ = Phase::running;
    return {};
  });
}

Status KernelLifecycle::wait() {
  for (;;) {
    std::uint64_t launch = 0;
    {
      std::lock_guard lock(mutex_);
      if (phase_ == Phase::created) return {};
      if (phase_ == Phase::finished) return error_ ? Status(*error_) : Status{};
      launch = launches_;
    }
    // Without the lock, so that the kernel can step aside and come back meanwhile.
    const Status returned = platform_.wait_returned();
    std::unique_lock lock(mutex_);
    phase_changed_.wait(lock, [&] { return phase_ != Phase::stepped_aside; });
    if (phase_ == Phase::finished) continue;
    if (!returned) {
      fail_locked(returned.error());
      continue;
    }
    if (launches_ != launch) continue;  // relaunched after stepping aside: wait for the new launch
    if (all_shards_finished(platform_.control(), shards_)) {
      finish_locked();
    } else {
      fail_locked(lifecycle_error(ErrorCode::internal, "ring kernel returned without finishing"));
    }
  }
}

bool KernelLifecycle::step_aside() noexcept {
  std::lock_guard lock(mutex_);
  if (phase_ != Phase::running) return false;
  KernelControl& control = platform_.control();
  write_word(control.yield, 1);
  // Each block returns after its current message; a handler that never returns holds every
  // operation that needs the device idle: said on stderr, every kStepAsideNotice, while it lasts.
  Status returned;
  for (std::chrono::seconds waited{0};;) {
    if (std::optional<Status> r = platform_.wait_returned_for(kStepAsideNotice)) {
      returned = std::move(*r);
      break;
    }
    waited += kStepAsideNotice;
    std::fprintf(stderr,
                 "gpubridge: a ring kernel on CUDA device %d has not stepped aside after %lld s (a handler that "
                 "does not return?); operations that need the device idle wait for it\n",
                 device_, static_cast<long long>(waited.count()));
  }
  write_word(control.yield, 0);
  if (!returned) {
    fail_locked(returned.error());
    return false;
  }
  if (all_shards_finished(control, shards_)) {
    finish_locked();  // it stopped (stop/drain) before it saw the request
    return false;
  }
  // No heartbeats until it is back, for as long as the operation takes: not a dead server.
  set_server_state(memory_, ServerState::stepped_aside);
  phase_ = Phase::stepped_aside;
  return true;
}

void KernelLifecycle::come_back() noexcept {
  std::lock_guard lock(mutex_);
  if (phase_ != Phase::stepped_aside) return;
  set_server_state(memory_, ServerState::running);
  if (Status s = launch_locked(); !s) {
    fail_locked(s.error());
    return;
  }
  phase_ = Phase::running;
  phase_changed_.notify_all();
}

Status KernelLifecycle::reload(const std::function<Status()>& replace) {
  bool was_running = false;
  {
    std::lock_guard lock(mutex_);
    was_running = phase_ == Phase::running;
  }
  if (Status s = cuda::DeviceIdle::run(device_, replace); !s) return s;  // the old code came back
  std::lock_guard lock(mutex_);
  if (was_running && phase_ == Phase::finished && error_) return *error_;  // the relaunch failed
  return {};
}

Status KernelLifecycle::status() const {
  {
    std::lock_guard lock(mutex_);
    if (error_) return *error_;
    if (phase_ == Phase::created || phase_ == Phase::finished) return {};
  }
  return platform_.poll();
}

}  // namespace gpubridge::compute::ring::detail
