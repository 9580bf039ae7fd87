#include "gpubridge/compute/verify.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace gpubridge::compute {

std::string_view to_string(VerifyStatus s) noexcept {
  switch (s) {
    case VerifyStatus::pass: return "pass";
    case VerifyStatus::fail: return "fail";
    case VerifyStatus::skipped: return "skipped";
  }
  return "invalid";
}

std::size_t VerifyReport::passed() const {
  return static_cast<std::size_t>(std::count_if(rows.begin(), rows.end(), [](const auto& r) { return r.status == VerifyStatus::pass; }));
}
std::size_t VerifyReport::failed() const {
  return static_cast<std::size_t>(std::count_if(rows.begin(), rows.end(), [](const auto& r) { return r.status == VerifyStatus::fail; }));
}
std::size_t VerifyReport::skipped() const {
  return static_cast<std::size_t>(std::count_if(rows.begin(), rows.end(), [](const auto& r) { return r.status == VerifyStatus::skipped; }));
}

namespace {

// Generated inputs of one (kernel, dtype, n) case, shared by every device.
struct Case {
  std::vector<std::vector<double>> values;  // exact values, representable in the dtype
  std::vector<std::vector<float>> f32;
  std::vector<std::vector<double>> f64;
  std::vector<double> scalars;
  KernelCall call;
  // Computed kernels: from the kernel's example generator.
  double tolerance = 0;
  std::optional<std::vector<long double>> expected;
};

// Fills c.call (and the typed copies it views) from c.values and c.scalars.
void bind_call(const KernelDef& def, DType dtype, Case& c) {
  c.call.kernel = def.id;
  c.call.dtype = dtype;
  c.call.scalars = c.scalars;
  for (const auto& v : c.values) {
    if (dtype == DType::f32) {
      c.f32.emplace_back(v.begin(), v.end());
    } else {
      c.f64.push_back(v);
    }
  }
  for (const auto& v : c.f32) c.call.inputs.emplace_back(v);
  for (const auto& v : c.f64) c.call.inputs.emplace_back(v);
}

Case make_example_case(const KernelDef& def, DType dtype, std::size_t size, unsigned seed) {
  KernelExample e = def.example(size, dtype, seed);
  Case c;
  c.values = std::move(e.inputs);
  c.scalars = std::move(e.scalars);
  c.tolerance = e.tolerance;
  if (!e.expected.empty()) c.expected.emplace(e.expected.begin(), e.expected.end());
  bind_call(def, dtype, c);
  return c;
}

Case make_case(const KernelDef& def, DType dtype, std::size_t n, unsigned seed) {
  Case c;
  std::mt19937_64 rng(seed + n * 7919 + std::hash<std::string>{}(def.id));
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  for (std::size_t k = 0; k < def.signature.inputs.size(); ++k) {
    std::vector<double> v(n);
    for (auto& x : v) {
      x = dist(rng);
      if (dtype == DType::f32) x = static_cast<float>(x);
    }
    c.values.push_back(std::move(v));
  }
  for (std::size_t k = 0; k < def.signature.scalars.size(); ++k) {
    double s = 1.5 + static_cast<double>(k);
    c.scalars.push_back(s);
  }
  bind_call(def, dtype, c);
  return c;
}

// Serial long-double evaluation of the built-in kernels: the oracle for the CPU implementation.
std::optional<std::vector<long double>> oracle(const std::string& id, const Case& c) {
  const auto& v = c.values;
  const std::size_t n = v[0].size();
  std::vector<long double> out;
  if (id == "vector.add") {
    for (std::size_t i = 0; i < n; ++i) out.push_back(static_cast<long double>(v[0][i]) + v[1][i]);
  } else if (id == "vector.axpy") {
    for (std::size_t i = 0; i < n; ++i) out.push_back(static_cast<long double>(c.scalars[0]) * v[0][i] + v[1][i]);
  } else if (id == "vector.dot") {
    long double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += static_cast<long double>(v[0][i]) * v[1][i];
    out.push_back(s);
  } else if (id == "reduce.sum") {
    long double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += v[0][i];
    out.push_back(s);
  } else if (id == "vector.normalize") {
    long double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += static_cast<long double>(v[0][i]) * v[0][i];
    const long double norm = std::sqrt(s);
    for (std::size_t i = 0; i < n; ++i) out.push_back(v[0][i] / norm);
  } else {
    return std::nullopt;  // a user kernel: only compared across backends
  }
  return out;
}

// Error allowed against a reference: elementwise kernels a few units in the last place of the
// operand magnitudes; reductions the classic summation bound, eps * log2(n) * sum |terms|.
double tolerance(const KernelDef& def, const Case& c, DType dtype) {
  const double eps = dtype == DType::f32 ? std::numeric_limits<float>::epsilon() : std::numeric_limits<double>::epsilon();
  const std::size_t n = c.values[0].size();
  if (def.signature.output == OutputShape::scalar) {
    double sum_abs = 0;
    for (std::size_t i = 0; i < n; ++i) {
      double term = std::abs(c.values[0][i]);
      if (c.values.size() > 1) term *= std::abs(c.values[1][i]);
      sum_abs += term;
    }
    return 4 * eps * (std::log2(static_cast<double>(n)) + 2) * std::max(sum_abs, 1e-300);
  }
  double scale = 1;
  for (double s : c.scalars) scale += std::abs(s);
  return 8 * eps * scale;
}

}  // namespace

Result<VerifyReport> verify_catalog(Executor& executor, const VerifyOptions& options) {
  const KernelCatalog& catalog = executor.catalog();
  std::vector<std::string> kernels = catalog.ids();
  if (options.kernel) {
    auto def = catalog.lookup(*options.kernel);
    if (!def) return def.error();
    kernels = {*options.kernel};
  }
  std::vector<BackendStatus> backends = executor.backends();
  VerifyReport report;

  for (const auto& id : kernels) {
    const KernelDef& def = **catalog.lookup(id);
    const bool computed = def.signature.output == OutputShape::computed;
    if (computed && (!def.example || def.example_sizes.empty())) {
      for (DType dtype : def.signature.dtypes) {
        for (const auto& st : backends) {
          if (options.backend && st.kind != *options.backend) continue;
          report.rows.push_back({id, dtype, std::string(to_string(st.kind)), {}, 0, VerifyStatus::skipped, 0, 0,
                                 "the kernel has its own shapes and no example generator"});
        }
      }
      continue;
    }
    // Kernels with their own shapes run their own examples at their own sizes.
    const std::vector<std::size_t>& sizes = computed ? def.example_sizes : options.sizes;
    for (DType dtype : def.signature.dtypes) {
      for (std::size_t n : sizes) {
        Case c = computed ? make_example_case(def, dtype, n, options.seed) : make_case(def, dtype, n, options.seed);
        // Reference: the CPU implementation.
        auto cpu = executor.run(c.call, {.backend = BackendChoice::cpu, .device_id = {}, .allow_fallback = false});
        const double tol = computed ? c.tolerance : tolerance(def, c, dtype);
        auto oracle_values = computed ? c.expected : oracle(id, c);

        for (const auto& st : backends) {
          if (options.backend && st.kind != *options.backend) continue;
          VerifyRow base{id, dtype, std::string(to_string(st.kind)), {}, n, VerifyStatus::skipped, 0, tol, {}};
          if (!st.available) {
            if (n == sizes.front()) {  // one row per kernel and dtype, not per size
              base.n = 0;
              base.reason = st.reason;
              report.rows.push_back(base);
            }
            continue;
          }
          for (const auto& dev : st.devices) {
            VerifyRow row = base;
            row.device = dev.id + " (" + dev.name + ")";
            if (dtype == DType::f64 && !dev.caps.fp64) {
              row.reason = "device has no fp64 support";
              report.rows.push_back(row);
              continue;
            }
            if (!cpu) {
              row.status = VerifyStatus::fail;
              row.reason = "CPU reference failed: " + cpu.error().to_string();
              report.rows.push_back(row);
              continue;
            }
            // The CPU row compares the CPU implementation with the oracle; other rows compare
            // with the CPU implementation.
            std::optional<Result<KernelResult>> device_result;
            if (st.kind != BackendKind::cpu) {
              device_result = executor.run(c.call, {.backend = BackendChoice::automatic, .device_id = dev.id,
                                                    .allow_fallback = false});
            }
            const Result<KernelResult>& got = device_result ? *device_result : cpu;
            if (!got) {
              const bool missing = got.error().code() == ErrorCode::failed_precondition;
              row.status = missing ? VerifyStatus::skipped : VerifyStatus::fail;
              row.reason = got.error().to_string();
              report.rows.push_back(row);
              continue;
            }
            if (got->report.device_id != dev.id) {
              row.status = VerifyStatus::fail;
              row.reason = "ran on " + got->report.device_id + " instead of " + dev.id;
              report.rows.push_back(row);
              continue;
            }
            const Tensor& out = got->outputs.at(0);
            const std::size_t expected_count =
                st.kind == BackendKind::cpu && oracle_values ? oracle_values->size() : cpu->outputs.at(0).count();
            if (out.count() != expected_count) {
              row.status = VerifyStatus::fail;
              row.reason = "output has " + std::to_string(out.count()) + " elements, the reference " +
                           std::to_string(expected_count);
              report.rows.push_back(row);
              continue;
            }
            double max_err = 0;
            if (st.kind == BackendKind::cpu && oracle_values) {
              for (std::size_t i = 0; i < out.count(); ++i) {
                max_err = std::max(max_err, static_cast<double>(std::abs(static_cast<long double>(out.at(i)) - (*oracle_values)[i])));
              }
            } else {
              const Tensor& ref = cpu->outputs.at(0);
              for (std::size_t i = 0; i < out.count(); ++i) max_err = std::max(max_err, std::abs(out.at(i) - ref.at(i)));
            }
            row.max_abs_error = max_err;
            const bool ok = std::isfinite(max_err) && max_err <= tol;
            row.status = ok ? VerifyStatus::pass : VerifyStatus::fail;
            if (!ok) row.reason = "max abs error " + std::to_string(max_err) + " exceeds tolerance " + std::to_string(tol);
            report.rows.push_back(row);
          }
        }
      }
    }
  }
  return report;
}

}  // namespace gpubridge::compute
