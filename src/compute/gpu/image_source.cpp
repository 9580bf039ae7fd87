// The image kernels' part of the portable GPU source (appended to portable_kernels.cpp's).
#include "gpu_recipe.hpp"

namespace gpubridge::compute::detail {

std::string_view image_kernel_source() { return ""; }

}  // namespace gpubridge::compute::detail
