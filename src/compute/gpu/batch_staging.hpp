#pragma once
// How a batch of the dynamic batcher is laid out for a GPU, shared by the CUDA and OpenCL
// backends: one upload region and one download region, each a single copy.
//
//   upload:   [offsets: segments + 1 uint64][scalars: segments x signature scalars][input0]..[inputK]
//   download: [output: segments (scalar kernels) or total_elements][aux: segments x aux_elems]
//
// Regions start at multiples of `align` bytes. pack_*() fill the upload region from the
// requests; scatter() checks each segment's aux and copies its output into the request's memory,
// setting every request's status. Both work on a range of segments, so a backend may split a
// large batch over threads; neither allocates.
#include <array>
#include <cstddef>

#include "compute/backend.hpp"
#include "compute/gpu/gpu_recipe.hpp"

namespace gpubridge::compute::detail {

struct BatchStaging {
  BatchStaging(const BatchCall& call, const GpuBatchRecipe& recipe, std::size_t align);

  // Upload region (byte offsets).
  std::size_t offsets = 0;
  std::size_t scalars = 0;
  std::array<std::size_t, 4> input{};
  std::size_t upload_bytes = 0;
  // Download region (byte offsets from its start).
  std::size_t output = 0;
  std::size_t aux = 0;
  std::size_t download_bytes = 0;

  std::size_t offsets_bytes = 0, scalars_bytes = 0, input_bytes = 0, output_bytes = 0, aux_bytes = 0;
};

// The offsets table and the per-segment scalars (converted to the dtype).
void pack_batch_tables(const BatchCall& call, const BatchStaging& layout, std::byte* upload);
// Inputs of segments [begin, end), each at its offset in every input slot.
void pack_batch_inputs(const BatchCall& call, const BatchStaging& layout, std::byte* upload, std::size_t begin,
                       std::size_t end);
// For segments [begin, end): runs recipe.check on the segment's aux (if any), copies the output
// of segments that pass into their requests, and sets each request's status.
void scatter_batch(const BatchCall& call, const GpuBatchRecipe& recipe, const BatchStaging& layout,
                   const std::byte* download, std::size_t begin, std::size_t end);

}  // namespace gpubridge::compute::detail
