// Image kernels. Scalars carry the image's shape: height, width, channels first, then the
// operation's parameters. Shapes are checked by the shape functions before anything runs.
#include "compute/kernels/image_kernels.hpp"

#include <cmath>
#include <cstring>
#include <string>

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

samples::ImageF32 image_of(const CpuKernelArgs& a, const ImageShape& s) {
  const float* p = static_cast<const float*>(a.inputs[0]);
  return samples::ImageF32{s.height, s.width, s.channels, std::vector<float>(p, p + s.count())};
}

Status store(std::string_view kernel, Result<samples::ImageF32> r, const CpuKernelArgs& a) {
  if (!r) return Error(r.error().code(), std::string(kernel) + ": " + r.error().message());
  if (r->data.size() != a.output_count) {
    return Error(ErrorCode::internal, std::string(kernel) + ": the CPU implementation produced " +
                                          std::to_string(r->data.size()) + " values, expected " +
                                          std::to_string(a.output_count));
  }
  std::memcpy(a.output, r->data.data(), r->data.size() * sizeof(float));
  return {};
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
  return store("image.resize",
               samples::resize_bilinear(image_of(a, *s), static_cast<std::size_t>(a.scalars[4]),
                                        static_cast<std::size_t>(a.scalars[3])),
               a);
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
  return store("image.gaussian_blur", samples::gaussian_blur(image_of(a, *s), a.scalars[3]), a);
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
  auto r = samples::sobel(image_of(a, *s));
  if (!r) return Error(r.error().code(), "image.sobel: " + r.error().message());
  const int component = static_cast<int>(a.scalars[3]);
  return store("image.sobel", component == 0 ? std::move(r->dx) : component == 1 ? std::move(r->dy) : std::move(r->magnitude),
               a);
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
  const float* kp = static_cast<const float*>(a.inputs[1]);
  samples::MatrixF32 kernel{rows, cols, std::vector<float>(kp, kp + rows * cols)};
  return store("image.correlate", samples::correlate2d(image_of(a, *s), kernel), a);
}

}  // namespace

Status add_image_kernels(KernelCatalog& c) {
  const std::vector<DType> f32{DType::f32};
  KernelDef resize{"image.resize",
                   "bilinear resize of an H x W x C image to out_height x out_width (OpenCV INTER_LINEAR pixel centres)",
                   {{"image"}, {"height", "width", "channels", "out_height", "out_width"}, OutputShape::computed, f32,
                    resize_shape},
                   cpu_resize};
  KernelDef blur{"image.gaussian_blur",
                 "Gaussian blur with sigma; kernel size round(8 sigma + 1) | 1, BORDER_REFLECT_101",
                 {{"image"}, {"height", "width", "channels", "sigma"}, OutputShape::computed, f32, blur_shape},
                 cpu_blur};
  KernelDef sobel{"image.sobel", "3x3 Sobel derivative dx, dy or gradient magnitude, BORDER_REFLECT_101",
                  {{"image"}, {"height", "width", "channels", "component"}, OutputShape::computed, f32, sobel_shape},
                  cpu_sobel};
  KernelDef correlate{"image.correlate",
                      "correlation with a user kernel (as cv2.filter2D: anchor rows/2, cols/2, BORDER_REFLECT_101)",
                      {{"image", "kernel"},
                       {"height", "width", "channels", "kernel_rows", "kernel_cols"},
                       OutputShape::computed,
                       f32,
                       correlate_shape},
                      cpu_correlate};
  for (KernelDef* def : {&resize, &blur, &sobel, &correlate}) {
    if (Status s = c.add(std::move(*def)); !s) return s;
  }
  return {};
}

}  // namespace gpubridge::compute::detail
