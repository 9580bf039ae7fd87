#pragma once
// The raw CUDA reference of the compute benchmarks: the CUDA runtime and NVRTC called directly,
// no GpuBridge code on the measured path (GpuBridge's error conversion only formats failures).
// Kernels are compiled with NVRTC and loaded with cudaLibraryLoadData, as the CUDA backend does;
// libcuda is never linked.
//
// RawCuda: one device, one non-blocking stream, two compiled f32 add kernels:
//   reference_add  own source, one element per thread, ceil(n / 256) blocks of 256;
//   portable_add   the catalog's portable source (gb_add) launched with the catalog's grid, to
//                  measure the catalog's kernel without the catalog around it.
// RawCudaBuffers: `slots` independent n-element adds, preallocated: per slot page-locked host
// input [a | b] and output, device input [a | b] and output; optionally a device copy target.
// Every call enqueues on the stream and returns at once, except synchronize(). Built without
// CUDA, create() fails with `unavailable`.
// Not thread-safe; the RawCuda must outlive its buffers.
#include <cstddef>
#include <memory>
#include <string>

#include "gpubridge/core/result.hpp"

namespace gpubridge::bench {

enum class RawCudaKernel { reference_add, portable_add };

class RawCuda {
 public:
  // Device `ordinal` in CUDA runtime numbering; compiles both kernels (not measured).
  static Result<std::unique_ptr<RawCuda>> create(int ordinal);
  ~RawCuda();
  RawCuda(const RawCuda&) = delete;
  RawCuda& operator=(const RawCuda&) = delete;

  const std::string& device_name() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  explicit RawCuda(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class RawCudaBuffers {
 public:
  // with_copy_target: also a device buffer of 6n bytes for device_copy().
  static Result<std::unique_ptr<RawCudaBuffers>> create(RawCuda& cuda, std::size_t n, std::size_t slots,
                                                        bool with_copy_target = false);
  ~RawCudaBuffers();
  RawCudaBuffers(const RawCudaBuffers&) = delete;
  RawCudaBuffers& operator=(const RawCudaBuffers&) = delete;

  // Host memcpy of a and b (n floats each) into the slot's page-locked input. Only call when no
  // upload of this slot is in flight.
  void stage_inputs(std::size_t slot, const float* a, const float* b);
  Status upload(std::size_t slot);                      // H2D of 2n floats (page-locked -> device)
  Status add(std::size_t slot, RawCudaKernel kernel);   // out = a + b on the device
  Status download(std::size_t slot);                    // D2H of n floats (device -> page-locked)
  // Slot 0 transfers straight from / to pageable host memory (the driver stages them): H2D of a
  // and b (n floats each), D2H of n floats into out, then a stream synchronize.
  Status copy_pageable(const float* a, const float* b, float* out);
  // D2D copy of 6n bytes (slot 0's device input -> copy target): reads and writes 12n bytes, the
  // traffic of one n-element add.
  Status device_copy();
  Status synchronize();
  // The slot's page-locked output; valid after download() and synchronize().
  const float* staged_output(std::size_t slot) const;
  // The slot's page-locked input [a | b] (2n floats), for callers that pack it themselves. Only
  // write it when no upload of this slot is in flight.
  float* staged_input(std::size_t slot);

  struct Impl;

 private:
  explicit RawCudaBuffers(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// RawCublasGemm: the reference of a matrix.multiply call on CUDA - row-major f32
// c (m x n) = a (m x k) * b (k x n) with cuBLAS's sgemm called directly (the library loaded as the
// CUDA backend loads it), device buffers preallocated. run() copies a and b from the caller's
// pageable memory, multiplies and copies c back on RawCuda's stream, then synchronizes: what a
// catalog call does for the caller, without the catalog. Built without CUDA (or without
// cuBLAS), create() fails with the reason.
class RawCublasGemm {
 public:
  static Result<std::unique_ptr<RawCublasGemm>> create(RawCuda& cuda, std::size_t m, std::size_t k, std::size_t n);
  ~RawCublasGemm();
  RawCublasGemm(const RawCublasGemm&) = delete;
  RawCublasGemm& operator=(const RawCublasGemm&) = delete;

  Status run(const float* a, const float* b, float* c);

  struct Impl;

 private:
  explicit RawCublasGemm(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gpubridge::bench
