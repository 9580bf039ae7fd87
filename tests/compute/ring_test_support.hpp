#pragma once
// Helpers shared by the ring protocol tests (CPU server, host-compiled CUDA kernel, GPU kernel).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "gpubridge/compute/ring.hpp"
#include "gpubridge/core/result.hpp"

namespace gpubridge::testing::ring_support {

using Clock = std::chrono::steady_clock;

// A deadline no test reaches.
inline Clock::time_point far_deadline() { return Clock::now() + std::chrono::minutes(5); }

inline std::vector<std::byte> bytes_of(std::uint64_t value) {
  std::vector<std::byte> out(sizeof value);
  std::memcpy(out.data(), &value, sizeof value);
  return out;
}

inline std::uint64_t u64_of(const std::vector<std::byte>& bytes, std::size_t at = 0) {
  std::uint64_t value = 0;
  std::memcpy(&value, bytes.data() + at, sizeof value);
  return value;
}

// The payload of message `id` in the many-producer tests: (id, ~id), 16 bytes.
inline std::vector<std::byte> id_payload(std::uint64_t id) {
  std::vector<std::byte> payload = bytes_of(id);
  const std::vector<std::byte> tail = bytes_of(~id);
  payload.insert(payload.end(), tail.begin(), tail.end());
  return payload;
}

// What the many-producer tests check: every message answered once, with the right reply.
struct ExactlyOnce {
  std::uint64_t wrong = 0;                  // refused sends and wrong or failed replies
  std::uint64_t missing_or_duplicated = 0;  // ids answered other than exactly once
};

// Sends messages 0..threads*per_thread-1 from `threads` threads at once (thread t sends
// t*per_thread onwards): send(id, payload, done) starts message `id` with id_payload(id) and
// returns false when it was refused; otherwise done(id, matches) must be called once, from any
// thread, when its reply arrives. Returns once every message has completed.
template <typename Send>
ExactlyOnce send_from_producers(std::uint64_t threads, std::uint64_t per_thread, Send&& send) {
  const std::uint64_t total = threads * per_thread;
  std::vector<std::atomic<std::uint32_t>> seen(total);
  std::atomic<std::uint64_t> completed{0}, wrong{0};
  const auto done = [&](std::uint64_t id, bool matches) {
    if (matches) {
      seen[id].fetch_add(1);
    } else {
      wrong.fetch_add(1);
    }
    completed.fetch_add(1);
  };
  std::vector<std::thread> producers;
  for (std::uint64_t t = 0; t < threads; ++t) {
    producers.emplace_back([&, t] {
      for (std::uint64_t id = t * per_thread; id < (t + 1) * per_thread; ++id) {
        if (!send(id, id_payload(id), done)) {
          wrong.fetch_add(1);
          completed.fetch_add(1);
        }
      }
    });
  }
  for (auto& p : producers) p.join();
  while (completed.load() < total) std::this_thread::yield();
  ExactlyOnce result;
  result.wrong = wrong.load();
  for (auto& s : seen) result.missing_or_duplicated += s.load() != 1;
  return result;
}

// send_from_producers with each message an echo (handler `echo`, which replies its 16-byte payload)
// to actors[id % actors.size()] through `client`'s callbacks: a right reply carries (id, ~id).
inline ExactlyOnce echo_from_producers(compute::ring::RingClient& client, const std::vector<std::uint32_t>& actors,
                                       std::uint32_t echo, std::uint64_t threads, std::uint64_t per_thread) {
  return send_from_producers(threads, per_thread, [&](std::uint64_t id, const auto& payload, auto& done) {
    return client
        .send_async(actors[id % actors.size()], echo, payload, far_deadline(),
                    [&done, id](Result<compute::ring::Reply> reply) {
                      done(id, reply.ok() && reply->size() == 16 && u64_of(*reply) == id && u64_of(*reply, 8) == ~id);
                    })
        .ok();
  });
}

// What a blocking handler waits on until the test opens it. Thread-safe.
class Gate {
 public:
  void wait() {
    entered_.fetch_add(1);
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return is_open_; });
  }
  void open() {
    {
      std::lock_guard lock(mutex_);
      is_open_ = true;
    }
    cv_.notify_all();
  }
  // Returns once `count` handlers wait (or have waited) on the gate.
  void wait_entered(int count = 1) const {
    while (entered_.load() < count) std::this_thread::yield();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool is_open_ = false;
  std::atomic<int> entered_{0};
};

// Little-endian u32 words, the argument layout of the tests' messaging handlers.
inline std::vector<std::byte> words(std::initializer_list<std::uint32_t> values) {
  std::vector<std::byte> out(values.size() * 4);
  std::size_t at = 0;
  for (std::uint32_t v : values) {
    std::memcpy(out.data() + at, &v, 4);
    at += 4;
  }
  return out;
}

// CPU ring handlers the protocol tests share (HandlerTable::add them).
// Counts the message in the actor's first 8 state bytes and echoes the payload
// (resource_exhausted when the reply does not fit).
inline compute::ring::HandlerSpec counting_echo(std::uint32_t handler_id, std::uint32_t actor_type) {
  return {handler_id, actor_type,
          [](std::span<std::byte> state, std::span<const std::byte> in, std::span<std::byte> out) -> Result<std::size_t> {
            std::uint64_t count = 0;
            std::memcpy(&count, state.data(), sizeof count);
            ++count;
            std::memcpy(state.data(), &count, sizeof count);
            if (in.size() > out.size()) return Error(ErrorCode::resource_exhausted, "reply too small");
            std::memcpy(out.data(), in.data(), in.size());
            return in.size();
          }};
}
// Replies with the payload reversed (resource_exhausted when it does not fit).
inline compute::ring::HandlerSpec reversing(std::uint32_t handler_id, std::uint32_t actor_type) {
  return {handler_id, actor_type,
          [](std::span<std::byte>, std::span<const std::byte> in, std::span<std::byte> out) -> Result<std::size_t> {
            if (in.size() > out.size()) return Error(ErrorCode::resource_exhausted, "reply too small");
            std::reverse_copy(in.begin(), in.end(), out.begin());
            return in.size();
          }};
}
// Waits on `gate` until the test opens it; replies nothing.
inline compute::ring::HandlerSpec waiting_on(std::uint32_t handler_id, std::uint32_t actor_type, Gate* gate) {
  return {handler_id, actor_type,
          [gate](std::span<std::byte>, std::span<const std::byte>, std::span<std::byte>) -> Result<std::size_t> {
            gate->wait();
            return std::size_t{0};
          }};
}
// Kills the server (HandlerTrap).
inline compute::ring::HandlerSpec trapping(std::uint32_t handler_id, std::uint32_t actor_type) {
  return {handler_id, actor_type,
          [](std::span<std::byte>, std::span<const std::byte>, std::span<std::byte>) -> Result<std::size_t> {
            throw compute::ring::HandlerTrap{};
          }};
}

}  // namespace gpubridge::testing::ring_support
