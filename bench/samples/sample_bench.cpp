// bench_samples: the samples' kernels through the catalog on every backend, against the library
// doing the same work directly on the host, measured in the same run.
//
// Measured (Google Benchmark, real time; per kernel K and backend b in cpu, cuda, opencl):
//   samples/<K>/<b>        Executor::run of K pinned to that backend (no fallback); a kernel
//                          without an implementation there is skipped with the reason
//   samples/<K>/direct     the work on the host without the runtime: OpenBLAS (sgemm/dgemm
//                          through samples::matmul) for matrix.multiply, the sample CPU
//                          algorithms (include/gpubridge/samples/algorithms.hpp) otherwise
//   samples/<K>/library    a well-known library doing the same work on the host, where one is
//                          linked: OpenBLAS for the vector kernels (a copy then saxpy; dsdot, a
//                          float64 sum of float32 products as the sample's; dsdot of x with itself,
//                          then a copy and sscal), LAPACK in OpenBLAS for matrix.inverse (dgetrf +
//                          dgetri), OpenBLAS's somatcopy for matrix.transpose, OpenCV (imgproc:
//                          resize INTER_LINEAR, GaussianBlur, Sobel dx and dy then magnitude,
//                          filter2D; its own threads) for the image kernels and igraph
//                          (bfs_simple, PageRank by PRPACK, distances_dijkstra; one thread) for
//                          the graph kernels, on a graph built once from the same CSR arrays;
//                          matrix.multiply's library is direct.
//   samples/matrix.multiply/cublas
//                          the reference of the CUDA call: cuBLAS sgemm called directly on
//                          preallocated device buffers, with the same copies from and to the
//                          caller's pageable memory (compute/raw_cuda.hpp, RawCublasGemm)
// Ratio table after the run: <b> / direct and <b> / library (> 1: the catalog call on b is slower
// by that factor),
// cuda / cpu and opencl / cpu (the GPU against the catalog's own CPU backend), and cuda / cublas
// for matrix.multiply.
// Counter cpu_ms: the process's CPU time per call in ms, all threads together (the catalog runs
// kernels on its worker threads, the algorithms start their own). On a shared, noisy machine
// comparing catalog and direct cpu_ms shows the extra work better than real times do.
// Inputs: seeded random f32 vectors of 2^22 elements (vector kernels), f32 matrices 1024 x 1024 (multiply), 2048 x 2048 (transpose), f64 512 x 512 (inverse,
// diagonally dominant); ../shared/data/images/camera.png (512 x 512 grey) for the image kernels;
// a seeded random directed graph with 200k nodes and 2M edges for the graph kernels.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <cblas.h>
#include <igraph.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "common/ratio_report.hpp"
#include "compute/compute_fixture.hpp"
#include "compute/raw_cuda.hpp"
#include "gpubridge/samples/algorithms.hpp"
#include "gpubridge/samples/io.hpp"

#ifndef GPUBRIDGE_SHARED_DATA_DIR
#define GPUBRIDGE_SHARED_DATA_DIR "../shared/data"
#endif

namespace gpubridge::bench {
namespace {

using compute::BackendKind;
using compute::DType;

// One benchmark case: a catalog call and the same work done directly (and by a library).
struct Case {
  std::string kernel;
  std::function<compute::KernelCall()> call;  // views into data owned by the case's storage
  std::function<Status()> direct;
  std::function<Status()> library = {};  // empty: no library reference on the host
};

}  // namespace
}  // namespace gpubridge::bench

// LAPACK (Fortran calling convention), in OpenBLAS.
extern "C" void dgetrf_(const int* m, const int* n, double* a, const int* lda, int* ipiv, int* info);
extern "C" void dgetri_(const int* n, double* a, const int* lda, const int* ipiv, double* work, const int* lwork,
                        int* info);

namespace gpubridge::bench {
namespace {

// The library references (see the header). Each returns a fresh result, as the sample calls do.
Status library_vector_add(std::span<const float> a, std::span<const float> b) {
  std::vector<float> y(b.begin(), b.end());
  cblas_saxpy(static_cast<int>(a.size()), 1.f, a.data(), 1, y.data(), 1);
  benchmark::DoNotOptimize(y.data());
  return {};
}

Status library_vector_dot(std::span<const float> a, std::span<const float> b) {
  double dot = cblas_dsdot(static_cast<int>(a.size()), a.data(), 1, b.data(), 1);
  benchmark::DoNotOptimize(dot);
  return {};
}

Status library_vector_normalize(std::span<const float> x) {
  const double norm = std::sqrt(cblas_dsdot(static_cast<int>(x.size()), x.data(), 1, x.data(), 1));
  if (!(norm > 0) || !std::isfinite(norm)) return Status(Error(ErrorCode::invalid_argument, "zero or non-finite norm"));
  std::vector<float> y(x.begin(), x.end());
  cblas_sscal(static_cast<int>(y.size()), static_cast<float>(1.0 / norm), y.data(), 1);
  benchmark::DoNotOptimize(y.data());
  return {};
}

// Row-major A read as column-major is A^T, and inv(A^T) written column-major is inv(A) row-major.
Status library_inverse(std::span<const double> a, int n) {
  std::vector<double> w(a.begin(), a.end());
  std::vector<int> pivots(static_cast<std::size_t>(n));
  int info = 0;
  dgetrf_(&n, &n, w.data(), &n, pivots.data(), &info);
  if (info != 0) return Status(Error(ErrorCode::invalid_argument, "dgetrf: info " + std::to_string(info)));
  const int lwork = 64 * n;
  std::vector<double> work(static_cast<std::size_t>(lwork));
  dgetri_(&n, w.data(), &n, pivots.data(), work.data(), &lwork, &info);
  if (info != 0) return Status(Error(ErrorCode::invalid_argument, "dgetri: info " + std::to_string(info)));
  benchmark::DoNotOptimize(w.data());
  return {};
}

Status library_transpose(const samples::MatrixF32& m) {
  std::vector<float> t(m.values.size());
  cblas_somatcopy(CblasRowMajor, CblasTrans, static_cast<int>(m.rows), static_cast<int>(m.cols), 1.f, m.values.data(),
                  static_cast<int>(m.cols), t.data(), static_cast<int>(m.rows));
  benchmark::DoNotOptimize(t.data());
  return {};
}

// The shared data directory: $GPUBRIDGE_DATA_DIR when set (a GPU machine without the checkout's
// layout), else ../shared/data of the source tree.
std::string data_dir() {
  const char* env = std::getenv("GPUBRIDGE_DATA_DIR");
  return env != nullptr ? env : GPUBRIDGE_SHARED_DATA_DIR;
}

// OpenCV on a float32 image (grey: one channel); results are fresh, as the sample calls' are.
cv::Mat cv_image(const std::vector<float>& pixels, std::size_t h, std::size_t w) {
  return cv::Mat(static_cast<int>(h), static_cast<int>(w), CV_32FC1, const_cast<float*>(pixels.data()));
}

Status library_resize(const cv::Mat& image, int width, int height) {
  cv::Mat out;
  cv::resize(image, out, cv::Size(width, height), 0, 0, cv::INTER_LINEAR);
  benchmark::DoNotOptimize(out.data);
  return {};
}

Status library_blur(const cv::Mat& image, double sigma) {
  cv::Mat out;
  cv::GaussianBlur(image, out, cv::Size(0, 0), sigma, sigma, cv::BORDER_REFLECT_101);
  benchmark::DoNotOptimize(out.data);
  return {};
}

Status library_sobel(const cv::Mat& image) {
  cv::Mat dx, dy, magnitude;
  cv::Sobel(image, dx, CV_32F, 1, 0, 3);
  cv::Sobel(image, dy, CV_32F, 0, 1, 3);
  cv::magnitude(dx, dy, magnitude);
  benchmark::DoNotOptimize(magnitude.data);
  return {};
}

Status library_correlate(const cv::Mat& image, const std::vector<float>& kernel, int rows, int cols) {
  cv::Mat out;
  const cv::Mat k(rows, cols, CV_32FC1, const_cast<float*>(kernel.data()));
  cv::filter2D(image, out, CV_32F, k, cv::Point(-1, -1), 0, cv::BORDER_REFLECT_101);
  benchmark::DoNotOptimize(out.data);
  return {};
}

Status igraph_status(igraph_error_t e, const char* what) {
  if (e == IGRAPH_SUCCESS) return {};
  return Status(Error(ErrorCode::internal, std::string(what) + ": " + igraph_strerror(e)));
}

struct Storage {
  std::vector<float> a32, b32, image, kernel5, va, vb;
  std::vector<double> a64, offsets, neighbors, weights;
  samples::MatrixF32 ma, mb, mt;
  samples::MatrixF64 minv;
  samples::ImageF32 img;
  samples::CsrGraph graph;
  igraph_t igraph{};                // the same graph for igraph (built with the CSR arrays)
  igraph_vector_t igraph_weights{};
  bool igraph_ready = false;
  std::size_t h = 0, w = 0;
};

Storage& storage() {
  static Storage* s = [] {
    auto* st = new Storage;
    std::mt19937_64 rng(42);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    st->a32.resize(1024 * 1024);
    st->b32.resize(1024 * 1024);
    for (auto& x : st->a32) x = u(rng);
    for (auto& x : st->b32) x = u(rng);
    st->ma = {1024, 1024, st->a32};
    st->va.resize(std::size_t{1} << 22);
    st->vb.resize(st->va.size());
    for (auto& x : st->va) x = u(rng);
    for (auto& x : st->vb) x = u(rng);
    st->mb = {1024, 1024, st->b32};
    std::vector<float> t(2048 * 2048);
    for (auto& x : t) x = u(rng);
    st->mt = {2048, 2048, t};
    const std::size_t n = 512;
    st->a64.resize(n * n);
    for (std::size_t i = 0; i < n; ++i) {
      double off = 0;
      for (std::size_t j = 0; j < n; ++j) {
        st->a64[i * n + j] = u(rng);
        off += std::abs(st->a64[i * n + j]);
      }
      st->a64[i * n + i] = off + 1;
    }
    st->minv = {n, n, st->a64};
    auto png = samples::read_png(data_dir() + "/images/camera.png");
    if (png) {
      st->img = {png->height, png->width, png->channels, png->data};
      st->image = png->data;
      st->h = png->height;
      st->w = png->width;
    }
    st->kernel5.resize(25);
    for (auto& x : st->kernel5) x = u(rng) / 25.f;
    const std::size_t nodes = 200000, edges = 2000000;
    std::uniform_int_distribution<std::size_t> node(0, nodes - 1);
    std::uniform_real_distribution<double> weight(0.1, 10.0);
    std::vector<samples::Edge> list(edges);
    for (auto& e : list) e = {node(rng), node(rng), weight(rng)};
    st->graph = samples::build_csr(nodes, list, true).value();
    st->offsets.assign(st->graph.row_offsets.begin(), st->graph.row_offsets.end());
    st->neighbors.assign(st->graph.neighbors.begin(), st->graph.neighbors.end());
    st->weights = st->graph.weights;
    igraph_set_error_handler(igraph_error_handler_printignore);  // errors come back as codes
    igraph_vector_int_t ends;
    if (igraph_vector_int_init(&ends, static_cast<igraph_integer_t>(2 * st->graph.neighbors.size())) == IGRAPH_SUCCESS) {
      std::size_t e = 0;
      for (std::size_t from = 0; from < st->graph.node_count; ++from) {
        for (std::size_t k = st->graph.row_offsets[from]; k < st->graph.row_offsets[from + 1]; ++k, ++e) {
          VECTOR(ends)[2 * e] = static_cast<igraph_integer_t>(from);
          VECTOR(ends)[2 * e + 1] = static_cast<igraph_integer_t>(st->graph.neighbors[k]);
        }
      }
      st->igraph_ready =
          igraph_create(&st->igraph, &ends, static_cast<igraph_integer_t>(st->graph.node_count), IGRAPH_DIRECTED) ==
              IGRAPH_SUCCESS &&
          igraph_vector_init_array(&st->igraph_weights, st->graph.weights.data(),
                                   static_cast<igraph_integer_t>(st->graph.weights.size())) == IGRAPH_SUCCESS;
      igraph_vector_int_destroy(&ends);
    }
    on_shutdown([st] {
      if (st->igraph_ready) {
        igraph_destroy(&st->igraph);
        igraph_vector_destroy(&st->igraph_weights);
      }
      delete st;
    });
    return st;
  }();
  return *s;
}

Status ok_or(const auto& r) { return r ? Status{} : Status(r.error()); }

Status library_bfs(Storage& s) {
  if (!s.igraph_ready) return Status(Error(ErrorCode::internal, "the igraph graph could not be built"));
  igraph_vector_int_t order, layers;
  igraph_vector_int_init(&order, 0);
  igraph_vector_int_init(&layers, 0);
  Status st = igraph_status(igraph_bfs_simple(&s.igraph, 0, IGRAPH_OUT, &order, &layers, nullptr), "igraph_bfs_simple");
  igraph_vector_int_destroy(&order);
  igraph_vector_int_destroy(&layers);
  return st;
}

Status library_pagerank(Storage& s) {
  if (!s.igraph_ready) return Status(Error(ErrorCode::internal, "the igraph graph could not be built"));
  igraph_vector_t ranks;
  igraph_vector_init(&ranks, 0);
  igraph_real_t value = 0;
  Status st = igraph_status(igraph_pagerank(&s.igraph, IGRAPH_PAGERANK_ALGO_PRPACK, &ranks, &value, igraph_vss_all(),
                                            true, 0.85, nullptr, nullptr),
                            "igraph_pagerank");
  igraph_vector_destroy(&ranks);
  return st;
}

Status library_sssp(Storage& s) {
  if (!s.igraph_ready) return Status(Error(ErrorCode::internal, "the igraph graph could not be built"));
  igraph_matrix_t distances;
  igraph_matrix_init(&distances, 0, 0);
  Status st = igraph_status(igraph_distances_dijkstra(&s.igraph, &distances, igraph_vss_1(0), igraph_vss_all(),
                                                      &s.igraph_weights, IGRAPH_OUT),
                            "igraph_distances_dijkstra");
  igraph_matrix_destroy(&distances);
  return st;
}

// CPU time used by the whole process so far, in ms.
double process_cpu_ms() {
  timespec t{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

// Measures the loop's process CPU time around `loop` into the cpu_ms counter (per iteration).
template <typename Loop>
void with_process_cpu(benchmark::State& state, Loop&& loop) {
  const double start = process_cpu_ms();
  loop();
  state.counters["cpu_ms"] = benchmark::Counter(process_cpu_ms() - start, benchmark::Counter::kAvgIterations);
}

std::vector<Case> cases() {
  Storage& s = storage();
  const double h = static_cast<double>(s.h), w = static_cast<double>(s.w);
  return {
      {"vector.add", [&s] { return compute::KernelCall{"vector.add", DType::f32, {s.va, s.vb}, {}}; },
       [&s] { return ok_or(samples::vector_add(std::span<const float>(s.va), std::span<const float>(s.vb))); },
       [&s] { return library_vector_add(s.va, s.vb); }},
      {"vector.dot", [&s] { return compute::KernelCall{"vector.dot", DType::f32, {s.va, s.vb}, {}}; },
       [&s] { return ok_or(samples::vector_dot(std::span<const float>(s.va), std::span<const float>(s.vb))); },
       [&s] { return library_vector_dot(s.va, s.vb); }},
      {"vector.normalize", [&s] { return compute::KernelCall{"vector.normalize", DType::f32, {s.va}, {}}; },
       [&s] { return ok_or(samples::vector_normalize(std::span<const float>(s.va))); },
       [&s] { return library_vector_normalize(s.va); }},
      {"matrix.multiply",
       [&s] { return compute::KernelCall{"matrix.multiply", DType::f32, {s.a32, s.b32}, {1024, 1024, 1024}}; },
       [&s] { return ok_or(samples::matmul(s.ma, s.mb)); }},
      {"matrix.transpose",
       [&s] { return compute::KernelCall{"matrix.transpose", DType::f32, {s.mt.values}, {2048, 2048}}; },
       [&s] { return ok_or(samples::transpose(s.mt)); }, [&s] { return library_transpose(s.mt); }},
      {"matrix.inverse", [&s] { return compute::KernelCall{"matrix.inverse", DType::f64, {s.a64}, {512}}; },
       [&s] { return ok_or(samples::inverse(s.minv)); }, [&s] { return library_inverse(s.a64, 512); }},
      {"image.resize",
       [&s, h, w] { return compute::KernelCall{"image.resize", DType::f32, {s.image}, {h, w, 1, 1024, 1024}}; },
       [&s] { return ok_or(samples::resize_bilinear(s.img, 1024, 1024)); },
       [&s] { return library_resize(cv_image(s.image, s.h, s.w), 1024, 1024); }},
      {"image.gaussian_blur",
       [&s, h, w] { return compute::KernelCall{"image.gaussian_blur", DType::f32, {s.image}, {h, w, 1, 3.0}}; },
       [&s] { return ok_or(samples::gaussian_blur(s.img, 3.0)); },
       [&s] { return library_blur(cv_image(s.image, s.h, s.w), 3.0); }},
      {"image.sobel", [&s, h, w] { return compute::KernelCall{"image.sobel", DType::f32, {s.image}, {h, w, 1, 2}}; },
       [&s] { return ok_or(samples::sobel(s.img)); }, [&s] { return library_sobel(cv_image(s.image, s.h, s.w)); }},
      {"image.correlate",
       [&s, h, w] { return compute::KernelCall{"image.correlate", DType::f32, {s.image, s.kernel5}, {h, w, 1, 5, 5}}; },
       [&s] { return ok_or(samples::correlate2d(s.img, samples::MatrixF32{5, 5, s.kernel5})); },
       [&s] { return library_correlate(cv_image(s.image, s.h, s.w), s.kernel5, 5, 5); }},
      {"graph.bfs", [&s] { return compute::KernelCall{"graph.bfs", DType::f64, {s.offsets, s.neighbors}, {0}}; },
       [&s] { return ok_or(samples::bfs_levels(s.graph, 0)); }, [&s] { return library_bfs(s); }},
      {"graph.pagerank",
       [&s] { return compute::KernelCall{"graph.pagerank", DType::f64, {s.offsets, s.neighbors, s.weights}, {0.85, 1e-10, 0}}; },
       [&s] { return ok_or(samples::pagerank(s.graph)); }, [&s] { return library_pagerank(s); }},
      {"graph.sssp",
       [&s] { return compute::KernelCall{"graph.sssp", DType::f64, {s.offsets, s.neighbors, s.weights}, {0}}; },
       [&s] { return ok_or(samples::sssp_dijkstra(s.graph, 0)); }, [&s] { return library_sssp(s); }},
  };
}

void catalog_run(benchmark::State& state, Case c, BackendKind backend) {
  if (storage().image.empty()) return skip(state, "read_png", "camera.png not found under " + data_dir());
  compute::Executor* executor = executor_for(state, backend);
  if (executor == nullptr) return;
  auto warm = executor->run(c.call(), pinned_to(backend));
  if (!warm) return skip(state, c.kernel, warm.error().to_string());
  state.SetLabel(device_label(warm->report.device_id));
  with_process_cpu(state, [&] {
    for (auto _ : state) {
      auto r = executor->run(c.call(), pinned_to(backend));
      if (!r) return skip(state, c.kernel, r.error().to_string());
      benchmark::DoNotOptimize(r->outputs[0].data());
    }
  });
}

// The host reference `work` (a case's direct or library call).
void host_run(benchmark::State& state, std::string kernel, std::function<Status()> work) {
  if (storage().image.empty()) return skip(state, "read_png", "camera.png not found under " + data_dir());
  if (Status s = work(); !s) return skip(state, kernel, s.error().to_string());
  with_process_cpu(state, [&] {
    for (auto _ : state) {
      if (Status s = work(); !s) return skip(state, kernel, s.error().to_string());
    }
  });
}

// samples/matrix.multiply/cublas: the matrix.multiply call's 1024^3 f32 product with cuBLAS directly.
void cublas_run(benchmark::State& state) {
  RawCuda* cuda = raw_cuda_for(state);
  if (cuda == nullptr) return;
  auto gemm = RawCublasGemm::create(*cuda, 1024, 1024, 1024);
  if (!gemm) return skip(state, "raw cuBLAS", gemm.error().to_string());
  const Storage& s = storage();
  std::vector<float> c(1024 * 1024);
  if (Status st = (*gemm)->run(s.a32.data(), s.b32.data(), c.data()); !st) {
    return skip(state, "raw cuBLAS", st.error().to_string());
  }
  for (std::size_t at : {std::size_t{0}, std::size_t{1024 * 1024 - 1}}) {  // checked against the host
    const std::size_t i = at / 1024, j = at % 1024;
    double want = 0;
    for (std::size_t k = 0; k < 1024; ++k) want += double(s.a32[i * 1024 + k]) * s.b32[k * 1024 + j];
    if (std::abs(c[at] - want) > 1e-2 * (1 + std::abs(want))) {
      return skip(state, "raw cuBLAS", "element " + std::to_string(at) + " is " + std::to_string(c[at]) +
                                           ", the host computes " + std::to_string(want));
    }
  }
  state.SetLabel(cuda->device_name());
  for (auto _ : state) {
    if (Status st = (*gemm)->run(s.a32.data(), s.b32.data(), c.data()); !st) {
      return skip(state, "raw cuBLAS", st.error().to_string());
    }
  }
}

void register_all() {
  benchmark::RegisterBenchmark("samples/matrix.multiply/cublas", cublas_run)->UseRealTime()->Unit(benchmark::kMillisecond);
  register_pair({"matrix.multiply (cuBLAS)", "cuda", "samples/matrix.multiply/cuda", "samples/matrix.multiply/cublas"});
  for (const Case& c : cases()) {
    const std::string prefix = "samples/" + c.kernel + "/";
    benchmark::RegisterBenchmark((prefix + "direct").c_str(), host_run, c.kernel, c.direct)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    if (c.library) {
      benchmark::RegisterBenchmark((prefix + "library").c_str(), host_run, c.kernel, c.library)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
      register_pair({c.kernel + " direct (library)", "cpu", prefix + "direct", prefix + "library"});
    }
    for (BackendKind backend : {BackendKind::cpu, BackendKind::cuda, BackendKind::opencl}) {
      const std::string b(compute::to_string(backend));
      benchmark::RegisterBenchmark((prefix + b).c_str(), catalog_run, c, backend)->UseRealTime()->Unit(benchmark::kMillisecond);
      register_pair({c.kernel, b, prefix + b, prefix + "direct"});
      if (c.library) register_pair({c.kernel + " (library)", b, prefix + b, prefix + "library"});
      if (backend != BackendKind::cpu) register_pair({c.kernel + " vs cpu", b, prefix + b, prefix + "cpu"});
    }
  }
}

}  // namespace
}  // namespace gpubridge::bench

int main(int argc, char** argv) {
  gpubridge::bench::register_all();
  return gpubridge::bench::run_with_ratio_report(
      argc, argv,
      {.help = "bench_samples: the samples' kernels through the catalog on every backend against the library on the host.\n\n"});
}
