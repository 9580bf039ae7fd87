// GPU recipes of the matrix kernels (see gpu_recipe.hpp): matrix.multiply (vendor BLAS where the
// backend provides one, the tiled portable kernel otherwise), matrix.transpose (tiled) and
// matrix.inverse (host-driven LU with partial pivoting, then one work-item per right-hand side).
#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <string>

#include "gpu_recipe.hpp"

namespace gpubridge::compute::detail {

Result<std::vector<double>> GpuLauncher::read(Slot, std::size_t, std::size_t) {
  return Error(ErrorCode::failed_precondition, "this launcher cannot read device memory back during a call");
}

Status GpuLauncher::gemm(const GemmArgs&) {
  return Error(ErrorCode::failed_precondition, "this backend provides no BLAS");
}

namespace {

using A = LaunchArg;

// Dimensions were validated by the kernel's shape function: whole numbers in [1, kMaxElements].
std::uint64_t dim(std::span<const double> scalars, std::size_t i) { return static_cast<std::uint64_t>(scalars[i]); }

std::uint64_t tiles(std::uint64_t extent) { return (extent + kTile - 1) / kTile; }

Status enqueue_multiply(GpuLauncher& l, const ShapedArgs& s) {
  const std::uint64_t m = dim(s.scalars, 0), k = dim(s.scalars, 1), n = dim(s.scalars, 2);
  if (l.provides_blas()) return l.gemm({m, k, n, Slot::input0, Slot::input1, Slot::output});
  const std::array args{A::buffer(Slot::input0), A::buffer(Slot::input1), A::buffer(Slot::output),
                        A::size(m),              A::size(k),              A::size(n)};
  return l.launch("gb_matmul_tiled", tiles(m) * tiles(n), args);
}

Status enqueue_transpose(GpuLauncher& l, const ShapedArgs& s) {
  const std::uint64_t m = dim(s.scalars, 0), n = dim(s.scalars, 1);
  const std::array args{A::buffer(Slot::input0), A::buffer(Slot::output), A::size(m), A::size(n)};
  return l.launch("gb_transpose_tiled", tiles(m) * tiles(n), args);
}

// matrix.inverse slots: scratch holds the LU factors (n*n); aux holds the reduction partials and
// the pivot search result; output holds max|A| briefly, then P*I, then the inverse.
ShapedBuffers inverse_buffers(const ShapedArgs& s) {
  const std::uint64_t n = dim(s.scalars, 0);
  return {static_cast<std::size_t>(n * n), std::max<std::size_t>(reduce_groups(n * n), 2)};
}

std::string number(double v) {
  std::array<char, 32> buf{};
  std::snprintf(buf.data(), buf.size(), "%.6g", v);
  return buf.data();
}

Status enqueue_inverse(GpuLauncher& l, const ShapedArgs& s) {
  const std::uint64_t n = dim(s.scalars, 0);
  const std::uint64_t nn = n * n;
  const std::array copy{A::buffer(Slot::input0), A::buffer(Slot::scratch), A::size(nn)};
  if (Status st = l.launch("gb_copy", elementwise_groups(nn), copy); !st) return st;

  // The singularity threshold n * eps * max|A|, the same rule as the CPU implementation.
  const std::uint64_t groups = reduce_groups(nn);
  const std::array partial{A::buffer(Slot::input0), A::buffer(Slot::aux), A::size(nn)};
  if (Status st = l.launch("gb_max_abs_partial", groups, partial); !st) return st;
  const std::array final_max{A::buffer(Slot::aux), A::buffer(Slot::output), A::size(groups)};
  if (Status st = l.launch("gb_max_partials", 1, final_max); !st) return st;
  auto max_abs = l.read(Slot::output, 0, 1);
  if (!max_abs) return max_abs.error();
  if (!std::isfinite((*max_abs)[0])) {
    return Error(ErrorCode::invalid_argument, "matrix.inverse: the matrix holds an infinite or NaN entry");
  }
  const double threshold = static_cast<double>(n) * DBL_EPSILON * (*max_abs)[0];

  const std::array identity{A::buffer(Slot::output), A::size(n)};
  if (Status st = l.launch("gb_identity", elementwise_groups(nn), identity); !st) return st;
  for (std::uint64_t j = 0; j < n; ++j) {
    const std::array pivot_args{A::buffer(Slot::scratch), A::buffer(Slot::aux), A::size(n), A::size(j)};
    if (Status st = l.launch("gb_lu_pivot", 1, pivot_args); !st) return st;
    auto pivot = l.read(Slot::aux, 0, 2);
    if (!pivot) return pivot.error();
    const double pivot_abs = (*pivot)[0];
    if (!(pivot_abs > threshold)) {
      return Error(ErrorCode::invalid_argument,
                   "matrix.inverse: matrix is singular to working precision: pivot column " + std::to_string(j) +
                       " (0-based) has largest |pivot| " + number(pivot_abs) + " <= n * eps * max|A| = " +
                       number(threshold));
    }
    const auto row = static_cast<std::uint64_t>((*pivot)[1]);
    if (row != j) {
      const std::array swap{A::buffer(Slot::scratch), A::buffer(Slot::output), A::size(n), A::size(j), A::size(row)};
      if (Status st = l.launch("gb_swap_rows", elementwise_groups(n), swap); !st) return st;
    }
    const std::uint64_t rest = n - j - 1;
    if (rest == 0) break;
    const std::array column{A::buffer(Slot::scratch), A::size(n), A::size(j)};
    if (Status st = l.launch("gb_lu_scale_column", elementwise_groups(rest), column); !st) return st;
    if (Status st = l.launch("gb_lu_update", elementwise_groups(rest * rest), column); !st) return st;
  }
  const std::array solve{A::buffer(Slot::scratch), A::buffer(Slot::output), A::size(n)};
  if (Status st = l.launch("gb_lu_forward", elementwise_groups(n), solve); !st) return st;
  return l.launch("gb_lu_backward", elementwise_groups(n), solve);
}

}  // namespace

const GpuRecipe kMatrixMultiplyRecipe{0, 0, nullptr, nullptr, nullptr, enqueue_multiply, nullptr, true};
const GpuRecipe kMatrixTransposeRecipe{0, 0, nullptr, nullptr, nullptr, enqueue_transpose, nullptr, false};
const GpuRecipe kMatrixInverseRecipe{0, 0, nullptr, nullptr, nullptr, enqueue_inverse, inverse_buffers, false};

}  // namespace gpubridge::compute::detail
