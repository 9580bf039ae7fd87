// Vector samples: vector-add, vector-dot, vector-normalize on generated float32 data.
//
//   gpubridge sample vector-add|vector-dot|vector-normalize --n N [--seed S] [--backend B]
//
// Inputs are uniform in [-1, 1) from a seeded generator (the same seed gives the same data on
// every machine). The result is checked against the host: add element for element exactly (one
// float addition, no rounding freedom); dot against a double-precision sum, within
// 1e-5 * sum |a_i b_i| (float accumulation order differs per backend); normalize element for
// element within 1e-6 relative to the double-precision norm.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "gpubridge/server/silo.hpp"
#include "samples/programs/sample_list.hpp"

namespace gpubridge::samples {

namespace {

struct VectorOptions {
  std::size_t n = std::size_t{1} << 20;
  std::uint64_t seed = 1;
};

std::vector<float> generate(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

enum class Op { add, dot, normalize };

Result<SampleResult> run_vector(Op op, const VectorOptions& o, server::Silo& silo, const SampleRun& run) {
  if (o.n == 0 || o.n > compute::kMaxElements) {
    return Error(ErrorCode::invalid_argument, "--n must be between 1 and " + std::to_string(compute::kMaxElements));
  }
  const std::vector<float> a = generate(o.n, o.seed);
  const std::vector<float> b = generate(o.n, o.seed + 1);
  SampleResult result;
  compute::KernelCall call;
  call.dtype = compute::DType::f32;
  switch (op) {
    case Op::add: call = {"vector.add", compute::DType::f32, {a, b}, {}}; break;
    case Op::dot: call = {"vector.dot", compute::DType::f32, {a, b}, {}}; break;
    case Op::normalize: call = {"vector.normalize", compute::DType::f32, {a}, {}}; break;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run_kernel(silo, std::move(call), run.placement, result);
  result.total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!r) return r.error();
  const auto out = r->outputs.at(0).as<float>();
  result.values.assign(out.begin(), out.end());

  double max_error = 0;
  switch (op) {
    case Op::add:
      for (std::size_t i = 0; i < o.n; ++i) max_error = std::max(max_error, std::abs(double(out[i]) - double(a[i] + b[i])));
      result.check = "max |error| " + format_number(max_error) + " over " + std::to_string(o.n) + " elements (exact expected)";
      if (max_error != 0) return Error(ErrorCode::data_loss, "vector-add: result differs from the host: " + result.check);
      break;
    case Op::dot: {
      double exact = 0, magnitude = 0;
      for (std::size_t i = 0; i < o.n; ++i) {
        exact += double(a[i]) * double(b[i]);
        magnitude += std::abs(double(a[i]) * double(b[i]));
      }
      max_error = std::abs(double(out[0]) - exact);
      const double tolerance = 1e-5 * magnitude;
      result.check = "dot " + std::to_string(out[0]) + ", host (double) " + std::to_string(exact) + ", |error| " +
                     format_number(max_error) + " <= " + format_number(tolerance);
      if (!(max_error <= tolerance)) return Error(ErrorCode::data_loss, "vector-dot: " + result.check);
      break;
    }
    case Op::normalize: {
      double norm2 = 0;
      for (float x : a) norm2 += double(x) * double(x);
      const double norm = std::sqrt(norm2);
      for (std::size_t i = 0; i < o.n; ++i) {
        const double expected = double(a[i]) / norm;
        max_error = std::max(max_error, std::abs(double(out[i]) - expected));
      }
      result.check = "max |error| " + format_number(max_error) + " over " + std::to_string(o.n) +
                     " elements against the double-precision norm (<= 1e-6)";
      if (!(max_error <= 1e-6)) return Error(ErrorCode::data_loss, "vector-normalize: " + result.check);
      break;
    }
  }
  (void)run.write_output;  // vector samples write no files
  return result;
}

std::shared_ptr<SampleDef> vector_sample(std::string name, std::string help, Op op) {
  auto options = std::make_shared<VectorOptions>();
  auto def = std::make_shared<SampleDef>();
  def->name = std::move(name);
  def->help = std::move(help);
  def->add_options = [options](CLI::App& app) {
    app.add_option("--n", options->n, "Elements per vector (default 1048576)");
    app.add_option("--seed", options->seed, "Seed of the generated inputs (default 1)");
  };
  def->run = [options, op](server::Silo& silo, const SampleRun& run) { return run_vector(op, *options, silo, run); };
  return def;
}

}  // namespace

std::vector<std::shared_ptr<SampleDef>> vector_samples() {
  return {vector_sample("vector-add", "c = a + b on two generated float32 vectors", Op::add),
          vector_sample("vector-dot", "a . b on two generated float32 vectors", Op::dot),
          vector_sample("vector-normalize", "a / |a| on a generated float32 vector", Op::normalize)};
}

}  // namespace gpubridge::samples
