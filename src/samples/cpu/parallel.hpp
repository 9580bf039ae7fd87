#pragma once
// Internal helpers shared by the CPU sample algorithms: a fork-join parallel-for over std::thread
// and input checks. Not part of the public API.
#include <cstddef>
#include <exception>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gpubridge/core/error.hpp"
#include "gpubridge/core/result.hpp"
#include "gpubridge/samples/algorithms.hpp"

namespace gpubridge::samples::detail {

// Threads to use for `parallelism` (at least 1).
unsigned resolve_threads(Parallelism parallelism) noexcept;

// Calls body(begin, end) on disjoint contiguous ranges covering [0, count), on at most `threads`
// threads (the caller's thread is one of them), each range at least `min_per_thread` long unless
// count is smaller. Runs inline when one range suffices. The first exception thrown by a body is
// rethrown after every thread has joined.
template <typename Body>
void parallel_for(std::size_t count, std::size_t min_per_thread, unsigned threads, Body&& body) {
  if (count == 0) return;
  if (min_per_thread == 0) min_per_thread = 1;
  std::size_t parts = count / min_per_thread;
  if (parts > threads) parts = threads;
  if (parts <= 1) {
    body(std::size_t{0}, count);
    return;
  }
  std::vector<std::exception_ptr> errors(parts);
  std::vector<std::thread> workers;
  workers.reserve(parts - 1);
  auto range_of = [&](std::size_t part) {
    return std::pair<std::size_t, std::size_t>{count * part / parts, count * (part + 1) / parts};
  };
  auto run_part = [&](std::size_t part) {
    try {
      auto [begin, end] = range_of(part);
      body(begin, end);
    } catch (...) {
      errors[part] = std::current_exception();
    }
  };
  for (std::size_t part = 1; part < parts; ++part) workers.emplace_back(run_part, part);
  run_part(0);
  for (auto& worker : workers) worker.join();
  for (auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
}

inline Error invalid(std::string message) {
  return Error(ErrorCode::invalid_argument, std::move(message));
}

// A double in %.6g form, for error messages.
std::string format_number(double value);

// An output span must hold exactly the result's `expected` element count.
inline Status check_output(const char* what, std::size_t actual, std::size_t expected) {
  if (actual == expected) return {};
  return invalid(std::string(what) + ": output holds " + std::to_string(actual) + " values, expected " +
                 std::to_string(expected));
}

// a * b, or false when it overflows std::size_t.
inline bool checked_multiply(std::size_t a, std::size_t b, std::size_t& product) noexcept {
  return !__builtin_mul_overflow(a, b, &product);
}

}  // namespace gpubridge::samples::detail
