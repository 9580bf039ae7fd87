#include "gpubridge/core/error.hpp"

namespace gpubridge {

std::string_view to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::ok: return "ok";
    case ErrorCode::cancelled: return "cancelled";
    case ErrorCode::unknown: return "unknown";
    case ErrorCode::invalid_argument: return "invalid_argument";
    case ErrorCode::deadline_exceeded: return "deadline_exceeded";
    case ErrorCode::not_found: return "not_found";
    case ErrorCode::already_exists: return "already_exists";
    case ErrorCode::permission_denied: return "permission_denied";
    case ErrorCode::resource_exhausted: return "resource_exhausted";
    case ErrorCode::failed_precondition: return "failed_precondition";
    case ErrorCode::aborted: return "aborted";
    case ErrorCode::out_of_range: return "out_of_range";
    case ErrorCode::unimplemented: return "unimplemented";
    case ErrorCode::internal: return "internal";
    case ErrorCode::unavailable: return "unavailable";
    case ErrorCode::data_loss: return "data_loss";
    case ErrorCode::unauthenticated: return "unauthenticated";
  }
  return "invalid_error_code";
}

Error Error::with_context(std::string_view outer) const {
  std::string ctx(outer);
  if (!context_.empty()) {
    ctx += ": ";
    ctx += context_;
  }
  return Error(code_, message_, std::move(ctx));
}

std::string Error::to_string() const {
  std::string s(gpubridge::to_string(code_));
  s += ": ";
  s += message_;
  if (!context_.empty()) {
    s += " [";
    s += context_;
    s += "]";
  }
  return s;
}

ErrorException::ErrorException(Error error)
    : std::runtime_error(error.to_string()), error_(std::move(error)) {}

}  // namespace gpubridge
