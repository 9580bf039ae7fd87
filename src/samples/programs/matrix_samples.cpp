// Matrix samples on Matrix Market files: matmul, transpose, inverse.
//
//   gpubridge sample matmul    --a A.mtx --b B.mtx --out C.mtx [--dtype f32|f64] [--backend B]
//   gpubridge sample transpose --matrix A.mtx --out T.mtx       [--dtype f32|f64] [--backend B]
//   gpubridge sample inverse   --matrix A.mtx --out Ainv.mtx    [--backend B]          (float64)
//
// Kernels: matrix.multiply (cuBLAS on CUDA, OpenBLAS on the CPU, a tiled kernel on OpenCL),
// matrix.transpose, matrix.inverse (LU with partial pivoting). Results are written as
// `array real general`. Checks against the host: matmul against a double-precision product
// (skipped above 2^31 multiply-adds, and said so); transpose exactly; inverse by the residual
// max |A * Ainv - I| computed in double precision.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "gpubridge/samples/io.hpp"
#include "gpubridge/server/silo.hpp"
#include "samples/programs/sample_list.hpp"

namespace gpubridge::samples {

namespace {

using Clock = std::chrono::steady_clock;

struct MatrixOptions {
  std::string a, b, matrix, out;
  std::string dtype = "f32";
};

Result<compute::DType> parse_matrix_dtype(const std::string& s) {
  if (s == "f32") return compute::DType::f32;
  if (s == "f64") return compute::DType::f64;
  return Error(ErrorCode::invalid_argument, "--dtype must be f32 or f64 (got '" + s + "')");
}

Status check_output_path(const std::string& out, const char* extension) {
  if (out.empty()) return Error(ErrorCode::invalid_argument, "--out is required");
  if (std::filesystem::path(out).extension() != extension) {
    return Error(ErrorCode::invalid_argument, "--out must end in " + std::string(extension) + " (got '" + out + "')");
  }
  return {};
}

// The matrix's values as a typed input; `storage` keeps them alive for the call.
struct TypedValues {
  std::vector<float> f32;
  std::vector<double> f64;
  compute::TensorView view(compute::DType dtype) const {
    return dtype == compute::DType::f32 ? compute::TensorView(f32) : compute::TensorView(f64);
  }
};

TypedValues typed(const std::vector<double>& values, compute::DType dtype) {
  TypedValues t;
  if (dtype == compute::DType::f32) {
    t.f32.assign(values.begin(), values.end());
  } else {
    t.f64 = values;
  }
  return t;
}

std::vector<double> as_doubles(const compute::Tensor& t) {
  std::vector<double> out(t.count());
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = t.at(i);
  return out;
}

Status write_result(const SampleRun& run, const std::string& path, std::size_t rows, std::size_t cols,
                    std::vector<double> values, SampleResult& result) {
  if (!run.write_output) return {};
  DenseMatrix m{rows, cols, std::move(values)};
  if (Status s = write_matrix_market(path, m); !s) return s;
  result.output = path;
  return {};
}

Result<SampleResult> run_matmul(const MatrixOptions& o, server::Silo& silo, const SampleRun& run) {
  if (o.a.empty() || o.b.empty()) return Error(ErrorCode::invalid_argument, "--a and --b are required");
  if (run.write_output) {
    if (Status s = check_output_path(o.out, ".mtx"); !s) return s.error();
  }
  auto dtype = parse_matrix_dtype(o.dtype);
  if (!dtype) return dtype.error();
  auto a = read_matrix_market(o.a);
  if (!a) return a.error();
  auto b = read_matrix_market(o.b);
  if (!b) return b.error();
  if (a->cols != b->rows) {
    return Error(ErrorCode::invalid_argument, "matmul: A is " + std::to_string(a->rows) + "x" + std::to_string(a->cols) +
                                                  " and B is " + std::to_string(b->rows) + "x" + std::to_string(b->cols) +
                                                  ": A's columns must equal B's rows");
  }
  const std::size_t m = a->rows, k = a->cols, n = b->cols;
  const TypedValues ta = typed(a->data, *dtype), tb = typed(b->data, *dtype);
  SampleResult result;
  const auto t0 = Clock::now();
  auto r = run_kernel(silo,
                      {"matrix.multiply", *dtype, {ta.view(*dtype), tb.view(*dtype)},
                       {static_cast<double>(m), static_cast<double>(k), static_cast<double>(n)}},
                      run.placement, result);
  result.total_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!r) return r.error();
  result.values = as_doubles(r->outputs.at(0));

  if (static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n) <= 2147483648.0) {
    // Host product of the same (possibly float-rounded) inputs in double precision.
    double max_error = 0, max_abs = 0;
    for (std::size_t i = 0; i < m; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        double sum = 0, magnitude = 0;
        for (std::size_t p = 0; p < k; ++p) {
          const double x = *dtype == compute::DType::f32 ? double(ta.f32[i * k + p]) * double(tb.f32[p * n + j])
                                                         : ta.f64[i * k + p] * tb.f64[p * n + j];
          sum += x;
          magnitude += std::abs(x);
        }
        max_error = std::max(max_error, std::abs(result.values[i * n + j] - sum));
        max_abs = std::max(max_abs, magnitude);
      }
    }
    const double eps = *dtype == compute::DType::f32 ? 1.2e-7 : 2.3e-16;
    const double tolerance = 2.0 * static_cast<double>(k) * eps * max_abs;
    result.check = "max |C - host double product| " + format_number(max_error) + " <= " + format_number(tolerance) + " (2 k eps max sum|a b|)";
    if (!(max_error <= tolerance)) return Error(ErrorCode::data_loss, "matmul: " + result.check);
  } else {
    result.check = "host check skipped: more than 2^31 multiply-adds";
  }
  if (Status s = write_result(run, o.out, m, n, result.values, result); !s) return s.error();
  return result;
}

Result<SampleResult> run_transpose(const MatrixOptions& o, server::Silo& silo, const SampleRun& run) {
  if (o.matrix.empty()) return Error(ErrorCode::invalid_argument, "--matrix is required");
  if (run.write_output) {
    if (Status s = check_output_path(o.out, ".mtx"); !s) return s.error();
  }
  auto dtype = parse_matrix_dtype(o.dtype);
  if (!dtype) return dtype.error();
  auto a = read_matrix_market(o.matrix);
  if (!a) return a.error();
  const TypedValues ta = typed(a->data, *dtype);
  SampleResult result;
  const auto t0 = Clock::now();
  auto r = run_kernel(silo,
                      {"matrix.transpose", *dtype, {ta.view(*dtype)},
                       {static_cast<double>(a->rows), static_cast<double>(a->cols)}},
                      run.placement, result);
  result.total_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!r) return r.error();
  result.values = as_doubles(r->outputs.at(0));
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < a->rows; ++i) {
    for (std::size_t j = 0; j < a->cols; ++j) {
      const double expected = *dtype == compute::DType::f32 ? double(ta.f32[i * a->cols + j]) : ta.f64[i * a->cols + j];
      if (result.values[j * a->rows + i] != expected) ++wrong;
    }
  }
  result.check = std::to_string(wrong) + " of " + std::to_string(a->data.size()) + " elements differ from the host (exact expected)";
  if (wrong != 0) return Error(ErrorCode::data_loss, "transpose: " + result.check);
  if (Status s = write_result(run, o.out, a->cols, a->rows, result.values, result); !s) return s.error();
  return result;
}

Result<SampleResult> run_inverse(const MatrixOptions& o, server::Silo& silo, const SampleRun& run) {
  if (o.matrix.empty()) return Error(ErrorCode::invalid_argument, "--matrix is required");
  if (run.write_output) {
    if (Status s = check_output_path(o.out, ".mtx"); !s) return s.error();
  }
  auto a = read_matrix_market(o.matrix);
  if (!a) return a.error();
  if (a->rows != a->cols) {
    return Error(ErrorCode::invalid_argument, "inverse: the matrix is " + std::to_string(a->rows) + "x" +
                                                  std::to_string(a->cols) + ", not square");
  }
  const std::size_t n = a->rows;
  SampleResult result;
  const auto t0 = Clock::now();
  auto r = run_kernel(silo, {"matrix.inverse", compute::DType::f64, {compute::TensorView(a->data)}, {static_cast<double>(n)}},
                      run.placement, result);
  result.total_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!r) return r.error();
  result.values = as_doubles(r->outputs.at(0));
  if (n <= 2048) {
    double residual = 0;
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        double sum = 0;
        for (std::size_t p = 0; p < n; ++p) sum += a->data[i * n + p] * result.values[p * n + j];
        residual = std::max(residual, std::abs(sum - (i == j ? 1.0 : 0.0)));
      }
    }
    result.check = "max |A * Ainv - I| = " + format_number(residual) + " (double precision, on the host)";
  } else {
    result.check = "residual check skipped: n > 2048";
  }
  if (Status s = write_result(run, o.out, n, n, result.values, result); !s) return s.error();
  return result;
}

using Body = Result<SampleResult> (*)(const MatrixOptions&, server::Silo&, const SampleRun&);

std::shared_ptr<SampleDef> matrix_sample(std::string name, std::string help, Body body, bool two_inputs, bool dtype_option) {
  auto options = std::make_shared<MatrixOptions>();
  auto def = std::make_shared<SampleDef>();
  def->name = std::move(name);
  def->help = std::move(help);
  def->add_options = [options, two_inputs, dtype_option](CLI::App& app) {
    if (two_inputs) {
      app.add_option("--a", options->a, "Left matrix (Matrix Market)");
      app.add_option("--b", options->b, "Right matrix (Matrix Market)");
    } else {
      app.add_option("--matrix", options->matrix, "Input matrix (Matrix Market)");
    }
    app.add_option("--out", options->out, "Result (.mtx, written as array real general)");
    if (dtype_option) app.add_option("--dtype", options->dtype, "f32 (default) or f64");
  };
  def->run = [options, body](server::Silo& silo, const SampleRun& run) { return body(*options, silo, run); };
  return def;
}

}  // namespace

std::vector<std::shared_ptr<SampleDef>> matrix_samples() {
  return {matrix_sample("matmul", "C = A * B (GEMM) on Matrix Market files", &run_matmul, true, true),
          matrix_sample("transpose", "the transpose of a Matrix Market matrix", &run_transpose, false, true),
          matrix_sample("inverse", "the inverse of a square matrix (float64, LU with partial pivoting)", &run_inverse, false,
                        false)};
}

}  // namespace gpubridge::samples
