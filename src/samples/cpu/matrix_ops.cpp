// Dense matrix samples: GEMM through OpenBLAS, tiled transpose, LU with partial pivoting and the
// inverse built on it (see algorithms.hpp for the contracts).
#include <cblas.h>

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <string>
#include <utility>

#include "parallel.hpp"

namespace gpubridge::samples {
namespace {

template <typename T>
Status check_matrix(MatrixView<T> m, const std::string& what) {
  if (m.rows == 0 || m.cols == 0) {
    return detail::invalid(what + ": empty matrix (" + std::to_string(m.rows) + " x " +
                           std::to_string(m.cols) + ")");
  }
  std::size_t expected = 0;
  if (!detail::checked_multiply(m.rows, m.cols, expected)) {
    return detail::invalid(what + ": " + std::to_string(m.rows) + " x " + std::to_string(m.cols) +
                           " overflows the element count");
  }
  if (m.values.size() != expected) {
    return detail::invalid(what + ": " + std::to_string(m.rows) + " x " + std::to_string(m.cols) +
                           " matrix holds " + std::to_string(m.values.size()) +
                           " values, expected " + std::to_string(expected));
  }
  return {};
}

// a * b's shape checks; `out` must hold a.rows * b.cols values.
template <typename T>
Status check_matmul(MatrixView<T> a, MatrixView<T> b, std::size_t out_size) {
  if (auto status = check_matrix(a, "matmul: A"); !status) return status;
  if (auto status = check_matrix(b, "matmul: B"); !status) return status;
  if (a.cols != b.rows) {
    return detail::invalid("matmul: inner dimensions differ (A is " + std::to_string(a.rows) +
                           " x " + std::to_string(a.cols) + ", B is " + std::to_string(b.rows) +
                           " x " + std::to_string(b.cols) + ")");
  }
  constexpr auto kMaxBlasDim = static_cast<std::size_t>(INT_MAX);
  if (a.rows > kMaxBlasDim || a.cols > kMaxBlasDim || b.cols > kMaxBlasDim) {
    return detail::invalid("matmul: a dimension exceeds the BLAS index range (INT_MAX)");
  }
  std::size_t count = 0;
  if (!detail::checked_multiply(a.rows, b.cols, count)) {
    return detail::invalid("matmul: the result's element count overflows");
  }
  return detail::check_output("matmul", out_size, count);
}

// BLAS does not read C when beta is 0, so `out` needs no initialisation.
void gemm(MatrixView<float> a, MatrixView<float> b, std::span<float> out) {
  const int m = static_cast<int>(a.rows), k = static_cast<int>(a.cols), n = static_cast<int>(b.cols);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a.values.data(), k,
              b.values.data(), n, 0.0f, out.data(), n);
}
void gemm(MatrixView<double> a, MatrixView<double> b, std::span<double> out) {
  const int m = static_cast<int>(a.rows), k = static_cast<int>(a.cols), n = static_cast<int>(b.cols);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0, a.values.data(), k,
              b.values.data(), n, 0.0, out.data(), n);
}

template <typename T>
Status matmul_into(MatrixView<T> a, MatrixView<T> b, std::span<T> out) {
  if (auto status = check_matmul(a, b, out.size()); !status) return status;
  gemm(a, b, out);
  return {};
}

template <typename T>
Result<Matrix<T>> matmul_owned(const Matrix<T>& a, const Matrix<T>& b) {
  if (auto status = check_matmul(as_view(a), as_view(b), a.rows * b.cols); !status) return status.error();
  Matrix<T> c{a.rows, b.cols, std::vector<T>(a.rows * b.cols)};
  gemm(as_view(a), as_view(b), std::span<T>(c.values));
  return c;
}

template <typename T>
Status transpose_into(MatrixView<T> a, std::span<T> out, Parallelism parallelism) {
  if (auto status = check_matrix(a, "transpose"); !status) return status;
  if (auto status = detail::check_output("transpose", out.size(), a.values.size()); !status) return status;
  constexpr std::size_t kTile = 32;
  const T* source = a.values.data();
  T* destination = out.data();
  const std::size_t tile_rows = (a.rows + kTile - 1) / kTile;
  // Each task owns a band of source rows, i.e. a band of destination columns.
  detail::parallel_for(tile_rows, std::max<std::size_t>(1, 4096 / std::max<std::size_t>(1, a.cols)),
                       detail::resolve_threads(parallelism),
                       [&](std::size_t first_tile, std::size_t last_tile) {
                         const std::size_t row_end = std::min(a.rows, last_tile * kTile);
                         for (std::size_t r0 = first_tile * kTile; r0 < row_end; r0 += kTile) {
                           const std::size_t r1 = std::min(row_end, r0 + kTile);
                           for (std::size_t c0 = 0; c0 < a.cols; c0 += kTile) {
                             const std::size_t c1 = std::min(a.cols, c0 + kTile);
                             for (std::size_t r = r0; r < r1; ++r) {
                               for (std::size_t c = c0; c < c1; ++c) {
                                 destination[c * a.rows + r] = source[r * a.cols + c];
                               }
                             }
                           }
                         }
                       });
  return {};
}

template <typename T>
Result<Matrix<T>> transpose_owned(const Matrix<T>& a, Parallelism parallelism) {
  if (auto status = check_matrix(as_view(a), "transpose"); !status) return status.error();
  Matrix<T> t{a.cols, a.rows, std::vector<T>(a.values.size())};
  if (auto status = transpose_into(as_view(a), std::span<T>(t.values), parallelism); !status) {
    return status.error();
  }
  return t;
}

}  // namespace

Status matmul(MatrixView<float> a, MatrixView<float> b, std::span<float> out) { return matmul_into(a, b, out); }
Status matmul(MatrixView<double> a, MatrixView<double> b, std::span<double> out) {
  return matmul_into(a, b, out);
}
Result<MatrixF32> matmul(const MatrixF32& a, const MatrixF32& b) { return matmul_owned(a, b); }
Result<MatrixF64> matmul(const MatrixF64& a, const MatrixF64& b) { return matmul_owned(a, b); }

Status transpose(MatrixView<float> a, std::span<float> out, Parallelism parallelism) {
  return transpose_into(a, out, parallelism);
}
Status transpose(MatrixView<double> a, std::span<double> out, Parallelism parallelism) {
  return transpose_into(a, out, parallelism);
}
Result<MatrixF32> transpose(const MatrixF32& a, Parallelism parallelism) {
  return transpose_owned(a, parallelism);
}
Result<MatrixF64> transpose(const MatrixF64& a, Parallelism parallelism) {
  return transpose_owned(a, parallelism);
}

double singularity_threshold(std::size_t n, double max_abs_entry) {
  return static_cast<double>(n) * DBL_EPSILON * max_abs_entry;
}

Result<LuFactorization> lu_factorize(const MatrixF64& a, Parallelism parallelism) {
  return lu_factorize(as_view(a), parallelism);
}

Result<LuFactorization> lu_factorize(MatrixView<double> a, Parallelism parallelism) {
  if (auto status = check_matrix(a, "lu_factorize"); !status) return status.error();
  if (a.rows != a.cols) {
    return detail::invalid("lu_factorize: matrix is not square (" + std::to_string(a.rows) +
                           " x " + std::to_string(a.cols) + ")");
  }
  const std::size_t n = a.rows;
  double max_abs = 0.0;
  for (std::size_t i = 0; i < a.values.size(); ++i) {
    if (!std::isfinite(a.values[i])) {
      return detail::invalid("lu_factorize: entry (" + std::to_string(i / n) + ", " +
                             std::to_string(i % n) + ") is not finite");
    }
    max_abs = std::max(max_abs, std::abs(a.values[i]));
  }
  const double threshold = singularity_threshold(n, max_abs);
  const unsigned threads = detail::resolve_threads(parallelism);

  LuFactorization f{MatrixF64{n, n, std::vector<double>(a.values.begin(), a.values.end())}, {}};
  f.pivot_rows.resize(n);
  for (std::size_t i = 0; i < n; ++i) f.pivot_rows[i] = i;
  double* lu = f.lu.values.data();
  for (std::size_t k = 0; k < n; ++k) {
    std::size_t pivot = k;
    double pivot_abs = std::abs(lu[k * n + k]);
    for (std::size_t i = k + 1; i < n; ++i) {
      const double candidate = std::abs(lu[i * n + k]);
      if (candidate > pivot_abs) {
        pivot_abs = candidate;
        pivot = i;
      }
    }
    if (pivot_abs <= threshold) {
      return detail::invalid("matrix is singular to working precision: pivot column " +
                             std::to_string(k) + " (0-based) has largest |pivot| " +
                             detail::format_number(pivot_abs) + " <= n * eps * max|A| = " +
                             detail::format_number(threshold));
    }
    if (pivot != k) {
      std::swap_ranges(lu + k * n, lu + (k + 1) * n, lu + pivot * n);
      std::swap(f.pivot_rows[k], f.pivot_rows[pivot]);
    }
    const double pivot_value = lu[k * n + k];
    const double* pivot_row = lu + k * n;
    const std::size_t trailing = n - k - 1;
    // Rank-1 update of the trailing rows; each row is updated by exactly one thread.
    detail::parallel_for(trailing, std::max<std::size_t>(1, 16384 / std::max<std::size_t>(1, trailing)),
                         threads, [&](std::size_t begin, std::size_t end) {
                           for (std::size_t r = k + 1 + begin; r < k + 1 + end; ++r) {
                             double* row = lu + r * n;
                             const double multiplier = row[k] / pivot_value;
                             row[k] = multiplier;
                             if (multiplier == 0.0) continue;
                             for (std::size_t c = k + 1; c < n; ++c) row[c] -= multiplier * pivot_row[c];
                           }
                         });
  }
  return f;
}

Result<MatrixF64> inverse(const MatrixF64& a, Parallelism parallelism) {
  MatrixF64 x{a.rows, a.cols, std::vector<double>(a.values.size())};
  if (auto status = inverse(as_view(a), std::span<double>(x.values), parallelism); !status) {
    return status.error();
  }
  return x;
}

Status inverse(MatrixView<double> a, std::span<double> out, Parallelism parallelism) {
  auto factorization = lu_factorize(a, parallelism);
  if (!factorization) return factorization.error().with_context("inverse");
  const std::size_t n = a.rows;
  if (auto status = detail::check_output("inverse", out.size(), n * n); !status) return status;
  const double* lu = factorization->lu.values.data();
  const auto& pivot_rows = factorization->pivot_rows;
  double* xv = out.data();
  std::fill(out.begin(), out.end(), 0.0);
  // X starts as P I: row i holds a 1 in column pivot_rows[i]. Each thread then solves
  // L Y = P I and U X = Y on its own band of columns, with row operations (contiguous memory).
  for (std::size_t i = 0; i < n; ++i) xv[i * n + pivot_rows[i]] = 1.0;
  detail::parallel_for(n, std::max<std::size_t>(8, 64 * 1024 / (n * n) + 1),
                       detail::resolve_threads(parallelism),
                       [&](std::size_t c0, std::size_t c1) {
                         for (std::size_t i = 1; i < n; ++i) {
                           double* row = xv + i * n;
                           for (std::size_t k = 0; k < i; ++k) {
                             const double l = lu[i * n + k];
                             if (l == 0.0) continue;
                             const double* source = xv + k * n;
                             for (std::size_t c = c0; c < c1; ++c) row[c] -= l * source[c];
                           }
                         }
                         for (std::size_t i = n; i-- > 0;) {
                           double* row = xv + i * n;
                           for (std::size_t k = i + 1; k < n; ++k) {
                             const double u = lu[i * n + k];
                             if (u == 0.0) continue;
                             const double* source = xv + k * n;
                             for (std::size_t c = c0; c < c1; ++c) row[c] -= u * source[c];
                           }
                           const double diagonal = lu[i * n + i];
                           for (std::size_t c = c0; c < c1; ++c) row[c] /= diagonal;
                         }
                       });
  return {};
}

}  // namespace gpubridge::samples
