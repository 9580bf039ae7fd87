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

Result<CallShape> KernelCatalog::validate(const KernelCall& call) const {
  auto found = lookup(call.kernel);
  if (!found) return found.error();
  const KernelDef& def = **found;
  const KernelSignature& sig = def.signature;
  const std::string where = "kernel '" + def.id + "'";

  if (std::find(sig.dtypes.begin(), sig.dtypes.end(), call.dtype) == sig.dtypes.end()) {
    std::string accepted;
    for (DType t : sig.dtypes) accepted += (accepted.empty() ? "" : ", ") + std::string(to_string(t));
    return Error(ErrorCode::invalid_argument,
                 where + " does not accept element type " + std::string(to_string(call.dtype)) +
                     " (accepts " + accepted + ")");
  }
  if (call.inputs.size() != sig.inputs.size()) {
    return Error(ErrorCode::invalid_argument, where + " takes " + std::to_string(sig.inputs.size()) +
                                                  " vector input(s), got " + std::to_string(call.inputs.size()));
  }
  if (call.scalars.size() != sig.scalars.size()) {
    return Error(ErrorCode::invalid_argument, where + " takes " + std::to_string(sig.scalars.size()) +
                                                  " scalar(s), got " + std::to_string(call.scalars.size()));
  }
  const std::size_t n = call.inputs.front().count;
  for (std::size_t i = 0; i < call.inputs.size(); ++i) {
    const TensorView& in = call.inputs[i];
    const std::string name = "input '" + sig.inputs[i] + "'";
    if (in.dtype != call.dtype) {
      return Error(ErrorCode::invalid_argument, where + ": " + name + " has element type " +
                                                    std::string(to_string(in.dtype)) + ", the call is " +
                                                    std::string(to_string(call.dtype)));
    }
    if (in.count == 0) return Error(ErrorCode::invalid_argument, where + ": " + name + " is empty");
    if (in.count > kMaxElements) {
      return Error(ErrorCode::out_of_range, where + ": " + name + " has " + std::to_string(in.count) +
                                                " elements, more than the limit of " +
                                                std::to_string(kMaxElements));
    }
    if (in.data == nullptr) return Error(ErrorCode::invalid_argument, where + ": " + name + " has no data");
    if (in.count != n && sig.output != OutputShape::computed) {
      return Error(ErrorCode::invalid_argument, where + ": input lengths differ ('" + sig.inputs[0] + "' has " +
                                                    std::to_string(n) + " elements, " + name + " has " +
                                                    std::to_string(in.count) + ")");
    }
  }
  if (sig.output != OutputShape::computed) return CallShape{n, output_count(def, n)};

  std::array<std::size_t, 4> counts{};
  for (std::size_t i = 0; i < call.inputs.size(); ++i) counts[i] = call.inputs[i].count;
  auto out = sig.shape(std::span<const std::size_t>(counts.data(), call.inputs.size()), call.scalars);
  if (!out) return out.error();
  if (*out == 0) return Error(ErrorCode::invalid_argument, where + ": the output would be empty");
  if (*out > kMaxElements) {
    return Error(ErrorCode::out_of_range, where + ": the output would have " + std::to_string(*out) +
                                              " elements, more than the limit of " + std::to_string(kMaxElements));
  }
  return CallShape{n, *out};
}

}  // namespace gpubridge::compute
