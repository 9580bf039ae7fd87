// ImageF32 samples: bilinear resize, Gaussian blur, Sobel and 2-D correlation, reproducing OpenCV's
// conventions for float32 images (see algorithms.hpp).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "parallel.hpp"

namespace gpubridge::samples {
namespace {

constexpr std::size_t kPixelsPerThread = 16384;

Status check_image(ImageView image, const std::string& what) {
  if (image.height == 0 || image.width == 0 || image.channels == 0) {
    return detail::invalid(what + ": empty image (" + std::to_string(image.height) + " x " +
                           std::to_string(image.width) + " x " + std::to_string(image.channels) +
                           ")");
  }
  std::size_t pixels = 0;
  std::size_t values = 0;
  if (!detail::checked_multiply(image.height, image.width, pixels) ||
      !detail::checked_multiply(pixels, image.channels, values)) {
    return detail::invalid(what + ": image dimensions overflow the element count");
  }
  if (image.data.size() != values) {
    return detail::invalid(what + ": " + std::to_string(image.height) + " x " +
                           std::to_string(image.width) + " x " + std::to_string(image.channels) +
                           " image holds " + std::to_string(image.data.size()) +
                           " values, expected " + std::to_string(values));
  }
  return {};
}

// OpenCV's BORDER_REFLECT_101 index for any p (repeated reflection; a length of 1 maps to 0).
std::size_t reflect101(std::ptrdiff_t p, std::size_t length) {
  if (length == 1) return 0;
  const auto period = static_cast<std::ptrdiff_t>(2 * (length - 1));
  p %= period;
  if (p < 0) p += period;
  if (p >= static_cast<std::ptrdiff_t>(length)) p = period - p;
  return static_cast<std::size_t>(p);
}

ImageF32 same_shape(const ImageF32& image) {
  return ImageF32{image.height, image.width, image.channels,
               std::vector<float>(image.data.size(), 0.0f)};
}

// Source row `y` extended by `left` and `right` reflected pixels on each side.
void pad_row(ImageView image, std::size_t y, std::size_t left, std::size_t right, float* out) {
  const std::size_t channels = image.channels;
  const float* row = image.data.data() + y * image.width * channels;
  const std::size_t padded_width = image.width + left + right;
  for (std::size_t px = 0; px < padded_width; ++px) {
    const std::size_t sx = reflect101(static_cast<std::ptrdiff_t>(px) - static_cast<std::ptrdiff_t>(left),
                                      image.width);
    for (std::size_t c = 0; c < channels; ++c) out[px * channels + c] = row[sx * channels + c];
  }
}

// Rows filtered with `horizontal` (anchor horizontal.size()/2), then columns with `vertical`
// (anchor vertical.size()/2), float32 accumulation in tap order starting from 0: OpenCV's
// sepFilter2D. `result` is image-sized; the row pass goes to an image-sized scratch buffer.
void separable_filter(ImageView image, const std::vector<float>& horizontal, const std::vector<float>& vertical,
                      std::span<float> result, unsigned threads) {
  const std::size_t channels = image.channels;
  const std::size_t row_values = image.width * channels;
  const std::size_t left = horizontal.size() / 2;
  const std::size_t right = horizontal.size() - 1 - left;
  std::vector<float> rows_done(image.data.size(), 0.0f);
  const std::size_t min_rows = std::max<std::size_t>(1, kPixelsPerThread / image.width);
  detail::parallel_for(image.height, min_rows, threads, [&](std::size_t y0, std::size_t y1) {
    std::vector<float> padded((image.width + left + right) * channels);
    for (std::size_t y = y0; y < y1; ++y) {
      pad_row(image, y, left, right, padded.data());
      float* out = rows_done.data() + y * row_values;
      for (std::size_t tap = 0; tap < horizontal.size(); ++tap) {
        const float weight = horizontal[tap];
        const float* source = padded.data() + tap * channels;
        for (std::size_t i = 0; i < row_values; ++i) out[i] += weight * source[i];
      }
    }
  });
  const auto anchor = static_cast<std::ptrdiff_t>(vertical.size() / 2);
  detail::parallel_for(image.height, min_rows, threads, [&](std::size_t y0, std::size_t y1) {
    std::fill(result.begin() + static_cast<std::ptrdiff_t>(y0 * row_values),
              result.begin() + static_cast<std::ptrdiff_t>(y1 * row_values), 0.0f);
    for (std::size_t y = y0; y < y1; ++y) {
      float* out = result.data() + y * row_values;
      for (std::size_t tap = 0; tap < vertical.size(); ++tap) {
        const std::size_t sy = reflect101(static_cast<std::ptrdiff_t>(y + tap) - anchor, image.height);
        const float weight = vertical[tap];
        const float* source = rows_done.data() + sy * row_values;
        for (std::size_t i = 0; i < row_values; ++i) out[i] += weight * source[i];
      }
    }
  });
}

// The Sobel taps (see algorithms.hpp).
const std::vector<float>& sobel_derivative() {
  static const std::vector<float> taps{-1.0f, 0.0f, 1.0f};
  return taps;
}
const std::vector<float>& sobel_smoothing() {
  static const std::vector<float> taps{1.0f, 2.0f, 1.0f};
  return taps;
}

// magnitude[i] = sqrt(dx[i]^2 + dy[i]^2) in float32.
void gradient_magnitude(std::span<const float> dx, std::span<const float> dy, std::span<float> magnitude,
                        unsigned threads) {
  detail::parallel_for(magnitude.size(), kPixelsPerThread * 4, threads, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      const float gx = dx[i];
      const float gy = dy[i];
      magnitude[i] = std::sqrt(gx * gx + gy * gy);
    }
  });
}

// A fresh height x width x channels image of `values` values, written by fill(std::span<float>).
template <typename Fill>
Result<ImageF32> owned_image(std::size_t height, std::size_t width, std::size_t channels, std::size_t values,
                             Fill&& fill) {
  ImageF32 result{height, width, channels, std::vector<float>(values)};
  if (Status status = fill(std::span<float>(result.data)); !status) return status.error();
  return result;
}

struct AxisTaps {
  std::vector<std::size_t> first;
  std::vector<std::size_t> second;
  std::vector<float> first_weight;
  std::vector<float> second_weight;
};

// INTER_LINEAR source taps for each destination index along one axis.
AxisTaps linear_taps(std::size_t source_size, std::size_t destination_size) {
  AxisTaps taps;
  taps.first.resize(destination_size);
  taps.second.resize(destination_size);
  taps.first_weight.resize(destination_size);
  taps.second_weight.resize(destination_size);
  // As cv::resize: inverse scale first, then its reciprocal.
  const double scale =
      1.0 / (static_cast<double>(destination_size) / static_cast<double>(source_size));
  const auto last = static_cast<std::ptrdiff_t>(source_size) - 1;
  for (std::size_t d = 0; d < destination_size; ++d) {
    float f = static_cast<float>((static_cast<double>(d) + 0.5) * scale - 0.5);
    auto s = static_cast<std::ptrdiff_t>(std::floor(f));
    f -= static_cast<float>(s);
    if (s < 0) {
      s = 0;
      f = 0.0f;
    }
    if (s >= last) {
      s = last;
      f = 0.0f;
    }
    taps.first[d] = static_cast<std::size_t>(s);
    taps.second[d] = static_cast<std::size_t>(std::min(s + 1, last));
    taps.first_weight[d] = 1.0f - f;
    taps.second_weight[d] = f;
  }
  return taps;
}

// The resized image's value count, after checking the image and the output size.
Result<std::size_t> resize_output_count(ImageView image, std::size_t out_width, std::size_t out_height) {
  if (auto status = check_image(image, "resize_bilinear"); !status) return status.error();
  std::size_t out_pixels = 0;
  std::size_t out_values = 0;
  if (out_width == 0 || out_height == 0) {
    return detail::invalid("resize_bilinear: output size " + std::to_string(out_width) + " x " +
                           std::to_string(out_height) + " is empty");
  }
  if (!detail::checked_multiply(out_width, out_height, out_pixels) ||
      !detail::checked_multiply(out_pixels, image.channels, out_values)) {
    return detail::invalid("resize_bilinear: output size overflows the element count");
  }
  return out_values;
}

}  // namespace

Result<ImageF32> resize_bilinear(const ImageF32& image, std::size_t out_width, std::size_t out_height,
                              Parallelism parallelism) {
  auto out_values = resize_output_count(as_view(image), out_width, out_height);
  if (!out_values) return out_values.error();
  return owned_image(out_height, out_width, image.channels, *out_values, [&](std::span<float> out) {
    return resize_bilinear(as_view(image), out_width, out_height, out, parallelism);
  });
}

Status resize_bilinear(ImageView image, std::size_t out_width, std::size_t out_height, std::span<float> out,
                       Parallelism parallelism) {
  auto out_values = resize_output_count(image, out_width, out_height);
  if (!out_values) return out_values.error();
  if (auto status = detail::check_output("resize_bilinear", out.size(), *out_values); !status) return status;
  const std::size_t channels = image.channels;
  const AxisTaps xs = linear_taps(image.width, out_width);
  const AxisTaps ys = linear_taps(image.height, out_height);
  const std::size_t out_row = out_width * channels;
  detail::parallel_for(
      out_height, std::max<std::size_t>(1, kPixelsPerThread / out_width),
      detail::resolve_threads(parallelism), [&](std::size_t y0, std::size_t y1) {
        std::vector<float> upper(out_row);
        std::vector<float> lower(out_row);
        auto blend_row = [&](std::size_t sy, float* blended) {
          const float* row = image.data.data() + sy * image.width * channels;
          for (std::size_t x = 0; x < out_width; ++x) {
            const float* a = row + xs.first[x] * channels;
            const float* b = row + xs.second[x] * channels;
            for (std::size_t c = 0; c < channels; ++c) {
              blended[x * channels + c] = a[c] * xs.first_weight[x] + b[c] * xs.second_weight[x];
            }
          }
        };
        for (std::size_t y = y0; y < y1; ++y) {
          blend_row(ys.first[y], upper.data());
          blend_row(ys.second[y], lower.data());
          const float wa = ys.first_weight[y];
          const float wb = ys.second_weight[y];
          float* row_out = out.data() + y * out_row;
          for (std::size_t i = 0; i < out_row; ++i) row_out[i] = wa * upper[i] + wb * lower[i];
        }
      });
  return {};
}

Result<std::size_t> gaussian_kernel_size(double sigma) {
  if (!std::isfinite(sigma) || sigma <= 0.0) {
    return detail::invalid("gaussian blur: sigma must be finite and > 0, got " +
                           detail::format_number(sigma));
  }
  const double taps = std::round(sigma * 4.0 * 2.0 + 1.0);
  if (taps > 1e7) {
    return detail::invalid("gaussian blur: sigma " + detail::format_number(sigma) +
                           " gives an unreasonably large kernel");
  }
  return static_cast<std::size_t>(taps) | 1u;
}

Result<std::vector<float>> gaussian_kernel(double sigma) {
  auto size = gaussian_kernel_size(sigma);
  if (!size) return size.error();
  const std::size_t n = *size;
  // As cv::getGaussianKernel with ktype CV_32F (OpenCV 4's bit-exact path): exponentials of the
  // symmetric half in float64, normalised by multiplying with 1 / (2 * half_sum + 1), the centre
  // tap being exactly that factor, then each rounded to float32.
  const double scale = -0.125 / (sigma * sigma);  // applied to (2 * offset)^2
  const std::size_t half = (n - 1) / 2;
  std::vector<double> taps(half);
  double half_sum = 0.0;
  for (std::size_t i = 0; i < half; ++i) {
    const double doubled_offset = 2.0 * static_cast<double>(i) - static_cast<double>(n - 1);
    taps[i] = std::exp(doubled_offset * doubled_offset * scale);
    half_sum += taps[i];
  }
  const double normaliser = 1.0 / (half_sum * 2.0 + 1.0);
  std::vector<float> kernel(n);
  for (std::size_t i = 0; i < half; ++i) {
    kernel[i] = kernel[n - 1 - i] = static_cast<float>(taps[i] * normaliser);
  }
  kernel[half] = static_cast<float>(normaliser);
  return kernel;
}

Status gaussian_blur(ImageView image, double sigma, std::span<float> out, Parallelism parallelism) {
  if (auto status = check_image(image, "gaussian_blur"); !status) return status;
  auto kernel = gaussian_kernel(sigma);
  if (!kernel) return kernel.error();
  if (auto status = detail::check_output("gaussian_blur", out.size(), image.data.size()); !status) return status;
  separable_filter(image, *kernel, *kernel, out, detail::resolve_threads(parallelism));
  return {};
}

Result<ImageF32> gaussian_blur(const ImageF32& image, double sigma, Parallelism parallelism) {
  return owned_image(image.height, image.width, image.channels, image.data.size(), [&](std::span<float> out) {
    return gaussian_blur(as_view(image), sigma, out, parallelism);
  });
}

Status sobel(ImageView image, SobelComponent component, std::span<float> out, Parallelism parallelism) {
  if (auto status = check_image(image, "sobel"); !status) return status;
  if (auto status = detail::check_output("sobel", out.size(), image.data.size()); !status) return status;
  const unsigned threads = detail::resolve_threads(parallelism);
  switch (component) {
    case SobelComponent::dx:
      separable_filter(image, sobel_derivative(), sobel_smoothing(), out, threads);
      return {};
    case SobelComponent::dy:
      separable_filter(image, sobel_smoothing(), sobel_derivative(), out, threads);
      return {};
    case SobelComponent::magnitude: {
      std::vector<float> dx(image.data.size()), dy(image.data.size());
      separable_filter(image, sobel_derivative(), sobel_smoothing(), dx, threads);
      separable_filter(image, sobel_smoothing(), sobel_derivative(), dy, threads);
      gradient_magnitude(dx, dy, out, threads);
      return {};
    }
  }
  return detail::invalid("sobel: unknown component " + std::to_string(static_cast<int>(component)));
}

Result<SobelImages> sobel(const ImageF32& image, Parallelism parallelism) {
  if (auto status = check_image(as_view(image), "sobel"); !status) return status.error();
  const unsigned threads = detail::resolve_threads(parallelism);
  SobelImages out{same_shape(image), same_shape(image), same_shape(image)};
  separable_filter(as_view(image), sobel_derivative(), sobel_smoothing(), out.dx.data, threads);
  separable_filter(as_view(image), sobel_smoothing(), sobel_derivative(), out.dy.data, threads);
  gradient_magnitude(out.dx.data, out.dy.data, out.magnitude.data, threads);
  return out;
}

Result<ImageF32> correlate2d(const ImageF32& image, const MatrixF32& kernel, Parallelism parallelism) {
  return owned_image(image.height, image.width, image.channels, image.data.size(), [&](std::span<float> out) {
    return correlate2d(as_view(image), as_view(kernel), out, parallelism);
  });
}

Status correlate2d(ImageView image, MatrixView<float> kernel, std::span<float> out, Parallelism parallelism) {
  if (auto status = check_image(image, "correlate2d"); !status) return status;
  if (kernel.rows == 0 || kernel.cols == 0) {
    return detail::invalid("correlate2d: empty kernel (" + std::to_string(kernel.rows) + " x " +
                           std::to_string(kernel.cols) + ")");
  }
  std::size_t taps = 0;
  if (!detail::checked_multiply(kernel.rows, kernel.cols, taps) || kernel.values.size() != taps) {
    return detail::invalid("correlate2d: " + std::to_string(kernel.rows) + " x " +
                           std::to_string(kernel.cols) + " kernel holds " +
                           std::to_string(kernel.values.size()) + " values");
  }
  for (std::size_t i = 0; i < taps; ++i) {
    if (!std::isfinite(kernel.values[i])) {
      return detail::invalid("correlate2d: kernel entry (" + std::to_string(i / kernel.cols) +
                             ", " + std::to_string(i % kernel.cols) + ") is not finite");
    }
  }
  if (auto status = detail::check_output("correlate2d", out.size(), image.data.size()); !status) return status;
  const std::size_t channels = image.channels;
  const std::size_t left = kernel.cols / 2;
  const std::size_t right = kernel.cols - 1 - left;
  const std::size_t padded_row = (image.width + left + right) * channels;
  const std::size_t row_values = image.width * channels;
  const unsigned threads = detail::resolve_threads(parallelism);
  const std::size_t min_rows = std::max<std::size_t>(1, kPixelsPerThread / image.width);
  // Every source row extended horizontally once; rows are then picked with vertical reflection.
  std::vector<float> padded(image.height * padded_row);
  detail::parallel_for(image.height, min_rows, threads, [&](std::size_t y0, std::size_t y1) {
    for (std::size_t y = y0; y < y1; ++y) pad_row(image, y, left, right, padded.data() + y * padded_row);
  });
  const auto anchor_y = static_cast<std::ptrdiff_t>(kernel.rows / 2);
  detail::parallel_for(image.height, min_rows, threads, [&](std::size_t y0, std::size_t y1) {
    std::fill(out.begin() + static_cast<std::ptrdiff_t>(y0 * row_values),
              out.begin() + static_cast<std::ptrdiff_t>(y1 * row_values), 0.0f);
    for (std::size_t y = y0; y < y1; ++y) {
      float* row_out = out.data() + y * row_values;
      for (std::size_t ky = 0; ky < kernel.rows; ++ky) {
        const std::size_t sy = reflect101(static_cast<std::ptrdiff_t>(y + ky) - anchor_y, image.height);
        const float* source_row = padded.data() + sy * padded_row;
        for (std::size_t kx = 0; kx < kernel.cols; ++kx) {
          const float weight = kernel.values[ky * kernel.cols + kx];
          const float* source = source_row + kx * channels;
          for (std::size_t i = 0; i < row_values; ++i) row_out[i] += weight * source[i];
        }
      }
    }
  });
  return {};
}

}  // namespace gpubridge::samples
