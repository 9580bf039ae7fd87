#include "parallel.hpp"

#include <cstdio>

namespace gpubridge::samples::detail {

unsigned resolve_threads(Parallelism parallelism) noexcept {
  if (parallelism.threads > 0) return parallelism.threads;
  const unsigned hardware = std::thread::hardware_concurrency();
  return hardware > 0 ? hardware : 1;
}

std::string format_number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6g", value);
  return buffer;
}

}  // namespace gpubridge::samples::detail
