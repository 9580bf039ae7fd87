#include <chrono>
#include <cstdio>

#include "gpubridge/grains/kernel_grain.hpp"
#include "gpubridge/samples/sample.hpp"
#include "gpubridge/server/silo.hpp"
#include "samples/programs/sample_list.hpp"

namespace gpubridge::samples {

std::string format_number(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.3g", value);
  return text;
}

Result<compute::KernelResult> run_kernel(server::Silo& silo, compute::KernelCall call, const compute::CallOptions& placement,
                                         SampleResult& result) {
  auto grain = silo.runtime().get<grains::KernelGrain>(call.kernel);
  try {
    compute::KernelResult r = silo.runtime().run(grain.call<&grains::KernelGrain::run>(std::move(call), placement));
    result.kernel_seconds += std::chrono::duration<double>(r.report.elapsed).count();
    result.device = r.report.device_id;
    for (const auto& d : silo.executor().devices()) {
      if (d.id == r.report.device_id) result.device_name = d.name;
    }
    if (r.report.fallback != compute::FallbackReason::none) {
      result.fallback = std::string(compute::to_string(r.report.fallback)) + ": " + r.report.fallback_detail;
    }
    return r;
  } catch (const ErrorException& e) {
    return e.error();
  } catch (const std::exception& e) {
    return Error(ErrorCode::internal, e.what());
  }
}

std::vector<std::shared_ptr<SampleDef>> all_samples() {
  std::vector<std::shared_ptr<SampleDef>> out;
  for (auto family : {&vector_samples, &matrix_samples, &image_samples, &graph_samples}) {
    for (auto& s : family()) out.push_back(std::move(s));
  }
  return out;
}

}  // namespace gpubridge::samples
