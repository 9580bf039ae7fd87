#pragma once
// The kernel catalog: stable kernel ids, typed signatures, and one implementation per backend.
// Every kernel has a native CPU implementation; kernels with a portable GPU implementation run
// on CUDA (NVRTC) and OpenCL from one source. A catalog is immutable once handed to an Executor.
#include <cstddef>
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
};

struct KernelSignature {
  std::vector<std::string> inputs;   // vector inputs: all of length n and of the call's dtype
  std::vector<std::string> scalars;  // scalar parameters, converted to the call's dtype
  OutputShape output = OutputShape::like_inputs;
  std::vector<DType> dtypes;         // element types the kernel accepts
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
  std::size_t n;                       // length of every input
  std::span<const void* const> inputs;
  std::span<const double> scalars;
  void* output;                        // output storage of the signature's shape, dtype `dtype`
  CpuParallel& parallel;
};

// A CPU implementation writes the output or returns an error (the output is then discarded).
using CpuKernelFn = std::function<Status(const CpuKernelArgs&)>;

struct KernelDef {
  std::string id;  // dotted lower-case noun: "vector.add"
  std::string description;
  KernelSignature signature;
  CpuKernelFn cpu;                            // required
  const detail::GpuRecipe* gpu = nullptr;     // optional: CUDA + OpenCL implementation
};

class KernelCatalog {
 public:
  // vector.add, vector.axpy, vector.dot, vector.normalize, reduce.sum (f32 and f64).
  static KernelCatalog with_builtin_kernels();

  // Errors: invalid_argument (bad id, no CPU implementation, empty dtypes),
  // already_exists (id taken).
  Status add(KernelDef def);

  // not_found (listing the known ids) when the id is unknown.
  Result<const KernelDef*> lookup(std::string_view id) const;
  std::vector<std::string> ids() const;  // sorted

  // Checks a call against its kernel's signature and returns n, the common input length.
  // Errors: not_found (unknown kernel), invalid_argument (dtype the kernel does not accept,
  // input of another dtype, wrong number of inputs or scalars, null data, mismatched lengths,
  // empty input), out_of_range (more than kMaxElements elements).
  Result<std::size_t> validate(const KernelCall& call) const;

  static std::size_t output_count(const KernelDef& def, std::size_t n) {
    return def.signature.output == OutputShape::scalar ? 1 : n;
  }

 private:
  std::map<std::string, KernelDef, std::less<>> kernels_;
};

}  // namespace gpubridge::compute
