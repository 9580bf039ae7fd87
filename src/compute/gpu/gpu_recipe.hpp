#pragma once
// Portable GPU implementations. A kernel's GPU implementation is a recipe: a short sequence of
// launches of entry points from one portable source (compiled by NVRTC for CUDA and as OpenCL C),
// over a fixed set of buffer slots. CUDA and OpenCL backends implement GpuLauncher; the recipe
// is written once.
//
// Buffer slots of one call (all of the call's dtype):
//   input0..input3  n elements each (as many as the signature has inputs), uploaded
//   output          output_count elements, downloaded
//   scratch         recipe.scratch_elems elements, device-only
//   aux             recipe.aux_elems elements, downloaded and passed to recipe.check
//
// A batched recipe (GpuBatchRecipe) runs many requests ("segments") of one kernel in one go over
// the concatenation of their inputs. Its slots:
//   offsets         segments + 1 uint64 (GB_SIZE): segment s is [offsets[s], offsets[s+1])
//   scalars         segments * signature.scalars elements of the dtype, row s = segment s's scalars
//   input0..input3  the concatenated inputs (offsets[segments] elements each)
//   output          like_inputs: the concatenated outputs; scalar: one element per segment
//   aux             aux_elems elements per segment (segment s at s * aux_elems), downloaded and
//                   passed to check one segment at a time
// Segment lengths are >= 1. A segment that fails its check fails alone.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "gpubridge/compute/dtype.hpp"
#include "gpubridge/core/result.hpp"

namespace gpubridge::compute::detail {

inline constexpr unsigned kGroupSize = 256;          // work-items per work-group / threads per block
inline constexpr unsigned kMaxReduceGroups = 1024;   // partial sums per reduction
inline constexpr unsigned kMaxElementwiseGroups = 65535;

enum class Slot : std::uint8_t { input0, input1, input2, input3, output, scratch, aux, offsets, scalars };
inline constexpr std::size_t kSlotCount = 9;

struct LaunchArg {
  enum class Kind : std::uint8_t { buffer, count, scalar };
  Kind kind;
  Slot slot = Slot::input0;  // kind == buffer
  std::uint64_t count = 0;   // kind == count: passed as a 64-bit unsigned
  double scalar = 0;         // kind == scalar: passed as the call's dtype

  static LaunchArg buffer(Slot s) { return {Kind::buffer, s, 0, 0}; }
  static LaunchArg size(std::uint64_t c) { return {Kind::count, Slot::input0, c, 0}; }
  static LaunchArg value(double v) { return {Kind::scalar, Slot::input0, 0, v}; }
};

class GpuLauncher {
 public:
  virtual ~GpuLauncher() = default;
  // Enqueues entry point `entry` with `groups` work-groups of kGroupSize work-items each.
  virtual Status launch(std::string_view entry, std::uint64_t groups, std::span<const LaunchArg> args) = 0;
};

// The shape of one batch: `segments` requests holding `elements` input elements in total.
struct BatchShape {
  std::uint64_t segments = 0;
  std::uint64_t elements = 0;
};

struct GpuBatchRecipe {
  std::size_t aux_elems = 0;  // per segment, at most kMaxBatchAux
  Status (*enqueue)(GpuLauncher& launcher, const BatchShape& shape) = nullptr;
  // Optional: validates one segment's aux values; an error fails that segment only.
  Status (*check)(std::span<const double> aux) = nullptr;
};
inline constexpr std::size_t kMaxBatchAux = 4;

struct GpuRecipe {
  std::size_t scratch_elems = 0;
  std::size_t aux_elems = 0;
  Status (*enqueue)(GpuLauncher& launcher, std::size_t n, std::span<const double> scalars) = nullptr;
  // Optional: validates the downloaded aux values (as doubles); an error discards the output.
  Status (*check)(std::span<const double> aux) = nullptr;
  // Optional: the segmented form used by the dynamic batcher (absent: batches run on the CPU).
  const GpuBatchRecipe* batched = nullptr;
};

// Work-groups for a grid-stride elementwise kernel over n elements.
std::uint64_t elementwise_groups(std::size_t n);
// Work-groups (= partial sums) for a reduction over n elements.
std::uint64_t reduce_groups(std::size_t n);

// The portable kernel source. Compile with GB_T defined as the element type (float / double),
// GB_FP64 as 0 / 1 and GB_GROUP_SIZE as kGroupSize. Entry points are extern "C" under CUDA.
std::string_view portable_kernel_source();
// Compiler defines for a dtype, e.g. {"GB_T=float", "GB_FP64=0", "GB_GROUP_SIZE=256"}.
std::string portable_defines(DType dtype, std::string_view prefix /* "-D" */);

// Recipes of the built-in kernels.
extern const GpuRecipe kVectorAddRecipe;
extern const GpuRecipe kVectorAxpyRecipe;
extern const GpuRecipe kVectorDotRecipe;
extern const GpuRecipe kVectorNormalizeRecipe;
extern const GpuRecipe kReduceSumRecipe;

}  // namespace gpubridge::compute::detail
