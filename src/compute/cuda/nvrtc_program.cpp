#include "compute/cuda/nvrtc_program.hpp"

#include <cuda.h>  // driver API types only: its entry points are fetched through the runtime
#include <nvrtc.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>
#include <vector>

#include "compute/cuda/cuda_error.hpp"
#include "compute/cuda/device_idle.hpp"
#include "compute/gpu/gpu_recipe.hpp"

namespace gpubridge::compute::cuda {

namespace {

namespace fs = std::filesystem;

std::uint64_t fnv1a(std::string_view data, std::uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

fs::path cache_dir() {
  if (const char* d = std::getenv("GPUBRIDGE_CACHE_DIR"); d && *d) return fs::path(d) / "cuda";
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "gpubridge" / "cuda";
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".cache" / "gpubridge" / "cuda";
  return {};
}

// The driver's cuKernelGetFunction and cuFuncLoad (CUDA 12.4), fetched through the runtime (the
// project never links libcuda); null where the driver lacks them.
struct FunctionLoader {
  using GetFunction = CUresult (*)(CUfunction*, CUkernel);
  using Load = CUresult (*)(CUfunction);
  GetFunction get_function = nullptr;
  Load load = nullptr;

  static const FunctionLoader& instance() {
    static const FunctionLoader loader = [] {
      FunctionLoader l;
      void* get = nullptr;
      void* load = nullptr;
      cudaDriverEntryPointQueryResult found{};
      if (cudaGetDriverEntryPointByVersion("cuKernelGetFunction", &get, 12000, cudaEnableDefault, &found) ==
              cudaSuccess &&
          found == cudaDriverEntryPointSuccess &&
          cudaGetDriverEntryPointByVersion("cuFuncLoad", &load, 12040, cudaEnableDefault, &found) == cudaSuccess &&
          found == cudaDriverEntryPointSuccess) {
        l.get_function = reinterpret_cast<GetFunction>(get);
        l.load = reinterpret_cast<Load>(load);
      }
      cudaGetLastError();
      return l;
    }();
    return loader;
  }
};

// Finishes loading `kernel` into the current context (lazy loading may leave a function partly
// loaded after cudaFuncGetAttributes, and its first launch would then load the rest). False, with
// the reason in `why`, when that cannot be done.
bool finish_loading(cudaKernel_t kernel, std::string& why) {
  const FunctionLoader& loader = FunctionLoader::instance();
  if (loader.load == nullptr) {
    why = "the driver has no cuFuncLoad (CUDA 12.4 or newer)";
    return false;
  }
  CUfunction f = nullptr;
  if (CUresult r = loader.get_function(&f, reinterpret_cast<CUkernel>(kernel)); r != CUDA_SUCCESS) {
    why = "cuKernelGetFunction failed with CUresult " + std::to_string(static_cast<int>(r));
    return false;
  }
  if (CUresult r = loader.load(f); r != CUDA_SUCCESS) {
    why = "cuFuncLoad failed with CUresult " + std::to_string(static_cast<int>(r));
    return false;
  }
  return true;
}

std::vector<char> read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return {};
  return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}

// Best effort: a cache that cannot be written only costs a recompile next time.
void write_file_atomically(const fs::path& p, const std::vector<char>& data) {
  std::error_code ec;
  fs::create_directories(p.parent_path(), ec);
  if (ec) return;
  const fs::path tmp = p.string() + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!f.write(data.data(), static_cast<std::streamsize>(data.size()))) return;
  }
  fs::rename(tmp, p, ec);
  if (ec) fs::remove(tmp, ec);
}

// Highest architecture NVRTC supports that the device can run; exact match gives a cubin.
Result<std::string> pick_target(int cc) {
  int count = 0;
  if (nvrtcResult r = nvrtcGetNumSupportedArchs(&count); r != NVRTC_SUCCESS) return to_error(r, "nvrtcGetNumSupportedArchs");
  std::vector<int> archs(static_cast<std::size_t>(count));
  if (nvrtcResult r = nvrtcGetSupportedArchs(archs.data()); r != NVRTC_SUCCESS) return to_error(r, "nvrtcGetSupportedArchs");
  int best = -1;
  for (int a : archs) {
    if (a <= cc && a > best) best = a;
  }
  if (best < 0) {
    return Error(ErrorCode::failed_precondition,
                 "NVRTC cannot target compute capability " + std::to_string(cc / 10) + "." + std::to_string(cc % 10));
  }
  return (best == cc ? "sm_" : "compute_") + std::to_string(best);
}

Result<std::vector<char>> compile(std::string_view source, const std::vector<std::string>& options, bool cubin) {
  nvrtcProgram prog = nullptr;
  const std::string src(source);
  if (nvrtcResult r = nvrtcCreateProgram(&prog, src.c_str(), "gpubridge_kernels.cu", 0, nullptr, nullptr);
      r != NVRTC_SUCCESS) {
    return to_error(r, "nvrtcCreateProgram");
  }
  std::vector<const char*> opts;
  for (const auto& o : options) opts.push_back(o.c_str());
  const nvrtcResult compiled = nvrtcCompileProgram(prog, static_cast<int>(opts.size()), opts.data());
  if (compiled != NVRTC_SUCCESS) {
    std::size_t log_size = 0;
    nvrtcGetProgramLogSize(prog, &log_size);
    std::string log(log_size, '\0');
    if (log_size > 0) nvrtcGetProgramLog(prog, log.data());
    nvrtcDestroyProgram(&prog);
    Error e = to_error(compiled, "nvrtcCompileProgram");
    return Error(ErrorCode::internal, e.message() + "\n" + log.substr(0, 4000));
  }
  std::size_t size = 0;
  nvrtcResult r = cubin ? nvrtcGetCUBINSize(prog, &size) : nvrtcGetPTXSize(prog, &size);
  std::vector<char> image(size);
  if (r == NVRTC_SUCCESS) r = cubin ? nvrtcGetCUBIN(prog, image.data()) : nvrtcGetPTX(prog, image.data());
  nvrtcDestroyProgram(&prog);
  if (r != NVRTC_SUCCESS) return to_error(r, "nvrtcGet(CUBIN|PTX)");
  return image;
}

}  // namespace

std::vector<std::string> compile_options(DType dtype, const std::string& target) {
  std::vector<std::string> options{"--gpu-architecture=" + target, "--std=c++17"};
  std::istringstream defines(detail::portable_defines(dtype, "-D"));
  for (std::string d; defines >> d;) options.push_back(d);
  return options;
}

Result<std::vector<char>> compile_portable(std::string_view source, DType dtype, const std::string& target) {
  return compile(source, compile_options(dtype, target), target.rfind("sm_", 0) == 0);
}

Result<cudaLibrary_t> load_library(int device, const std::vector<char>& image) {
  return DeviceIdle::run(device, [&]() -> Result<cudaLibrary_t> {
    GB_CUDA_TRY(cudaSetDevice(device));
    cudaLibrary_t lib = nullptr;
    if (cudaError_t e = cudaLibraryLoadData(&lib, image.data(), nullptr, nullptr, 0, nullptr, nullptr, 0);
        e != cudaSuccess) {
      cudaGetLastError();  // a failed load's error is not sticky
      return to_error(e, "cudaLibraryLoadData");
    }
    // Load every kernel into this device's context now: with lazy loading a kernel's first
    // launch would load it, possibly beside a persistent kernel (see device_idle.hpp). Likewise
    // the per-thread stack: a launch that needs more than the context has grows it, and that
    // may wait for the device to go idle.
    unsigned count = 0;
    std::vector<cudaKernel_t> kernels;
    if (cudaLibraryGetKernelCount(&count, lib) == cudaSuccess && count > 0) {
      kernels.resize(count);
      if (cudaLibraryEnumerateKernels(kernels.data(), count, lib) != cudaSuccess) kernels.clear();
    }
    std::size_t stack = 0;
    for (cudaKernel_t k : kernels) {
      cudaFuncAttributes attributes{};
      if (cudaError_t e = cudaFuncGetAttributes(&attributes, reinterpret_cast<const void*>(k)); e != cudaSuccess) {
        // Not fatal (the kernel loads at its first launch instead), but said: beside a persistent
        // kernel that launch may wait.
        std::fprintf(stderr, "gpubridge: preloading a CUDA kernel on device %d failed: %s\n", device,
                     cudaGetErrorString(e));
        continue;
      }
      stack = std::max(stack, attributes.localSizeBytes);
      if (std::string why; !finish_loading(k, why)) {
        std::fprintf(stderr, "gpubridge: loading a CUDA kernel on device %d at once failed: %s\n", device, why.c_str());
      }
    }
    cudaGetLastError();
    std::size_t current = 0;
    if (stack > 0 && cudaDeviceGetLimit(&current, cudaLimitStackSize) == cudaSuccess && current < stack) {
      if (cudaError_t e = cudaDeviceSetLimit(cudaLimitStackSize, stack); e != cudaSuccess) {
        // Not fatal either: the first launch that needs it grows the stack (and fails if it cannot).
        std::fprintf(stderr, "gpubridge: raising the CUDA stack limit of device %d to %zu bytes failed: %s\n", device,
                     stack, cudaGetErrorString(e));
        cudaGetLastError();
      }
    }
    return lib;
  });
}

Result<CachedImage> cached_image(std::string_view source, DType dtype, const std::string& target, bool recompile) {
  const bool cubin = target.rfind("sm_", 0) == 0;
  const std::vector<std::string> options = compile_options(dtype, target);
  int major = 0, minor = 0;
  nvrtcVersion(&major, &minor);
  std::string key_text(source);
  for (const auto& o : options) key_text += "\n" + o;
  key_text += "\nnvrtc " + std::to_string(major) + "." + std::to_string(minor);
  char name[32];
  std::snprintf(name, sizeof name, "%016llx", static_cast<unsigned long long>(fnv1a(key_text)));

  const fs::path dir = cache_dir();
  const fs::path cached = dir.empty() ? fs::path() : dir / (std::string(name) + (cubin ? ".cubin" : ".ptx"));
  CachedImage out;
  if (!recompile && !cached.empty()) out.image = read_file(cached);
  if (!out.image.empty()) {
    out.from_cache = true;
    return out;
  }
  auto compiled = compile(source, options, cubin);
  if (!compiled) return compiled.error();
  out.image = std::move(*compiled);
  if (!cubin) out.image.push_back('\0');
  if (!cached.empty()) write_file_atomically(cached, out.image);
  return out;
}

Result<std::shared_ptr<NvrtcProgram>> NvrtcProgram::build(std::string_view source, DType dtype, int device,
                                                          int compute_capability) {
  auto target = pick_target(compute_capability);
  if (!target) return target.error();
  auto image = cached_image(source, dtype, *target);
  if (!image) return image.error();
  auto lib = load_library(device, image->image);
  if (!lib && image->from_cache) {  // a corrupt or stale cache entry: compiled again
    image = cached_image(source, dtype, *target, true);
    if (!image) return image.error();
    lib = load_library(device, image->image);
  }
  if (!lib) return lib.error();
  return std::shared_ptr<NvrtcProgram>(new NvrtcProgram(*lib, device, *target, image->from_cache));
}

NvrtcProgram::~NvrtcProgram() {
  // An unload error at teardown (e.g. the driver is shutting down) is ignored on purpose.
  if (library_ != nullptr) DeviceIdle::run(device_, [&] { cudaLibraryUnload(library_); });
}

Result<cudaKernel_t> NvrtcProgram::kernel(const std::string& entry) {
  std::lock_guard lock(mutex_);
  if (auto it = kernels_.find(entry); it != kernels_.end()) return it->second;
  cudaKernel_t k = nullptr;
  if (cudaError_t e = cudaLibraryGetKernel(&k, library_, entry.c_str()); e != cudaSuccess) {
    return Error(ErrorCode::not_found, "kernel entry '" + entry + "': " + describe(e));
  }
  kernels_.emplace(entry, k);
  return k;
}

}  // namespace gpubridge::compute::cuda
