// bench_compute: the catalog against the raw backend APIs (dispatch overhead and bandwidth), each
// pair measured in the same run; the ratio table follows the usual Google Benchmark output.
//
// Flags besides Google Benchmark's and --ratio_out=FILE (see common/ratio_report.hpp):
//   --bandwidth_n=N[,N...]  element counts of the bandwidth benchmarks on every backend, with an
//                           optional K/M/G suffix (powers of two): 64M for a GPU run. Default: 4M
//                           on cpu and opencl (PoCL in CI), 16M on cuda.
// Without --benchmark_min_time each benchmark runs for at least 0.2 s, so the whole run stays short.
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/ratio_report.hpp"
#include "compute/compute_benchmarks.hpp"

namespace {

constexpr std::size_t kMi = std::size_t{1} << 20;

// "64M,16M" -> {64 Mi, 16 Mi}; empty on a malformed list.
std::vector<std::size_t> parse_sizes(std::string_view list) {
  std::vector<std::size_t> out;
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    std::string item(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    std::size_t scale = 1;
    if (!item.empty()) {
      switch (item.back()) {
        case 'K': case 'k': scale = std::size_t{1} << 10; break;
        case 'M': case 'm': scale = kMi; break;
        case 'G': case 'g': scale = std::size_t{1} << 30; break;
        default: break;
      }
      if (scale != 1) item.pop_back();
    }
    if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos) return {};
    const std::size_t n = std::stoull(item) * scale;
    if (n == 0) return {};
    out.push_back(n);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  gpubridge::bench::BandwidthSizes sizes{{4 * kMi}, {16 * kMi}, {4 * kMi}};
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    constexpr std::string_view kFlag = "--bandwidth_n=";
    if (i > 0 && std::strncmp(argv[i], kFlag.data(), kFlag.size()) == 0) {
      auto n = parse_sizes(argv[i] + kFlag.size());
      if (n.empty()) {
        std::fprintf(stderr, "bad %s (expected N[,N...] with an optional K/M/G suffix)\n", argv[i]);
        return 1;
      }
      sizes = {n, n, n};
      continue;
    }
    args.push_back(argv[i]);
  }
  args.push_back(nullptr);

  gpubridge::bench::register_dispatch_benchmarks();
  gpubridge::bench::register_batch_benchmarks();
  gpubridge::bench::register_bandwidth_benchmarks(sizes);
  gpubridge::bench::RunOptions options;
  options.help =
      "Compute benchmark flags:\n"
      "  --bandwidth_n=N[,N...]  bandwidth element counts for every backend, K/M/G suffixes allowed\n"
      "                          (default 4M on cpu and opencl, 16M on cuda; 64M for a GPU run)\n\n";
  return gpubridge::bench::run_with_ratio_report(static_cast<int>(args.size()) - 1, args.data(), options);
}
