#pragma once
// The kernel catalog: stable kernel ids, typed signatures, and one implementation per backend.
// Every kernel has a native CPU implementation; kernels with a portable GPU implementation run
// on CUDA (NVRTC) and OpenCL from one source. A catalog is immutable once handed to an Executor
// (all its members are then safe to call from any thread).
//
// Shapes: element-wise kernels take inputs of one common length n and give n elements
// (like_inputs) or 1 (scalar). Kernels with their own shapes (OutputShape::computed: matrices,
// images, graphs) take inputs of different lengths; their KernelSignature::shape checks the
// lengths against the scalars (e.g. the matrix dimensions) and gives the output's length.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gpubridge/compute/dtype.hpp"
#include "gpubridge/compute/tensor.hpp"
#include "gpubridge/core/result.hpp"

namespace gpubridge::compute {

namespace detail {
struct GpuRecipe;  // portable GPU implementation (src/compute/gpu), opaque to users
}

// Largest number of elements one input may have; larger inputs are rejected at the boundary.
inline constexpr std::size_t kMaxElements = std::size_t{1} << 32;

enum class OutputShape {
  like_inputs,  // one output of n elements
  scalar,       // one output of 1 element (a reduction)
  computed,     // inputs of their own lengths, output length from KernelSignature::shape
};

// Checks the inputs' lengths against the scalars and returns the output's element count (>= 1).
// Errors: invalid_argument naming the kernel and the mismatch, e.g.
// "matrix.multiply: a has 12 elements, m*k = 3*5 = 15". Must be pure and thread-safe.
using ShapeFn = std::function<Result<std::size_t>(std::span<const std::size_t> input_counts,
                                                  std::span<const double> scalars)>;

struct KernelSignature {
  std::vector<std::string> inputs;   // vector inputs of the call's dtype; length n each unless computed
  std::vector<std::string> scalars;  // scalar parameters, converted to the call's dtype (computed
                                     // kernels read dimensions from them as doubles)
  OutputShape output = OutputShape::like_inputs;
  std::vector<DType> dtypes;         // element types the kernel accepts
  ShapeFn shape;                     // required for (and only for) OutputShape::computed
};

// The shape of a validated call.
struct CallShape {
  std::size_t n = 0;             // the first input's length (every input's for non-computed kernels)
  std::size_t output_count = 0;  // elements of the output
};

// A request to run one catalog kernel. Input memory must stay valid until the call completes.
struct KernelCall {
  std::string kernel;  // catalog id, e.g. "vector.add"
  DType dtype = DType::f32;
  std::vector<TensorView> inputs;
  std::vector<double> scalars;
};

// Runs `fn(chunk, begin, end)` over [0, n) split into chunk_count(n, min_chunk) contiguous chunks,
// in parallel on the CPU backend's pool; returns when all chunks are done. Chunk boundaries
// depend only on n and min_chunk, so reductions that combine per-chunk partials in chunk
// order are deterministic.
class CpuParallel {
 public:
  virtual ~CpuParallel() = default;
  virtual std::size_t chunk_count(std::size_t n, std::size_t min_chunk) const = 0;
  virtual void for_chunks(std::size_t n, std::size_t min_chunk,
                          const std::function<void(std::size_t, std::size_t, std::size_t)>& fn) = 0;
};

struct CpuKernelArgs {
  DType dtype;
  std::size_t n;                       // the first input's length (every input's unless computed)
  std::span<const void* const> inputs;
  std::span<const double> scalars;
  void* output;                        // output storage of output_count elements, dtype `dtype`
  CpuParallel& parallel;
  std::span<const std::size_t> input_counts;  // each input's length (one per input)
  std::size_t output_count = 0;               // elements of `output`
};

// A CPU implementation writes the output or returns an error (the output is then discarded).
using CpuKernelFn = std::function<Status(const CpuKernelArgs&)>;

// Generated inputs of one verification case of a computed kernel (see verify.hpp).
struct KernelExample {
  std::vector<std::vector<double>> inputs;  // one per signature input, values representable in the dtype
  std::vector<double> scalars;
  std::vector<double> expected;  // an independent reference output for the CPU row; empty: none
  double tolerance = 0;          // max abs error allowed against the CPU implementation (and `expected`)
};
// Example of size `size` (e.g. a matrix dimension) for `dtype`, deterministic in `seed`.
using KernelExampleFn = std::function<KernelExample(std::size_t size, DType dtype, std::uint64_t seed)>;

struct KernelDef {
  std::string id;  // dotted lower-case noun: "vector.add"
  std::string description;
  KernelSignature signature;
  CpuKernelFn cpu;                            // required
  const detail::GpuRecipe* gpu = nullptr;     // optional: CUDA + OpenCL implementation
  // Optional for computed kernels: how `gpubridge verify` generates their cases, and the sizes
  // it passes (element-wise kernels use the generic generator and VerifyOptions::sizes).
  KernelExampleFn example;
  std::vector<std::size_t> example_sizes;
};

class KernelCatalog {
 public:
  // vector.add, vector.axpy, vector.dot, vector.normalize, reduce.sum (f32 and f64);
  // matrix.multiply, matrix.transpose (f32 and f64), matrix.inverse (f64); image.resize,
  // image.gaussian_blur, image.sobel, image.correlate (f32); graph.bfs, graph.pagerank, graph.sssp
  // (f64, CSR arrays). Every kernel has a CPU implementation and a portable GPU one.
  static KernelCatalog with_builtin_kernels();

  // Errors: invalid_argument (bad id, no CPU implementation, empty dtypes, a computed kernel
  // without a shape function or a shape function on another kernel, a GPU recipe without the
  // enqueue entry its shape needs), already_exists (id taken).
  Status add(KernelDef def);

  // not_found (listing the known ids) when the id is unknown.
  Result<const KernelDef*> lookup(std::string_view id) const;
  std::vector<std::string> ids() const;  // sorted

  // Checks a call against its kernel's signature and returns its shape.
  // Errors: not_found (unknown kernel), invalid_argument (dtype the kernel does not accept,
  // input of another dtype, wrong number of inputs or scalars, null data, mismatched lengths,
  // empty input, or what a computed kernel's shape function rejects), out_of_range (more than
  // kMaxElements elements in an input or the output).
  Result<CallShape> validate(const KernelCall& call) const;
  // The same checks on lengths only (no data yet, e.g. a pipeline stage reading an earlier
  // stage's output): kernel, dtype, numbers of inputs and scalars, lengths, the shape function.
  Result<CallShape> validate_shape(std::string_view kernel, DType dtype, std::span<const std::size_t> input_counts,
                                   std::span<const double> scalars) const;

  // The output length of a like_inputs or scalar kernel for inputs of length n (not meaningful
  // for computed kernels: use validate()).
  static std::size_t output_count(const KernelDef& def, std::size_t n) {
    return def.signature.output == OutputShape::scalar ? 1 : n;
  }

 private:
  std::map<std::string, KernelDef, std::less<>> kernels_;
};

}  // namespace gpubridge::compute
