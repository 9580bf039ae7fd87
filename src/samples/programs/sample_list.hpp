#pragma once
// The sample families (one source file each); all_samples() lists them in this order.
#include <memory>
#include <string>
#include <vector>

#include "gpubridge/samples/sample.hpp"

namespace gpubridge::samples {

// A number for check messages: 3 significant digits ("2.4e+07", "0.001").
std::string format_number(double value);

std::vector<std::shared_ptr<SampleDef>> vector_samples();
std::vector<std::shared_ptr<SampleDef>> matrix_samples();
std::vector<std::shared_ptr<SampleDef>> image_samples();
std::vector<std::shared_ptr<SampleDef>> graph_samples();

}  // namespace gpubridge::samples
