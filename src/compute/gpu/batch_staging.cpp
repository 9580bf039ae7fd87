// Batch staging layout, packing and scattering (see batch_staging.hpp).
#include <algorithm>
#include "compute/gpu/batch_staging.hpp"

#include <cstring>
#include <span>

#include "compute/request_prefetch.hpp"

namespace gpubridge::compute::detail {

namespace {

std::size_t align_up(std::size_t v, std::size_t align) { return (v + align - 1) / align * align; }

}  // namespace

BatchStaging::BatchStaging(const BatchCall& call, const GpuBatchRecipe& recipe, std::size_t align) {
  const std::size_t t = size_of(call.dtype);
  const std::size_t segments = call.requests.size();
  const KernelSignature& sig = call.def->signature;
  offsets_bytes = (segments + 1) * sizeof(std::uint64_t);
  scalars_bytes = segments * sig.scalars.size() * t;
  input_bytes = call.total_elements * t;
  output_bytes = (sig.output == OutputShape::scalar ? segments : call.total_elements) * t;
  aux_bytes = segments * recipe.aux_elems * t;

  std::size_t off = align_up(offsets_bytes, align);
  scalars = off;
  off += align_up(scalars_bytes, align);
  for (std::size_t i = 0; i < sig.inputs.size(); ++i) {
    input[i] = off;
    off += align_up(input_bytes, align);
  }
  upload_bytes = off;
  aux = align_up(output_bytes, align);
  download_bytes = aux + align_up(aux_bytes, align);
}

void pack_batch_tables(const BatchCall& call, const BatchStaging& layout, std::byte* upload) {
  std::memcpy(upload + layout.offsets, call.offsets.data(), layout.offsets_bytes);
  const std::size_t scalars = call.def->signature.scalars.size();
  if (scalars == 0) return;
  const std::size_t t = size_of(call.dtype);
  std::byte* dst = upload + layout.scalars;
  for (const BatchRequest* r : call.requests) {
    for (std::size_t k = 0; k < scalars; ++k, dst += t) {
      if (call.dtype == DType::f32) {
        const float v = static_cast<float>(r->scalars[k]);
        std::memcpy(dst, &v, sizeof v);
      } else {
        std::memcpy(dst, &r->scalars[k], sizeof(double));
      }
    }
  }
}

void pack_batch_inputs(const BatchCall& call, const BatchStaging& layout, std::byte* upload, std::size_t begin,
                       std::size_t end) {
  const std::size_t t = size_of(call.dtype);
  const std::size_t inputs = call.def->signature.inputs.size();
  for_requests_prefetched(
      call, begin, end, [&call](const BatchRequest& r) { prefetch_inputs(*call.def, r); },
      [&](std::size_t s) {
        const BatchRequest& r = *call.requests[s];
        const std::size_t at = call.offsets[s] * t;
        for (std::size_t i = 0; i < inputs; ++i) {
          std::memcpy(upload + layout.input[i] + at, r.inputs[i].data, r.inputs[i].count * t);
        }
      });
}

void scatter_batch(const BatchCall& call, const GpuBatchRecipe& recipe, const BatchStaging& layout,
                   const std::byte* download, std::size_t begin, std::size_t end) {
  const std::size_t t = size_of(call.dtype);
  const bool scalar = call.def->signature.output == OutputShape::scalar;
  const auto next = [&call](const BatchRequest& r) { prefetch_output(*call.def, call.dtype, r); };
  for_requests_prefetched(call, begin, end, next, [&](std::size_t s) {
    BatchRequest& r = *call.requests[s];
    Status status;
    if (recipe.check != nullptr) {
      std::array<double, kMaxBatchAux> aux{};
      const std::byte* src = download + layout.aux + s * recipe.aux_elems * t;
      const std::size_t aux_count = std::min(recipe.aux_elems, kMaxBatchAux);  // recipes stay within it
      for (std::size_t k = 0; k < aux_count; ++k) {
        if (call.dtype == DType::f32) {
          float v;
          std::memcpy(&v, src + k * t, sizeof v);
          aux[k] = v;
        } else {
          std::memcpy(&aux[k], src + k * t, sizeof(double));
        }
      }
      status = recipe.check(std::span<const double>(aux.data(), aux_count));
    }
    if (status) {
      const std::size_t first = scalar ? s : call.offsets[s];
      const std::size_t count = scalar ? 1 : r.inputs[0].count;
      std::memcpy(r.output, download + layout.output + first * t, count * t);
    }
    r.status = std::move(status);
  });
}

}  // namespace gpubridge::compute::detail
