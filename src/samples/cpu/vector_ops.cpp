// Vector samples: add, dot, normalize (see algorithms.hpp for the numerical contract).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "parallel.hpp"

namespace gpubridge::samples {
namespace {

constexpr std::size_t kElementsPerThread = 1 << 16;

template <typename T>
Status check_pair(std::span<const T> a, std::span<const T> b, const char* what) {
  if (a.empty() || b.empty()) return detail::invalid(std::string(what) + ": empty input vector");
  if (a.size() != b.size()) {
    return detail::invalid(std::string(what) + ": vector lengths differ (" +
                           std::to_string(a.size()) + " vs " + std::to_string(b.size()) + ")");
  }
  return {};
}

template <typename T>
Result<std::vector<T>> add_impl(std::span<const T> a, std::span<const T> b,
                                Parallelism parallelism) {
  if (auto status = check_pair(a, b, "vector_add"); !status) return status.error();
  std::vector<T> out(a.size());
  detail::parallel_for(a.size(), kElementsPerThread, detail::resolve_threads(parallelism),
                       [&](std::size_t begin, std::size_t end) {
                         for (std::size_t i = begin; i < end; ++i) out[i] = a[i] + b[i];
                       });
  return out;
}

// Chunked float64 dot product; chunk boundaries do not depend on the thread count.
template <typename T>
double dot_unchecked(std::span<const T> a, std::span<const T> b, Parallelism parallelism) {
  const std::size_t chunks = (a.size() + kDotChunk - 1) / kDotChunk;
  std::vector<double> partial(chunks, 0.0);
  detail::parallel_for(chunks, kElementsPerThread / kDotChunk, detail::resolve_threads(parallelism),
                       [&](std::size_t first_chunk, std::size_t last_chunk) {
                         for (std::size_t chunk = first_chunk; chunk < last_chunk; ++chunk) {
                           const std::size_t begin = chunk * kDotChunk;
                           const std::size_t end = std::min(a.size(), begin + kDotChunk);
                           double sum = 0.0;
                           for (std::size_t i = begin; i < end; ++i) {
                             sum += static_cast<double>(a[i]) * static_cast<double>(b[i]);
                           }
                           partial[chunk] = sum;
                         }
                       });
  double total = 0.0;
  for (double value : partial) total += value;
  return total;
}

template <typename T>
Result<double> dot_impl(std::span<const T> a, std::span<const T> b, Parallelism parallelism) {
  if (auto status = check_pair(a, b, "vector_dot"); !status) return status.error();
  return dot_unchecked(a, b, parallelism);
}

template <typename T>
Result<std::vector<T>> normalize_impl(std::span<const T> x, Parallelism parallelism) {
  if (x.empty()) return detail::invalid("vector_normalize: empty input vector");
  const double norm = std::sqrt(dot_unchecked(x, x, parallelism));
  if (norm == 0.0) return detail::invalid("vector_normalize: the vector has zero norm");
  if (!std::isfinite(norm)) {
    return detail::invalid("vector_normalize: the norm is not finite (" + detail::format_number(norm) +
                           "); the vector holds inf/NaN or overflows");
  }
  std::vector<T> out(x.size());
  detail::parallel_for(x.size(), kElementsPerThread, detail::resolve_threads(parallelism),
                       [&](std::size_t begin, std::size_t end) {
                         for (std::size_t i = begin; i < end; ++i) {
                           out[i] = static_cast<T>(static_cast<double>(x[i]) / norm);
                         }
                       });
  return out;
}

}  // namespace

Result<std::vector<float>> vector_add(std::span<const float> a, std::span<const float> b,
                                      Parallelism parallelism) {
  return add_impl(a, b, parallelism);
}
Result<std::vector<double>> vector_add(std::span<const double> a, std::span<const double> b,
                                       Parallelism parallelism) {
  return add_impl(a, b, parallelism);
}
Result<double> vector_dot(std::span<const float> a, std::span<const float> b,
                          Parallelism parallelism) {
  return dot_impl(a, b, parallelism);
}
Result<double> vector_dot(std::span<const double> a, std::span<const double> b,
                          Parallelism parallelism) {
  return dot_impl(a, b, parallelism);
}
Result<std::vector<float>> vector_normalize(std::span<const float> x, Parallelism parallelism) {
  return normalize_impl(x, parallelism);
}
Result<std::vector<double>> vector_normalize(std::span<const double> x,
                                             Parallelism parallelism) {
  return normalize_impl(x, parallelism);
}

}  // namespace gpubridge::samples
