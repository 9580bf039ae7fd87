#pragma once
// The image kernels of the built-in catalog (float32, H x W x C row-major, C = 1 or 3):
// image.resize, image.gaussian_blur, image.sobel, image.correlate. CPU implementations are the
// sample algorithms (OpenCV conventions, see include/gpubridge/samples/algorithms.hpp); they have
// no GPU implementation yet, so on a GPU they fall back to the CPU with reason kernel_missing.
#include "gpubridge/compute/kernel_catalog.hpp"

namespace gpubridge::compute::detail {

Status add_image_kernels(KernelCatalog& catalog);

}  // namespace gpubridge::compute::detail
