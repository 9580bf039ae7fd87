#include "gpubridge/compute/kernel_catalog.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

#include "compute/gpu/gpu_recipe.hpp"

namespace gpubridge::compute {

namespace {

// Dotted lower-case nouns: "vector.add", "graph.pagerank".
bool valid_kernel_id(std::string_view id) {
  if (id.empty() || id.front() == '.' || id.back() == '.') return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_';
  });
}

std::string join_ids(const std::map<std::string, KernelDef, std::less<>>& kernels) {
  std::string out;
  for (const auto& [id, def] : kernels) {
    if (!out.empty()) out += ", ";
    out += id;
  }
  return out;
}

}  // namespace

Status KernelCatalog::add(KernelDef def) {
  if (!valid_kernel_id(def.id)) {
    return Error(ErrorCode::invalid_argument,
                 "invalid kernel id '" + def.id + "': use dotted lower-case names such as 'vector.add'");
  }
  if (!def.cpu) return Error(ErrorCode::invalid_argument, "kernel '" + def.id + "' has no CPU implementation");
  if (def.signature.dtypes.empty()) {
    return Error(ErrorCode::invalid_argument, "kernel '" + def.id + "' accepts no element type");
  }
  if (def.signature.inputs.empty()) {
    return Error(ErrorCode::invalid_argument, "kernel '" + def.id + "' has no vector input");
  }
  if (def.signature.inputs.size() > 4) {
    return Error(ErrorCode::invalid_argument, "kernel '" + def.id + "' has more than 4 vector inputs");
  }
  const bool computed = def.signature.output == OutputShape::computed;
  if (computed && !def.signature.shape) {
    return Error(ErrorCode::invalid_argument, "kernel '" + def.id + "' has a computed output but no shape function");
  }
  if (!computed && def.signature.shape) {
    return Error(ErrorCode::invalid_argument,
                 "kernel '" + def.id + "' has a shape function but its output is not OutputShape::computed");
  }
  if (def.gpu != nullptr && (computed ? def.gpu->enqueue_shaped == nullptr : def.gpu->enqueue == nullptr)) {
    return Error(ErrorCode::invalid_argument, "kernel '" + def.id + "' has a GPU recipe without the " +
                                                  (computed ? "shaped" : "element-wise") + " entry it needs");
  }
  if (kernels_.contains(def.id)) {
    return Error(ErrorCode::already_exists, "kernel '" + def.id + "' is already in the catalog");
  }
  std::string id = def.id;
  kernels_.emplace(std::move(id), std::move(def));
  return {};
}

Result<const KernelDef*> KernelCatalog::lookup(std::string_view id) const {
  auto it = kernels_.find(id);
  if (it == kernels_.end()) {
    return Error(ErrorCode::not_found,
                 "unknown kernel id '" + std::string(id) + "'; known kernels: " + join_ids(kernels_));
  }
  return &it->second;
}

std::vector<std::string> KernelCatalog::ids() const {
  std::vector<std::string> out;
  out.reserve(kernels_.size());
  for (const auto& [id, def] : kernels_) out.push_back(id);
  return out;
}

Result<CallShape> KernelCatalog::validate_shape(std::string_view kernel, DType dtype,
                                               std::span<const std::size_t> input_counts,
                                               std::span<const double> scalars) const {
  auto found = lookup(kernel);
  if (!found) return found.error();
  const KernelDef& def = **found;
  const KernelSignature& sig = def.signature;
  const std::string where = "kernel '" + def.id + "'";

  if (std::find(sig.dtypes.begin(), sig.dtypes.end(), dtype) == sig.dtypes.end()) {
    std::string accepted;
    for (DType t : sig.dtypes) accepted += (accepted.empty() ? "" : ", ") + std::string(to_string(t));
    return Error(ErrorCode::invalid_argument,
                 where + " does not accept element type " + std::string(to_string(dtype)) +
                     " (accepts " + accepted + ")");
  }
  if (input_counts.size() != sig.inputs.size()) {
    return Error(ErrorCode::invalid_argument, where + " takes " + std::to_string(sig.inputs.size()) +
                                                  " vector input(s), got " + std::to_string(input_counts.size()));
  }
  if (scalars.size() != sig.scalars.size()) {
    return Error(ErrorCode::invalid_argument, where + " takes " + std::to_string(sig.scalars.size()) +
                                                  " scalar(s), got " + std::to_string(scalars.size()));
  }
  const std::size_t n = input_counts.front();
  for (std::size_t i = 0; i < input_counts.size(); ++i) {
    const std::string name = "input '" + sig.inputs[i] + "'";
    if (input_counts[i] == 0) return Error(ErrorCode::invalid_argument, where + ": " + name + " is empty");
    if (input_counts[i] > kMaxElements) {
      return Error(ErrorCode::out_of_range, where + ": " + name + " has " + std::to_string(input_counts[i]) +
                                                " elements, more than the limit of " +
                                                std::to_string(kMaxElements));
    }
    if (input_counts[i] != n && sig.output != OutputShape::computed) {
      return Error(ErrorCode::invalid_argument, where + ": input lengths differ ('" + sig.inputs[0] + "' has " +
                                                    std::to_string(n) + " elements, " + name + " has " +
                                                    std::to_string(input_counts[i]) + ")");
    }
  }
  if (sig.output != OutputShape::computed) return CallShape{n, output_count(def, n)};

  auto out = sig.shape(input_counts, scalars);
  if (!out) return out.error();
  if (*out == 0) return Error(ErrorCode::invalid_argument, where + ": the output would be empty");
  if (*out > kMaxElements) {
    return Error(ErrorCode::out_of_range, where + ": the output would have " + std::to_string(*out) +
                                              " elements, more than the limit of " + std::to_string(kMaxElements));
  }
  return CallShape{n, *out};
}

Result<CallShape> KernelCatalog::validate(const KernelCall& call) const {
  // Every signature has at most this many inputs: more is an arity error, reported with the count.
  std::array<std::size_t, 8> counts{};
  if (call.inputs.size() > counts.size()) {
    auto found = lookup(call.kernel);
    if (!found) return found.error();
    return Error(ErrorCode::invalid_argument, "kernel '" + (*found)->id + "' takes " +
                                                  std::to_string((*found)->signature.inputs.size()) +
                                                  " vector input(s), got " + std::to_string(call.inputs.size()));
  }
  for (std::size_t i = 0; i < call.inputs.size(); ++i) counts[i] = call.inputs[i].count;
  auto shape = validate_shape(call.kernel, call.dtype, std::span<const std::size_t>(counts.data(), call.inputs.size()),
                              call.scalars);
  if (!shape) return shape.error();
  // The shape is right; now the data itself: each input's element type and address.
  const KernelDef& def = **lookup(call.kernel);
  for (std::size_t i = 0; i < call.inputs.size(); ++i) {
    const TensorView& in = call.inputs[i];
    const std::string where = "kernel '" + def.id + "': input '" + def.signature.inputs[i] + "'";
    if (in.dtype != call.dtype) {
      return Error(ErrorCode::invalid_argument, where + " has element type " + std::string(to_string(in.dtype)) +
                                                    ", the call is " + std::string(to_string(call.dtype)));
    }
    if (in.data == nullptr) return Error(ErrorCode::invalid_argument, where + " has no data");
  }
  return shape;
}

}  // namespace gpubridge::compute
