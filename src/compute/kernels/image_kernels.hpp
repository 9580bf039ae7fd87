#pragma once
// The image kernels of the built-in catalog (float32, H x W x C row-major, C = 1 or 3):
// image.resize, image.gaussian_blur, image.sobel, image.correlate. CPU implementations are the
// sample algorithms' span forms over the input and output tensors, without copies (OpenCV
// conventions, see include/gpubridge/samples/algorithms.hpp); the GPU
// recipes (gpu/image_recipes.cpp over gpu/image_source.cpp) repeat their arithmetic step for
// step, so CUDA and OpenCL agree with the CPU to rounding (see image_source.cpp).
// The recipes are immutable constants, safe to use from any thread.
#include "gpubridge/compute/kernel_catalog.hpp"

namespace gpubridge::compute::detail {

Status add_image_kernels(KernelCatalog& catalog);

// GPU recipes of the image kernels (computed shapes, not batchable).
extern const GpuRecipe kImageResizeRecipe;
extern const GpuRecipe kImageGaussianBlurRecipe;
extern const GpuRecipe kImageSobelRecipe;
extern const GpuRecipe kImageCorrelateRecipe;

}  // namespace gpubridge::compute::detail
