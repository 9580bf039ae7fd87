// The portable kernel source compiles with NVRTC for every dtype and for the oldest and newest
// targets we support. NVRTC needs no driver, so this runs on every build machine.
#include <gtest/gtest.h>

#include "compute/cuda/nvrtc_program.hpp"
#include "compute/gpu/gpu_recipe.hpp"
#include "gpubridge/compute/kernel_catalog.hpp"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace gpubridge::compute {
namespace {

TEST(NvrtcCompile, PortableSourceCompilesForEveryDtypeAndTarget) {
  for (DType dtype : {DType::f32, DType::f64}) {
    for (const std::string target : {"sm_75", "sm_90", "compute_90"}) {
      auto image = cuda::compile_portable(detail::portable_kernel_source(), dtype, target);
      ASSERT_TRUE(image.ok()) << target << " " << to_string(dtype) << ": " << image.error().to_string();
      EXPECT_GT(image->size(), 1000u);
    }
  }
}

// Records the entry points a recipe launches, without a device.
class EntryRecorder final : public detail::GpuLauncher {
 public:
  Status launch(std::string_view entry, std::uint64_t groups, std::span<const detail::LaunchArg> args) override {
    EXPECT_GT(groups, 0u) << entry;
    EXPECT_LE(args.size(), 8u) << entry << ": the CUDA launcher passes at most 8 arguments";
    entries.emplace_back(entry);
    return {};
  }
  // Host decisions of shaped recipes read back: a finite max, then pivots on the diagonal.
  Result<std::vector<double>> read(detail::Slot, std::size_t, std::size_t count) override {
    std::vector<double> v(count, 1.0);
    if (count == 2) v[1] = static_cast<double>(next_pivot_row++);
    return v;
  }
  std::vector<std::string> entries;
  std::size_t next_pivot_row = 0;
};

TEST(NvrtcCompile, EveryEntryPointOfEveryRecipeIsInTheCompiledCode) {
  EntryRecorder recorder;
  const std::vector<double> scalars{0.5, 0.25};
  const KernelCatalog catalog = KernelCatalog::with_builtin_kernels();
  for (const std::string& id : catalog.ids()) {
    const KernelDef& def = **catalog.lookup(id);
    if (def.gpu == nullptr) {
      // Every built-in kernel has a GPU recipe (the graph kernels' read-backs of all ones mean
      // "valid", "settled" and "converged at iteration 1").
      ADD_FAILURE() << id << " lost its GPU recipe";
      continue;
    }
    if (def.signature.output == OutputShape::computed) {
      // Shaped recipes (not batchable): 3 x 3 matrices, the portable GEMM path included.
      const std::vector<double> dims(def.signature.scalars.size(), 3.0);
      const std::vector<std::size_t> counts(def.signature.inputs.size(), 9);
      recorder.next_pivot_row = 0;
      ASSERT_TRUE(def.gpu->enqueue_shaped(recorder, {counts, 9, dims}).ok()) << id;
      EXPECT_EQ(def.gpu->batched, nullptr) << id;
      continue;
    }
    ASSERT_TRUE(def.gpu->enqueue(recorder, 1000, scalars).ok()) << id;
    ASSERT_NE(def.gpu->batched, nullptr) << id << " has no batched GPU recipe";
    ASSERT_TRUE(def.gpu->batched->enqueue(recorder, {7, 1000}).ok()) << id;
  }
  for (DType dtype : {DType::f32, DType::f64}) {
    auto ptx = cuda::compile_portable(detail::portable_kernel_source(), dtype, "compute_90");
    ASSERT_TRUE(ptx.ok()) << ptx.error().to_string();
    const std::string text(ptx->begin(), ptx->end());
    for (const std::string& entry : recorder.entries) {
      EXPECT_NE(text.find(".entry " + entry + "("), std::string::npos) << entry << " missing for " << to_string(dtype);
    }
  }
}

TEST(NvrtcCompile, BrokenSourceReportsTheCompilerLog) {
  auto image = cuda::compile_portable("extern \"C\" __global__ void k() { undefined_name; }", DType::f32, "sm_90");
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.error().code(), ErrorCode::internal);
  EXPECT_NE(image.error().message().find("undefined_name"), std::string::npos) << image.error().message();
}

TEST(NvrtcCompile, CachedImagesComeFromDiskTheSecondTime) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("gb-nvrtc-cache-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  ::setenv("GPUBRIDGE_CACHE_DIR", dir.c_str(), 1);
  constexpr std::string_view kSource = "extern \"C\" __global__ void k(float* x) { x[threadIdx.x] += 1.f; }";
  for (const std::string target : {"sm_90", "compute_90"}) {
    auto first = cuda::cached_image(kSource, DType::f32, target);
    ASSERT_TRUE(first.ok()) << first.error().to_string();
    EXPECT_FALSE(first->from_cache) << target;
    auto second = cuda::cached_image(kSource, DType::f32, target);
    ASSERT_TRUE(second.ok()) << second.error().to_string();
    EXPECT_TRUE(second->from_cache) << target;
    EXPECT_EQ(second->image, first->image) << target;
    if (target.starts_with("compute_")) {
      EXPECT_EQ(first->image.back(), '\0') << "PTX is NUL-terminated";
    }
    auto again = cuda::cached_image(kSource, DType::f32, target, /*recompile=*/true);
    ASSERT_TRUE(again.ok()) << again.error().to_string();
    EXPECT_FALSE(again->from_cache) << target;
  }
  // Another dtype is another entry.
  auto f64 = cuda::cached_image(kSource, DType::f64, "sm_90");
  ASSERT_TRUE(f64.ok()) << f64.error().to_string();
  EXPECT_FALSE(f64->from_cache);
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir / "cuda")) ++entries;
  EXPECT_EQ(entries, 3u);
  ::unsetenv("GPUBRIDGE_CACHE_DIR");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gpubridge::compute
