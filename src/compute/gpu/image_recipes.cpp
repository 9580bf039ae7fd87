// GPU recipes of the image kernels (see gpu_recipe.hpp and image_source.cpp): image.resize (a tap
// table per axis, then one work-item per output value), image.gaussian_blur (host-computed taps
// stored on the device, then a row pass into scratch and a column pass into the output),
// image.sobel (one work-item per value, the component chosen by the scalar) and image.correlate
// (the user kernel read from global memory). Scalars were validated by the kernels' shape
// functions: height, width, channels, then the operation's parameters.
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "compute/kernels/image_kernels.hpp"
#include "gpu_recipe.hpp"
#include "gpubridge/samples/algorithms.hpp"

namespace gpubridge::compute::detail {

namespace {

using A = LaunchArg;

std::uint64_t dim(std::span<const double> scalars, std::size_t i) { return static_cast<std::uint64_t>(scalars[i]); }

std::uint64_t image_count(std::span<const double> scalars) { return dim(scalars, 0) * dim(scalars, 1) * dim(scalars, 2); }

// ---- image.resize: scratch holds the taps, two values per destination index of each axis.

ShapedBuffers resize_buffers(const ShapedArgs& s) {
  return {static_cast<std::size_t>(2 * (dim(s.scalars, 3) + dim(s.scalars, 4))), 0};
}

Status enqueue_resize(GpuLauncher& l, const ShapedArgs& s) {
  const std::uint64_t h = dim(s.scalars, 0), w = dim(s.scalars, 1), c = dim(s.scalars, 2);
  const std::uint64_t out_h = dim(s.scalars, 3), out_w = dim(s.scalars, 4);
  const std::array taps{A::buffer(Slot::scratch), A::size(h), A::size(w), A::size(out_h), A::size(out_w)};
  if (Status st = l.launch("gb_img_resize_taps", elementwise_groups(out_h + out_w), taps); !st) return st;
  const std::array resize{A::buffer(Slot::input0), A::buffer(Slot::scratch), A::buffer(Slot::output), A::size(h),
                          A::size(w),              A::size(c),               A::size(out_h),          A::size(out_w)};
  return l.launch("gb_img_resize", elementwise_groups(out_h * out_w * c), resize);
}

// ---- image.gaussian_blur: scratch = [row-filtered image (count) | taps, padded to whole launches].

constexpr std::size_t kValuesPerStore = 6;  // gb_img_store6

std::size_t padded_taps(std::size_t taps) { return (taps + kValuesPerStore - 1) / kValuesPerStore * kValuesPerStore; }

ShapedBuffers blur_buffers(const ShapedArgs& s) {
  // sigma was validated by the shape function; should the size still fail, the enqueue reports it.
  auto taps = samples::gaussian_kernel_size(s.scalars[3]);
  if (!taps) return {0, 0};
  return {static_cast<std::size_t>(image_count(s.scalars)) + padded_taps(*taps), 0};
}

// Writes `values` to `slot` from `offset`, kValuesPerStore per launch (zeros past the end).
Status store_values(GpuLauncher& l, Slot slot, std::uint64_t offset, const std::vector<float>& values) {
  for (std::size_t i = 0; i < values.size(); i += kValuesPerStore) {
    std::array<double, kValuesPerStore> v{};
    for (std::size_t j = 0; j < kValuesPerStore && i + j < values.size(); ++j) v[j] = values[i + j];
    const std::array args{A::buffer(slot), A::size(offset + i), A::value(v[0]), A::value(v[1]),
                          A::value(v[2]),  A::value(v[3]),      A::value(v[4]), A::value(v[5])};
    if (Status st = l.launch("gb_img_store6", 1, args); !st) return st;
  }
  return {};
}

Status enqueue_blur(GpuLauncher& l, const ShapedArgs& s) {
  const std::uint64_t h = dim(s.scalars, 0), w = dim(s.scalars, 1), c = dim(s.scalars, 2);
  const std::uint64_t count = h * w * c;
  // The CPU's own taps (OpenCV's float32 coefficients), bit for bit.
  auto taps = samples::gaussian_kernel(s.scalars[3]);
  if (!taps) return Error(taps.error().code(), "image.gaussian_blur: " + taps.error().message());
  const std::uint64_t ntaps = taps->size();
  if (Status st = store_values(l, Slot::scratch, count, *taps); !st) return st;
  const std::array rows{A::buffer(Slot::input0), A::buffer(Slot::scratch), A::buffer(Slot::scratch), A::size(count),
                        A::size(count),          A::size(w),               A::size(c),               A::size(ntaps)};
  if (Status st = l.launch("gb_img_filter_rows", elementwise_groups(count), rows); !st) return st;
  const std::array cols{A::buffer(Slot::scratch), A::buffer(Slot::output), A::buffer(Slot::scratch), A::size(count),
                        A::size(count),           A::size(h),              A::size(w * c),            A::size(ntaps)};
  return l.launch("gb_img_filter_cols", elementwise_groups(count), cols);
}

// ---- image.sobel: scalar 3 is the component (0 dx, 1 dy, 2 magnitude).

Status enqueue_sobel(GpuLauncher& l, const ShapedArgs& s) {
  const std::array args{A::buffer(Slot::input0), A::buffer(Slot::output), A::size(dim(s.scalars, 0)),
                        A::size(dim(s.scalars, 1)), A::size(dim(s.scalars, 2)), A::size(dim(s.scalars, 3))};
  return l.launch("gb_img_sobel", elementwise_groups(image_count(s.scalars)), args);
}

// ---- image.correlate: input1 is the kernel (kernel_rows x kernel_cols, scalars 3 and 4).

Status enqueue_correlate(GpuLauncher& l, const ShapedArgs& s) {
  const std::array args{A::buffer(Slot::input0),     A::buffer(Slot::input1),     A::buffer(Slot::output),
                        A::size(dim(s.scalars, 0)), A::size(dim(s.scalars, 1)), A::size(dim(s.scalars, 2)),
                        A::size(dim(s.scalars, 3)), A::size(dim(s.scalars, 4))};
  return l.launch("gb_img_correlate", elementwise_groups(image_count(s.scalars)), args);
}

}  // namespace

const GpuRecipe kImageResizeRecipe{0, 0, nullptr, nullptr, nullptr, enqueue_resize, resize_buffers, false};
const GpuRecipe kImageGaussianBlurRecipe{0, 0, nullptr, nullptr, nullptr, enqueue_blur, blur_buffers, false};
const GpuRecipe kImageSobelRecipe{0, 0, nullptr, nullptr, nullptr, enqueue_sobel, nullptr, false};
const GpuRecipe kImageCorrelateRecipe{0, 0, nullptr, nullptr, nullptr, enqueue_correlate, nullptr, false};

}  // namespace gpubridge::compute::detail
