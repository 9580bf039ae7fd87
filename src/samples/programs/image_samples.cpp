// Image samples on 8-bit PNG images (grey or RGB), float32 maths:
//
//   gpubridge sample resize   --image in.png --width W --height H --out out.npy|out.png [--backend B]
//   gpubridge sample blur     --image in.png --sigma S             --out out.npy|out.png [--backend B]
//   gpubridge sample sobel    --image in.png [--component magnitude|dx|dy] --out out.npy|out.png
//   gpubridge sample convolve --image in.png --kernel k.txt        --out out.npy|out.png [--backend B]
//
// Conventions are OpenCV's: resize is bilinear with INTER_LINEAR's pixel-centre mapping; blur is a
// Gaussian with ksize = round(8 sigma + 1) | 1 and BORDER_REFLECT_101; Sobel is 3x3 with
// BORDER_REFLECT_101; convolve is a correlation (as cv2.filter2D) with the anchor at the kernel's
// centre (rows/2, cols/2) and BORDER_REFLECT_101. .npy writes float32 (H x W or H x W x C); .png
// writes 8-bit, rounded and clamped to 0..255 (Sobel values outside that range are clipped).
// Each result is checked against the CPU algorithm run on the host (max |difference| <= 1e-3 on
// the 0..255 scale).
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "gpubridge/samples/algorithms.hpp"
#include "gpubridge/samples/io.hpp"
#include "gpubridge/server/silo.hpp"
#include "samples/programs/sample_list.hpp"

namespace gpubridge::samples {

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kImageTolerance = 1e-3;

enum class ImageOp { resize, blur, sobel, convolve };

struct ImageOptions {
  std::string image, out, kernel;
  std::size_t width = 0, height = 0;
  double sigma = 0;
  std::string component = "magnitude";
};

Status check_image_output(const std::string& out) {
  if (out.empty()) return Error(ErrorCode::invalid_argument, "--out is required (.npy or .png)");
  const auto ext = std::filesystem::path(out).extension();
  if (ext != ".npy" && ext != ".png") {
    return Error(ErrorCode::invalid_argument, "--out must end in .npy or .png (got '" + out + "')");
  }
  return {};
}

Status write_image(const std::string& out, const Image& image) {
  return std::filesystem::path(out).extension() == ".npy" ? write_npy(out, image) : write_png(out, image);
}

Result<SampleResult> run_image(ImageOp op, const ImageOptions& o, server::Silo& silo, const SampleRun& run) {
  if (o.image.empty()) return Error(ErrorCode::invalid_argument, "--image is required");
  if (run.write_output) {
    if (Status s = check_image_output(o.out); !s) return s.error();
  }
  // Parameters are checked before any file is read or kernel runs.
  double component = 2;
  switch (op) {
    case ImageOp::resize:
      if (o.width == 0 || o.height == 0 || o.width > 65536 || o.height > 65536) {
        return Error(ErrorCode::invalid_argument, "--width and --height must be between 1 and 65536");
      }
      break;
    case ImageOp::blur:
      if (!(o.sigma > 0 && o.sigma <= 100)) return Error(ErrorCode::invalid_argument, "--sigma must be in (0, 100]");
      break;
    case ImageOp::sobel:
      if (o.component == "dx") {
        component = 0;
      } else if (o.component == "dy") {
        component = 1;
      } else if (o.component != "magnitude") {
        return Error(ErrorCode::invalid_argument, "--component must be magnitude, dx or dy (got '" + o.component + "')");
      }
      break;
    case ImageOp::convolve:
      if (o.kernel.empty()) return Error(ErrorCode::invalid_argument, "--kernel is required");
      break;
  }
  auto image = read_png(o.image);
  if (!image) return image.error();
  DenseMatrix kernel;
  if (op == ImageOp::convolve) {
    auto k = read_kernel(o.kernel);
    if (!k) return k.error();
    kernel = std::move(k).value();
  }
  const double h = static_cast<double>(image->height), w = static_cast<double>(image->width),
               c = static_cast<double>(image->channels);
  std::vector<float> kernel_f32(kernel.data.begin(), kernel.data.end());

  compute::KernelCall call;
  call.dtype = compute::DType::f32;
  call.inputs = {compute::TensorView(image->data)};
  std::size_t out_h = image->height, out_w = image->width;
  switch (op) {
    case ImageOp::resize:
      call.kernel = "image.resize";
      call.scalars = {h, w, c, static_cast<double>(o.height), static_cast<double>(o.width)};
      out_h = o.height;
      out_w = o.width;
      break;
    case ImageOp::blur:
      call.kernel = "image.gaussian_blur";
      call.scalars = {h, w, c, o.sigma};
      break;
    case ImageOp::sobel:
      call.kernel = "image.sobel";
      call.scalars = {h, w, c, component};
      break;
    case ImageOp::convolve:
      call.kernel = "image.correlate";
      call.inputs.push_back(compute::TensorView(kernel_f32));
      call.scalars = {h, w, c, static_cast<double>(kernel.rows), static_cast<double>(kernel.cols)};
      break;
  }
  SampleResult result;
  const auto t0 = Clock::now();
  auto r = run_kernel(silo, std::move(call), run.placement, result);
  result.total_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!r) return r.error();
  const auto out = r->outputs.at(0).as<float>();
  result.values.assign(out.begin(), out.end());

  // The same operation by the host's CPU algorithm.
  ImageF32 host_in{image->height, image->width, image->channels, image->data};
  Result<ImageF32> expected = Error(ErrorCode::unknown, "not computed");
  switch (op) {
    case ImageOp::resize: expected = resize_bilinear(host_in, o.width, o.height); break;
    case ImageOp::blur: expected = gaussian_blur(host_in, o.sigma); break;
    case ImageOp::sobel: {
      auto s = sobel(host_in);
      if (!s) return s.error();
      expected = component == 0 ? std::move(s->dx) : component == 1 ? std::move(s->dy) : std::move(s->magnitude);
      break;
    }
    case ImageOp::convolve: {
      MatrixF32 k{kernel.rows, kernel.cols, kernel_f32};
      expected = correlate2d(host_in, k);
      break;
    }
  }
  if (!expected) return expected.error();
  if (expected->data.size() != out.size()) return Error(ErrorCode::internal, "output size differs from the host's");
  double max_error = 0;
  for (std::size_t i = 0; i < out.size(); ++i) max_error = std::max(max_error, std::abs(double(out[i]) - double(expected->data[i])));
  result.check = "max |difference| from the host CPU algorithm " + format_number(max_error) + " <= " + format_number(kImageTolerance) +
                 " over " + std::to_string(out.size()) + " values";
  if (!(max_error <= kImageTolerance)) return Error(ErrorCode::data_loss, "image: " + result.check);

  if (run.write_output) {
    Image written{out_h, out_w, image->channels, std::vector<float>(out.begin(), out.end())};
    if (Status s = write_image(o.out, written); !s) return s.error();
    result.output = o.out;
  }
  return result;
}

std::shared_ptr<SampleDef> image_sample(std::string name, std::string help, ImageOp op) {
  auto options = std::make_shared<ImageOptions>();
  auto def = std::make_shared<SampleDef>();
  def->name = std::move(name);
  def->help = std::move(help);
  def->add_options = [options, op](CLI::App& app) {
    app.add_option("--image", options->image, "Input image: 8-bit grey or RGB PNG");
    app.add_option("--out", options->out, "Output: .npy (float32) or .png (8-bit)");
    switch (op) {
      case ImageOp::resize:
        app.add_option("--width", options->width, "Output width in pixels");
        app.add_option("--height", options->height, "Output height in pixels");
        break;
      case ImageOp::blur: app.add_option("--sigma", options->sigma, "Gaussian sigma in pixels"); break;
      case ImageOp::sobel:
        app.add_option("--component", options->component, "magnitude (default), dx or dy");
        break;
      case ImageOp::convolve:
        app.add_option("--kernel", options->kernel, "Kernel file: rows of whitespace-separated numbers");
        break;
    }
  };
  def->run = [options, op](server::Silo& silo, const SampleRun& run) { return run_image(op, *options, silo, run); };
  return def;
}

}  // namespace

std::vector<std::shared_ptr<SampleDef>> image_samples() {
  return {image_sample("resize", "bilinear resize (OpenCV INTER_LINEAR convention)", ImageOp::resize),
          image_sample("blur", "Gaussian blur with sigma (BORDER_REFLECT_101)", ImageOp::blur),
          image_sample("sobel", "Sobel gradient: magnitude, dx or dy (3x3, BORDER_REFLECT_101)", ImageOp::sobel),
          image_sample("convolve", "correlation with a user kernel (as cv2.filter2D, BORDER_REFLECT_101)",
                       ImageOp::convolve)};
}

}  // namespace gpubridge::samples
