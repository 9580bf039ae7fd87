// Image kernels. Scalars carry the image's shape: height, width, channels first, then the
// operation's parameters. Shapes are checked by the shape functions before anything runs.
#include "compute/kernels/image_kernels.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "compute/kernels/matrix_kernels.hpp"
#include "gpubridge/samples/algorithms.hpp"

namespace gpubridge::compute::detail {

namespace {

Error invalid(std::string_view kernel, const std::string& what) {
  return Error(ErrorCode::invalid_argument, std::string(kernel) + ": " + what);
}

struct ImageShape {
  std::size_t height = 0, width = 0, channels = 0;
  std::size_t count() const { return height * width * channels; }
};

// height, width, channels from scalars[0..2], checked against the image input's length.
Result<ImageShape> image_shape(std::string_view kernel, std::size_t count, std::span<const double> scalars) {
  auto h = matrix_dimension(kernel, "height", scalars[0]);
  if (!h) return h.error();
  auto w = matrix_dimension(kernel, "width", scalars[1]);
  if (!w) return w.error();
  auto c = matrix_dimension(kernel, "channels", scalars[2]);
  if (!c) return c.error();
  if (*c != 1 && *c != 3) return invalid(kernel, "channels must be 1 or 3, got " + std::to_string(*c));
  if (*h > 65536 || *w > 65536) return invalid(kernel, "images are limited to 65536 x 65536 pixels");
  ImageShape s{*h, *w, *c};
  if (s.count() != count) {
    return invalid(kernel, "image has " + std::to_string(count) + " values, height*width*channels = " +
                               std::to_string(s.height) + "*" + std::to_string(s.width) + "*" + std::to_string(s.channels) +
                               " = " + std::to_string(s.count()));
  }
  return s;
}

// Views of the call's image input and of its output: the algorithms read and write the tensors
// in place.
samples::ImageView image_of(const CpuKernelArgs& a, const ImageShape& s) {
  return samples::ImageView{s.height, s.width, s.channels, {static_cast<const float*>(a.inputs[0]), s.count()}};
}
std::span<float> output_of(const CpuKernelArgs& a) { return {static_cast<float*>(a.output), a.output_count}; }

// The algorithm's status, its error named after the kernel.
Status named(std::string_view kernel, const Status& s) {
  if (s) return s;
  return Error(s.error().code(), std::string(kernel) + ": " + s.error().message());
}

// ---- image.resize: scalars height, width, channels, out_height, out_width

Result<std::size_t> resize_shape(std::span<const std::size_t> counts, std::span<const double> scalars) {
  constexpr std::string_view k = "image.resize";
  auto s = image_shape(k, counts[0], scalars);
  if (!s) return s.error();
  auto oh = matrix_dimension(k, "out_height", scalars[3]);
  if (!oh) return oh.error();
  auto ow = matrix_dimension(k, "out_width", scalars[4]);
  if (!ow) return ow.error();
  if (*oh > 65536 || *ow > 65536) return invalid(k, "images are limited to 65536 x 65536 pixels");
  return *oh * *ow * s->channels;
}

Status cpu_resize(const CpuKernelArgs& a) {
  auto s = image_shape("image.resize", a.input_counts[0], a.scalars);
  if (!s) return s.error();
  return named("image.resize", samples::resize_bilinear(image_of(a, *s), static_cast<std::size_t>(a.scalars[4]),
                                                        static_cast<std::size_t>(a.scalars[3]), output_of(a)));
}

// ---- image.gaussian_blur: scalars height, width, channels, sigma

Result<std::size_t> blur_shape(std::span<const std::size_t> counts, std::span<const double> scalars) {
  constexpr std::string_view k = "image.gaussian_blur";
  auto s = image_shape(k, counts[0], scalars);
  if (!s) return s.error();
  if (!(std::isfinite(scalars[3]) && scalars[3] > 0 && scalars[3] <= 100)) {
    return invalid(k, "sigma must be in (0, 100], got " + std::to_string(scalars[3]));
  }
  return counts[0];
}

Status cpu_blur(const CpuKernelArgs& a) {
  auto s = image_shape("image.gaussian_blur", a.input_counts[0], a.scalars);
  if (!s) return s.error();
  return named("image.gaussian_blur", samples::gaussian_blur(image_of(a, *s), a.scalars[3], output_of(a)));
}

// ---- image.sobel: scalars height, width, channels, component (0 dx, 1 dy, 2 magnitude)

Result<std::size_t> sobel_shape(std::span<const std::size_t> counts, std::span<const double> scalars) {
  constexpr std::string_view k = "image.sobel";
  auto s = image_shape(k, counts[0], scalars);
  if (!s) return s.error();
  if (scalars[3] != 0 && scalars[3] != 1 && scalars[3] != 2) {
    return invalid(k, "component must be 0 (dx), 1 (dy) or 2 (magnitude)");
  }
  return counts[0];
}

Status cpu_sobel(const CpuKernelArgs& a) {
  auto s = image_shape("image.sobel", a.input_counts[0], a.scalars);
  if (!s) return s.error();
  const int component = static_cast<int>(a.scalars[3]);
  const auto which = component == 0   ? samples::SobelComponent::dx
                     : component == 1 ? samples::SobelComponent::dy
                                      : samples::SobelComponent::magnitude;
  return named("image.sobel", samples::sobel(image_of(a, *s), which, output_of(a)));
}

// ---- image.correlate: inputs image, kernel; scalars height, width, channels, kernel_rows, kernel_cols

Result<std::size_t> correlate_shape(std::span<const std::size_t> counts, std::span<const double> scalars) {
  constexpr std::string_view k = "image.correlate";
  auto s = image_shape(k, counts[0], scalars);
  if (!s) return s.error();
  auto kr = matrix_dimension(k, "kernel_rows", scalars[3]);
  if (!kr) return kr.error();
  auto kc = matrix_dimension(k, "kernel_cols", scalars[4]);
  if (!kc) return kc.error();
  if (*kr > 255 || *kc > 255) return invalid(k, "kernels are limited to 255 x 255");
  if (*kr * *kc != counts[1]) {
    return invalid(k, "kernel has " + std::to_string(counts[1]) + " values, kernel_rows*kernel_cols = " +
                          std::to_string(*kr * *kc));
  }
  return counts[0];
}

Status cpu_correlate(const CpuKernelArgs& a) {
  auto s = image_shape("image.correlate", a.input_counts[0], a.scalars);
  if (!s) return s.error();
  const auto rows = static_cast<std::size_t>(a.scalars[3]), cols = static_cast<std::size_t>(a.scalars[4]);
  const samples::MatrixView<float> kernel{rows, cols, {static_cast<const float*>(a.inputs[1]), rows * cols}};
  return named("image.correlate", samples::correlate2d(image_of(a, *s), kernel, output_of(a)));
}

// ---- verify examples: shapes from one size, inputs in [0, 255), and expected outputs from
// direct reference loops in double (the CPU implementations are not used to make them).

// Shapes 1x1, 2x6, 5x1, 16x20, 33x67 for the example sizes, 3 channels for odd sizes.
ImageShape example_shape(std::size_t size) {
  const std::size_t width = size == 1 || size % 5 == 0 ? 1 : size % 2 == 0 ? size + 4 : 2 * size + 1;
  return {size, width, size % 2 == 1 ? std::size_t{3} : std::size_t{1}};
}

std::vector<double> uniform(std::size_t count, double lo, double hi, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(count);
  for (double& x : v) x = static_cast<float>(dist(rng));
  return v;
}

// BORDER_REFLECT_101, written independently of the CPU implementation.
std::size_t reflect(long long p, std::size_t length) {
  const auto n = static_cast<long long>(length);
  while (p < 0 || p >= n) {
    if (n == 1) return 0;
    p = p < 0 ? -p : 2 * (n - 1) - p;
  }
  return static_cast<std::size_t>(p);
}

KernelExample image_example(const ImageShape& s, std::mt19937_64& rng) {
  KernelExample e;
  e.inputs = {uniform(s.count(), 0, 255, rng)};
  e.scalars = {static_cast<double>(s.height), static_cast<double>(s.width), static_cast<double>(s.channels)};
  return e;
}

// Sum over (ty, tx) of weight(ty, tx) * image[reflect(y + ty - ay)][reflect(x + tx - ax)][c].
template <typename Weight>
double filter_at(const std::vector<double>& image, const ImageShape& s, std::size_t y, std::size_t x, std::size_t c,
                 std::size_t rows, std::size_t cols, Weight weight) {
  double acc = 0;
  for (std::size_t ty = 0; ty < rows; ++ty) {
    const std::size_t sy = reflect(static_cast<long long>(y + ty) - static_cast<long long>(rows / 2), s.height);
    for (std::size_t tx = 0; tx < cols; ++tx) {
      const std::size_t sx = reflect(static_cast<long long>(x + tx) - static_cast<long long>(cols / 2), s.width);
      acc += weight(ty, tx) * image[(sy * s.width + sx) * s.channels + c];
    }
  }
  return acc;
}

template <typename ValueAt>
std::vector<double> per_value(const ImageShape& s, ValueAt value_at) {
  std::vector<double> out(s.count());
  for (std::size_t y = 0; y < s.height; ++y) {
    for (std::size_t x = 0; x < s.width; ++x) {
      for (std::size_t c = 0; c < s.channels; ++c) out[(y * s.width + x) * s.channels + c] = value_at(y, x, c);
    }
  }
  return out;
}

// Downscales the width, upscales the height.
KernelExample resize_example(std::size_t size, DType, std::uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x72737a65ULL ^ size);
  const ImageShape s = example_shape(size);
  const ImageShape out{s.height * 3 / 2 + 1, s.width / 2 + 1, s.channels};
  KernelExample e = image_example(s, rng);
  e.scalars.push_back(static_cast<double>(out.height));
  e.scalars.push_back(static_cast<double>(out.width));
  // INTER_LINEAR: source coordinate (d + 0.5) * src / dst - 0.5, held in float (as OpenCV),
  // clamped to the first and last pixel.
  auto tap = [](std::size_t d, std::size_t src, std::size_t dst, std::size_t& first, double& weight) {
    const double coordinate =
        static_cast<float>((static_cast<double>(d) + 0.5) * static_cast<double>(src) / static_cast<double>(dst) - 0.5);
    const double whole = std::floor(coordinate);
    if (coordinate < 0 || whole >= static_cast<double>(src - 1)) {
      first = coordinate < 0 ? 0 : src - 1;
      weight = 0;
      return;
    }
    first = static_cast<std::size_t>(whole);
    weight = coordinate - whole;
  };
  const std::vector<double>& image = e.inputs[0];
  e.expected = per_value(out, [&](std::size_t y, std::size_t x, std::size_t c) {
    std::size_t sy = 0, sx = 0;
    double fy = 0, fx = 0;
    tap(y, s.height, out.height, sy, fy);
    tap(x, s.width, out.width, sx, fx);
    const std::size_t sy1 = std::min(sy + 1, s.height - 1), sx1 = std::min(sx + 1, s.width - 1);
    auto at = [&](std::size_t yy, std::size_t xx) { return image[(yy * s.width + xx) * s.channels + c]; };
    return (1 - fy) * ((1 - fx) * at(sy, sx) + fx * at(sy, sx1)) + fy * ((1 - fx) * at(sy1, sx) + fx * at(sy1, sx1));
  });
  e.tolerance = 255 * 16 * FLT_EPSILON;
  return e;
}

// sigma 0.75 .. 8.75 (kernels of 7 to 71 taps, wider than the small images).
KernelExample blur_example(std::size_t size, DType, std::uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x626c7572ULL ^ size);
  const ImageShape s = example_shape(size);
  const double sigma = 0.5 + 0.25 * static_cast<double>(size);
  KernelExample e = image_example(s, rng);
  e.scalars.push_back(sigma);
  // exp(-(i - (n-1)/2)^2 / (2 sigma^2)), normalised to sum 1, n = round(8 sigma + 1) | 1.
  const auto n = static_cast<std::size_t>(std::round(8 * sigma + 1)) | 1u;
  std::vector<double> g(n);
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double offset = static_cast<double>(i) - static_cast<double>(n - 1) / 2;
    g[i] = std::exp(-offset * offset / (2 * sigma * sigma));
    sum += g[i];
  }
  for (double& v : g) v /= sum;
  e.expected = per_value(s, [&](std::size_t y, std::size_t x, std::size_t c) {
    return filter_at(e.inputs[0], s, y, x, c, n, n, [&](std::size_t ty, std::size_t tx) { return g[ty] * g[tx]; });
  });
  e.tolerance = 255 * FLT_EPSILON * static_cast<double>(2 * n + 8);
  return e;
}

// Component dx, dy or magnitude by size.
KernelExample sobel_example(std::size_t size, DType, std::uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x736f626cULL ^ size);
  const ImageShape s = example_shape(size);
  const std::size_t component = size % 3;
  KernelExample e = image_example(s, rng);
  e.scalars.push_back(static_cast<double>(component));
  const double smooth[3] = {1, 2, 1}, derive[3] = {-1, 0, 1};
  e.expected = per_value(s, [&](std::size_t y, std::size_t x, std::size_t c) {
    const double dx =
        filter_at(e.inputs[0], s, y, x, c, 3, 3, [&](std::size_t ty, std::size_t tx) { return smooth[ty] * derive[tx]; });
    const double dy =
        filter_at(e.inputs[0], s, y, x, c, 3, 3, [&](std::size_t ty, std::size_t tx) { return derive[ty] * smooth[tx]; });
    return component == 0 ? dx : component == 1 ? dy : std::sqrt(dx * dx + dy * dy);
  });
  e.tolerance = 4 * 2 * 255 * 8 * FLT_EPSILON;  // |dx|, |dy| <= 4 * 255
  return e;
}

// Kernels 2x3, 3x4, 2x2, 1x3, 2x5 (even sizes: anchor rows/2, cols/2) with entries in [-1, 1).
KernelExample correlate_example(std::size_t size, DType, std::uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x636f7272ULL ^ size);
  const ImageShape s = example_shape(size);
  const std::size_t rows = size % 4 + 1, cols = (size + 1) % 5 + 1;
  KernelExample e = image_example(s, rng);
  e.inputs.push_back(uniform(rows * cols, -1, 1, rng));
  e.scalars.push_back(static_cast<double>(rows));
  e.scalars.push_back(static_cast<double>(cols));
  const std::vector<double>& k = e.inputs[1];
  e.expected = per_value(s, [&](std::size_t y, std::size_t x, std::size_t c) {
    return filter_at(e.inputs[0], s, y, x, c, rows, cols, [&](std::size_t ty, std::size_t tx) { return k[ty * cols + tx]; });
  });
  e.tolerance = 255 * 4 * FLT_EPSILON * static_cast<double>(rows * cols + 2);
  return e;
}

}  // namespace

Status add_image_kernels(KernelCatalog& c) {
  const std::vector<DType> f32{DType::f32};
  const std::vector<std::size_t> sizes{1, 2, 5, 16, 33};  // see example_shape
  KernelDef resize{"image.resize",
                   "bilinear resize of an H x W x C image to out_height x out_width (OpenCV INTER_LINEAR pixel centres)",
                   {{"image"}, {"height", "width", "channels", "out_height", "out_width"}, OutputShape::computed, f32,
                    resize_shape},
                   cpu_resize,
                   &kImageResizeRecipe,
                   resize_example,
                   sizes};
  KernelDef blur{"image.gaussian_blur",
                 "Gaussian blur with sigma; kernel size round(8 sigma + 1) | 1, BORDER_REFLECT_101",
                 {{"image"}, {"height", "width", "channels", "sigma"}, OutputShape::computed, f32, blur_shape},
                 cpu_blur,
                 &kImageGaussianBlurRecipe,
                 blur_example,
                 sizes};
  KernelDef sobel{"image.sobel", "3x3 Sobel derivative dx, dy or gradient magnitude, BORDER_REFLECT_101",
                  {{"image"}, {"height", "width", "channels", "component"}, OutputShape::computed, f32, sobel_shape},
                  cpu_sobel,
                  &kImageSobelRecipe,
                  sobel_example,
                  sizes};
  KernelDef correlate{"image.correlate",
                      "correlation with a user kernel (as cv2.filter2D: anchor rows/2, cols/2, BORDER_REFLECT_101)",
                      {{"image", "kernel"},
                       {"height", "width", "channels", "kernel_rows", "kernel_cols"},
                       OutputShape::computed,
                       f32,
                       correlate_shape},
                      cpu_correlate,
                      &kImageCorrelateRecipe,
                      correlate_example,
                      sizes};
  for (KernelDef* def : {&resize, &blur, &sobel, &correlate}) {
    if (Status s = c.add(std::move(*def)); !s) return s;
  }
  return {};
}

}  // namespace gpubridge::compute::detail
