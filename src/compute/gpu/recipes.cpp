// GPU recipes of the built-in kernels (see gpu_recipe.hpp).
#include <array>
#include <cmath>

#include "gpu_recipe.hpp"

namespace gpubridge::compute::detail {

std::uint64_t elementwise_groups(std::size_t n) {
  const std::uint64_t groups = (n + kGroupSize - 1) / kGroupSize;
  return groups < kMaxElementwiseGroups ? groups : kMaxElementwiseGroups;
}

std::uint64_t reduce_groups(std::size_t n) {
  const std::uint64_t groups = (n + kGroupSize - 1) / kGroupSize;
  return groups < kMaxReduceGroups ? groups : kMaxReduceGroups;
}

namespace {

using A = LaunchArg;

Status enqueue_add(GpuLauncher& l, std::size_t n, std::span<const double>) {
  const std::array args{A::buffer(Slot::input0), A::buffer(Slot::input1), A::buffer(Slot::output), A::size(n)};
  return l.launch("gb_add", elementwise_groups(n), args);
}

Status enqueue_axpy(GpuLauncher& l, std::size_t n, std::span<const double> scalars) {
  const std::array args{A::value(scalars[0]), A::buffer(Slot::input0), A::buffer(Slot::input1),
                        A::buffer(Slot::output), A::size(n)};
  return l.launch("gb_axpy", elementwise_groups(n), args);
}

// Two-stage reduction: `partial_entry` writes one partial per group to scratch, then a single
// group sums the partials into `dst`.
Status reduce_into(GpuLauncher& l, std::string_view partial_entry, std::span<const LaunchArg> inputs,
                   std::size_t n, Slot dst) {
  const std::uint64_t groups = reduce_groups(n);
  std::array<LaunchArg, 4> args{};
  std::size_t k = 0;
  for (const auto& a : inputs) args[k++] = a;
  args[k++] = A::buffer(Slot::scratch);
  args[k++] = A::size(n);
  if (Status s = l.launch(partial_entry, groups, std::span(args.data(), k)); !s) return s;
  const std::array final_args{A::buffer(Slot::scratch), A::buffer(dst), A::size(groups)};
  return l.launch("gb_sum_partials", 1, final_args);
}

Status enqueue_dot(GpuLauncher& l, std::size_t n, std::span<const double>) {
  const std::array in{A::buffer(Slot::input0), A::buffer(Slot::input1)};
  return reduce_into(l, "gb_dot_partial", in, n, Slot::output);
}

Status enqueue_sum(GpuLauncher& l, std::size_t n, std::span<const double>) {
  const std::array in{A::buffer(Slot::input0)};
  return reduce_into(l, "gb_sum_partial", in, n, Slot::output);
}

Status enqueue_normalize(GpuLauncher& l, std::size_t n, std::span<const double>) {
  const std::array in{A::buffer(Slot::input0)};
  if (Status s = reduce_into(l, "gb_sumsq_partial", in, n, Slot::aux); !s) return s;
  const std::array args{A::buffer(Slot::input0), A::buffer(Slot::aux), A::buffer(Slot::output), A::size(n)};
  return l.launch("gb_div_by_sqrt", elementwise_groups(n), args);
}

// ---- Batched (segmented) forms: one launch per batch, or two for vector.normalize ----

Status batch_add(GpuLauncher& l, const BatchShape& b) {
  // Elementwise without scalars: the concatenation is one long vector.add.
  const std::array args{A::buffer(Slot::input0), A::buffer(Slot::input1), A::buffer(Slot::output),
                        A::size(b.elements)};
  return l.launch("gb_add", elementwise_groups(b.elements), args);
}

Status batch_axpy(GpuLauncher& l, const BatchShape& b) {
  const std::array args{A::buffer(Slot::offsets), A::size(b.segments), A::buffer(Slot::scalars),
                        A::buffer(Slot::input0),  A::buffer(Slot::input1), A::buffer(Slot::output),
                        A::size(b.elements)};
  return l.launch("gb_seg_axpy", elementwise_groups(b.elements), args);
}

Status batch_dot(GpuLauncher& l, const BatchShape& b) {
  const std::array args{A::buffer(Slot::offsets), A::buffer(Slot::input0), A::buffer(Slot::input1),
                        A::buffer(Slot::output)};
  return l.launch("gb_seg_dot", b.segments, args);
}

Status batch_sum(GpuLauncher& l, const BatchShape& b) {
  const std::array args{A::buffer(Slot::offsets), A::buffer(Slot::input0), A::buffer(Slot::output)};
  return l.launch("gb_seg_sum", b.segments, args);
}

Status batch_normalize(GpuLauncher& l, const BatchShape& b) {
  const std::array sumsq{A::buffer(Slot::offsets), A::buffer(Slot::input0), A::buffer(Slot::aux)};
  if (Status s = l.launch("gb_seg_sumsq", b.segments, sumsq); !s) return s;
  const std::array args{A::buffer(Slot::offsets), A::size(b.segments), A::buffer(Slot::input0),
                        A::buffer(Slot::aux),     A::buffer(Slot::output), A::size(b.elements)};
  return l.launch("gb_seg_div_by_sqrt", elementwise_groups(b.elements), args);
}

}  // namespace

// Shared with the CPU implementation: the L2 norm must be positive and finite.
Status check_sum_of_squares(std::span<const double> aux);

namespace {
const GpuBatchRecipe kAddBatch{0, batch_add, nullptr};
const GpuBatchRecipe kAxpyBatch{0, batch_axpy, nullptr};
const GpuBatchRecipe kDotBatch{0, batch_dot, nullptr};
const GpuBatchRecipe kSumBatch{0, batch_sum, nullptr};
const GpuBatchRecipe kNormalizeBatch{1, batch_normalize, check_sum_of_squares};
}  // namespace

const GpuRecipe kVectorAddRecipe{0, 0, enqueue_add, nullptr, &kAddBatch};
const GpuRecipe kVectorAxpyRecipe{0, 0, enqueue_axpy, nullptr, &kAxpyBatch};
const GpuRecipe kVectorDotRecipe{kMaxReduceGroups, 0, enqueue_dot, nullptr, &kDotBatch};
const GpuRecipe kReduceSumRecipe{kMaxReduceGroups, 0, enqueue_sum, nullptr, &kSumBatch};
const GpuRecipe kVectorNormalizeRecipe{kMaxReduceGroups, 1, enqueue_normalize, check_sum_of_squares, &kNormalizeBatch};

}  // namespace gpubridge::compute::detail
