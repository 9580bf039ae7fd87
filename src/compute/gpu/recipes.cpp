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

}  // namespace

// Shared with the CPU implementation: the L2 norm must be positive and finite.
Status check_sum_of_squares(std::span<const double> aux);

const GpuRecipe kVectorAddRecipe{0, 0, enqueue_add, nullptr};
const GpuRecipe kVectorAxpyRecipe{0, 0, enqueue_axpy, nullptr};
const GpuRecipe kVectorDotRecipe{kMaxReduceGroups, 0, enqueue_dot, nullptr};
const GpuRecipe kReduceSumRecipe{kMaxReduceGroups, 0, enqueue_sum, nullptr};
const GpuRecipe kVectorNormalizeRecipe{kMaxReduceGroups, 1, enqueue_normalize, check_sum_of_squares};

}  // namespace gpubridge::compute::detail
