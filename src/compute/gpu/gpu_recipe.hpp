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
//
// Kernels with their own shapes (OutputShape::computed) run enqueue_shaped instead of enqueue:
// input i has ShapedArgs::input_counts[i] elements, output ShapedArgs::output_count, and scratch
// and aux the sizes shaped_buffers() gives for the shape. They have no batched form.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

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

// A row-major GEMM over buffer slots of the call's dtype: c (m x n) = a (m x k) * b (k x n).
struct GemmArgs {
  std::uint64_t m = 0, k = 0, n = 0;
  Slot a = Slot::input0;
  Slot b = Slot::input1;
  Slot c = Slot::output;
};

// One call's launch sequence on one device queue. Not thread-safe: a launcher belongs to the
// thread enqueueing one call (which holds the queue for it).
class GpuLauncher {
 public:
  virtual ~GpuLauncher() = default;
  // Enqueues entry point `entry` with `groups` work-groups of kGroupSize work-items each.
  virtual Status launch(std::string_view entry, std::uint64_t groups, std::span<const LaunchArg> args) = 0;
  // Synchronous read-back of elements [offset, offset + count) of `slot`, as doubles, for recipes
  // that decide on the host (LU pivots, convergence checks). It WAITS for all work queued so
  // far on this call's queue, so use it sparingly. Default: unimplemented.
  virtual Result<std::vector<double>> read(Slot slot, std::size_t offset, std::size_t count);
  // True when this backend runs GEMM through a vendor BLAS (CUDA: cuBLAS). A recipe must then
  // call gemm() and never substitute its portable kernel; when false it runs the portable kernel.
  virtual bool provides_blas() const { return false; }
  // Enqueues c = a * b with the vendor BLAS. failed_precondition when the BLAS is unavailable
  // (the message says why) or when provides_blas() is false.
  virtual Status gemm(const GemmArgs& args);
};

// The shape of one call of a computed kernel.
struct ShapedArgs {
  std::span<const std::size_t> input_counts;  // one per input
  std::size_t output_count = 0;
  std::span<const double> scalars;
};

// Scratch and aux elements a computed kernel's recipe needs for one shape.
struct ShapedBuffers {
  std::size_t scratch_elems = 0;
  std::size_t aux_elems = 0;
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
  // Computed kernels: these instead of enqueue and the fixed scratch/aux sizes above.
  Status (*enqueue_shaped)(GpuLauncher& launcher, const ShapedArgs& args) = nullptr;
  ShapedBuffers (*shaped_buffers)(const ShapedArgs& args) = nullptr;
  // Runs GEMM through GpuLauncher::gemm where the backend provides a BLAS (see provides_blas).
  bool uses_blas = false;
};

// Scratch and aux sizes of a call: the shaped ones for computed kernels, the fixed ones otherwise.
inline ShapedBuffers buffers_for(const GpuRecipe& recipe, const ShapedArgs& args) {
  if (recipe.shaped_buffers != nullptr) return recipe.shaped_buffers(args);
  return {recipe.scratch_elems, recipe.aux_elems};
}
// Enqueues the recipe for one call: enqueue_shaped when it has one, enqueue(n, scalars) otherwise.
inline Status enqueue_recipe(const GpuRecipe& recipe, GpuLauncher& launcher, const ShapedArgs& args) {
  if (recipe.enqueue_shaped != nullptr) return recipe.enqueue_shaped(launcher, args);
  return recipe.enqueue(launcher, args.input_counts.empty() ? 0 : args.input_counts[0], args.scalars);
}

// Work-groups for a grid-stride elementwise kernel over n elements.
std::uint64_t elementwise_groups(std::size_t n);
// Work-groups (= partial sums) for a reduction over n elements.
std::uint64_t reduce_groups(std::size_t n);

// The portable kernel source. Compile with GB_T defined as the element type (float / double),
// GB_FP64 as 0 / 1 and GB_GROUP_SIZE as kGroupSize. Entry points are extern "C" under CUDA.
std::string_view portable_kernel_source();
// The families' parts of it (appended to the core source; may use its macros and helpers).
std::string_view image_kernel_source();
std::string_view graph_kernel_source();
// Compiler defines for a dtype, e.g. {"GB_T=float", "GB_FP64=0", "GB_GROUP_SIZE=256"}.
std::string portable_defines(DType dtype, std::string_view prefix /* "-D" */);

// Recipes of the built-in kernels.
extern const GpuRecipe kVectorAddRecipe;
extern const GpuRecipe kVectorAxpyRecipe;
extern const GpuRecipe kVectorDotRecipe;
extern const GpuRecipe kVectorNormalizeRecipe;
extern const GpuRecipe kReduceSumRecipe;
extern const GpuRecipe kMatrixMultiplyRecipe;
extern const GpuRecipe kMatrixTransposeRecipe;
extern const GpuRecipe kMatrixInverseRecipe;

// Matrix tiles: kTile x kTile work-items per work-group (= kGroupSize).
inline constexpr unsigned kTile = 16;
static_assert(kTile * kTile == kGroupSize, "the tiled matrix kernels use one work-item per tile element");

}  // namespace gpubridge::compute::detail
