// The built-in kernels: signatures, native CPU implementations, and their GPU recipes.
#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "compute/gpu/gpu_recipe.hpp"
#include "compute/kernels/graph_kernels.hpp"
#include "compute/kernels/image_kernels.hpp"
#include "compute/kernels/matrix_kernels.hpp"
#include "gpubridge/compute/kernel_catalog.hpp"

namespace gpubridge::compute {

namespace detail {

// The L2 norm used by vector.normalize must be positive and finite in the element type.
Status check_sum_of_squares(std::span<const double> aux) {
  const double ss = aux[0];
  if (std::isnan(ss) || std::isinf(ss)) {
    return Error(ErrorCode::invalid_argument,
                 "vector.normalize: the sum of squares is not finite (input holds inf/NaN or overflows the element type)");
  }
  if (ss <= 0) {
    return Error(ErrorCode::invalid_argument,
                 "vector.normalize: the input has zero L2 norm (a zero vector has no direction)");
  }
  return {};
}

}  // namespace detail

namespace {

constexpr std::size_t kMinChunk = 1 << 15;  // elements per CPU chunk

template <typename T>
const T* in(const CpuKernelArgs& a, std::size_t i) {
  return static_cast<const T*>(a.inputs[i]);
}

// The loop bodies capture one pointer (to a local struct) or two references, so that the
// std::function that for_chunks takes stores them inline: a small call allocates nothing, which
// keeps the dynamic batcher's hot path free of per-request heap allocations.

template <typename T>
Status cpu_add(const CpuKernelArgs& a) {
  const struct {
    const T* x;
    const T* y;
    T* out;
  } p{in<T>(a, 0), in<T>(a, 1), static_cast<T*>(a.output)};
  a.parallel.for_chunks(a.n, kMinChunk, [&p](std::size_t, std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) p.out[i] = p.x[i] + p.y[i];
  });
  return {};
}

template <typename T>
Status cpu_axpy(const CpuKernelArgs& a) {
  const struct {
    T alpha;
    const T* x;
    const T* y;
    T* out;
  } p{static_cast<T>(a.scalars[0]), in<T>(a, 0), in<T>(a, 1), static_cast<T*>(a.output)};
  a.parallel.for_chunks(a.n, kMinChunk, [&p](std::size_t, std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) p.out[i] = p.alpha * p.x[i] + p.y[i];
  });
  return {};
}

// Sums term(i) over [0, n) with double accumulators per chunk, combined in chunk order. The
// partial sums live on the stack up to kStackPartials chunks.
template <typename Term>
double parallel_sum(const CpuKernelArgs& a, const Term& term) {
  constexpr std::size_t kStackPartials = 64;
  const std::size_t chunks = a.parallel.chunk_count(a.n, kMinChunk);
  std::array<double, kStackPartials> stack{};
  std::vector<double> heap(chunks > kStackPartials ? chunks : 0, 0.0);
  double* partial = chunks > kStackPartials ? heap.data() : stack.data();
  const auto body = [&term, partial](std::size_t c, std::size_t b, std::size_t e) {
    double acc = 0;
    for (std::size_t i = b; i < e; ++i) acc += term(i);
    partial[c] = acc;
  };
  a.parallel.for_chunks(a.n, kMinChunk, body);
  double total = 0;
  for (std::size_t c = 0; c < chunks; ++c) total += partial[c];
  return total;
}

template <typename T>
Status cpu_dot(const CpuKernelArgs& a) {
  const T* x = in<T>(a, 0);
  const T* y = in<T>(a, 1);
  *static_cast<T*>(a.output) =
      static_cast<T>(parallel_sum(a, [x, y](std::size_t i) { return static_cast<double>(x[i]) * y[i]; }));
  return {};
}

template <typename T>
Status cpu_sum(const CpuKernelArgs& a) {
  const T* x = in<T>(a, 0);
  *static_cast<T*>(a.output) = static_cast<T>(parallel_sum(a, [x](std::size_t i) { return static_cast<double>(x[i]); }));
  return {};
}

template <typename T>
Status cpu_normalize(const CpuKernelArgs& a) {
  const T* x = in<T>(a, 0);
  // Checked in the element type so every backend rejects the same inputs.
  const T ss = static_cast<T>(parallel_sum(a, [x](std::size_t i) {
    const double v = x[i];
    return v * v;
  }));
  const double aux[1] = {static_cast<double>(ss)};
  if (Status s = detail::check_sum_of_squares(aux); !s) return s;
  const struct {
    const T* x;
    T norm;
    T* out;
  } p{x, std::sqrt(ss), static_cast<T*>(a.output)};
  a.parallel.for_chunks(a.n, kMinChunk, [&p](std::size_t, std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e; ++i) p.out[i] = p.x[i] / p.norm;
  });
  return {};
}

template <Status (*F32)(const CpuKernelArgs&), Status (*F64)(const CpuKernelArgs&)>
CpuKernelFn by_dtype() {
  return [](const CpuKernelArgs& a) { return a.dtype == DType::f32 ? F32(a) : F64(a); };
}

const std::vector<DType> kFloatTypes{DType::f32, DType::f64};

}  // namespace

KernelCatalog KernelCatalog::with_builtin_kernels() {
  KernelCatalog c;
  auto must = [](Status s) { s.value(); };  // the built-in definitions are valid by construction
  must(c.add({"vector.add", "out[i] = a[i] + b[i]", {{"a", "b"}, {}, OutputShape::like_inputs, kFloatTypes},
              by_dtype<cpu_add<float>, cpu_add<double>>(), &detail::kVectorAddRecipe}));
  must(c.add({"vector.axpy", "out[i] = alpha * x[i] + y[i]",
              {{"x", "y"}, {"alpha"}, OutputShape::like_inputs, kFloatTypes},
              by_dtype<cpu_axpy<float>, cpu_axpy<double>>(), &detail::kVectorAxpyRecipe}));
  must(c.add({"vector.dot", "out = sum(a[i] * b[i])", {{"a", "b"}, {}, OutputShape::scalar, kFloatTypes},
              by_dtype<cpu_dot<float>, cpu_dot<double>>(), &detail::kVectorDotRecipe}));
  must(c.add({"vector.normalize", "out[i] = x[i] / ||x||_2 (error on a zero or non-finite norm)",
              {{"x"}, {}, OutputShape::like_inputs, kFloatTypes},
              by_dtype<cpu_normalize<float>, cpu_normalize<double>>(), &detail::kVectorNormalizeRecipe}));
  must(c.add({"reduce.sum", "out = sum(x[i])", {{"x"}, {}, OutputShape::scalar, kFloatTypes},
              by_dtype<cpu_sum<float>, cpu_sum<double>>(), &detail::kReduceSumRecipe}));
  must(detail::add_matrix_kernels(c));
  must(detail::add_image_kernels(c));
  must(detail::add_graph_kernels(c));
  return c;
}

}  // namespace gpubridge::compute
