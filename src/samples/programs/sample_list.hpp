#pragma once
// The sample families (one source file each); all_samples() lists them in this order.
#include <memory>
#include <vector>

#include "gpubridge/samples/sample.hpp"

namespace gpubridge::samples {

std::vector<std::shared_ptr<SampleDef>> vector_samples();
std::vector<std::shared_ptr<SampleDef>> matrix_samples();
std::vector<std::shared_ptr<SampleDef>> image_samples();
std::vector<std::shared_ptr<SampleDef>> graph_samples();

}  // namespace gpubridge::samples
