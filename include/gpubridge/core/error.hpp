#pragma once
// One error type for the whole project. Codes follow gRPC's canonical status codes because
// errors cross silos over gRPC; conversions from backend errors live next to each backend.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace gpubridge {

enum class ErrorCode : std::uint8_t {
  ok = 0,
  cancelled = 1,
  unknown = 2,
  invalid_argument = 3,
  deadline_exceeded = 4,
  not_found = 5,
  already_exists = 6,
  permission_denied = 7,
  resource_exhausted = 8,
  failed_precondition = 9,
  aborted = 10,
  out_of_range = 11,
  unimplemented = 12,
  internal = 13,
  unavailable = 14,
  data_loss = 15,
  unauthenticated = 16,
};

std::string_view to_string(ErrorCode code) noexcept;

// An error: a code, a human-readable message, and optional context (what was being done).
class Error {
 public:
  Error() = default;
  Error(ErrorCode code, std::string message, std::string context = {})
      : code_(code), message_(std::move(message)), context_(std::move(context)) {}

  ErrorCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  const std::string& context() const noexcept { return context_; }
  bool ok() const noexcept { return code_ == ErrorCode::ok; }

  // Returns a copy with `outer` prepended to the context ("outer: inner").
  Error with_context(std::string_view outer) const;
  // "<code>: <message> [<context>]"
  std::string to_string() const;

 private:
  ErrorCode code_ = ErrorCode::ok;
  std::string message_;
  std::string context_;
};

// Exception carrying an Error, for code paths that use exceptions (coroutines, constructors).
class ErrorException : public std::runtime_error {
 public:
  explicit ErrorException(Error error);
  const Error& error() const noexcept { return error_; }

 private:
  Error error_;
};

}  // namespace gpubridge
