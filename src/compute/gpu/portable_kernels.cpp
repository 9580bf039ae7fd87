// The one GPU source for the built-in kernels, valid CUDA C++ (NVRTC) and OpenCL C 1.2.
#include <string>

#include "gpu_recipe.hpp"

namespace gpubridge::compute::detail {

namespace {

constexpr std::string_view kSource = R"GBSRC(
#ifdef __OPENCL_VERSION__
#  if GB_FP64
#    pragma OPENCL EXTENSION cl_khr_fp64 : enable
#  endif
#  define GB_KERNEL __kernel
#  define GB_DEVICE
#  define GB_GLOBAL __global
#  define GB_LOCAL __local
#  define GB_LOCAL_PTR __local
#  define GB_SIZE ulong
#  define GB_THREAD_ID ((GB_SIZE)get_global_id(0))
#  define GB_THREAD_COUNT ((GB_SIZE)get_global_size(0))
#  define GB_LOCAL_ID ((unsigned)get_local_id(0))
#  define GB_GROUP_ID ((unsigned)get_group_id(0))
#  define GB_BARRIER() barrier(CLK_LOCAL_MEM_FENCE)
#  define GB_SQRT sqrt
#else
#  define GB_KERNEL extern "C" __global__
#  define GB_DEVICE __device__
#  define GB_GLOBAL
#  define GB_LOCAL __shared__
#  define GB_LOCAL_PTR
#  define GB_SIZE unsigned long long
#  define GB_THREAD_ID ((GB_SIZE)blockIdx.x * blockDim.x + threadIdx.x)
#  define GB_THREAD_COUNT ((GB_SIZE)gridDim.x * blockDim.x)
#  define GB_LOCAL_ID ((unsigned)threadIdx.x)
#  define GB_GROUP_ID ((unsigned)blockIdx.x)
#  define GB_BARRIER() __syncthreads()
#  if GB_FP64
#    define GB_SQRT sqrt
#  else
#    define GB_SQRT sqrtf
#  endif
#endif

/* Tree reduction of one value per work-item; work-item 0 stores the group's sum to *dst. */
GB_DEVICE void gb_group_sum_store(GB_LOCAL_PTR GB_T* s, GB_T v, GB_GLOBAL GB_T* dst) {
  unsigned lid = GB_LOCAL_ID;
  s[lid] = v;
  GB_BARRIER();
  for (unsigned stride = GB_GROUP_SIZE / 2; stride > 0; stride >>= 1) {
    if (lid < stride) s[lid] += s[lid + stride];
    GB_BARRIER();
  }
  if (lid == 0) *dst = s[0];
}

GB_KERNEL void gb_add(GB_GLOBAL const GB_T* a, GB_GLOBAL const GB_T* b, GB_GLOBAL GB_T* out, GB_SIZE n) {
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) out[i] = a[i] + b[i];
}

GB_KERNEL void gb_axpy(GB_T alpha, GB_GLOBAL const GB_T* x, GB_GLOBAL const GB_T* y, GB_GLOBAL GB_T* out,
                       GB_SIZE n) {
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) out[i] = alpha * x[i] + y[i];
}

GB_KERNEL void gb_dot_partial(GB_GLOBAL const GB_T* a, GB_GLOBAL const GB_T* b, GB_GLOBAL GB_T* partials,
                              GB_SIZE n) {
  GB_LOCAL GB_T s[GB_GROUP_SIZE];
  GB_T acc = 0;
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) acc += a[i] * b[i];
  gb_group_sum_store(s, acc, partials + GB_GROUP_ID);
}

GB_KERNEL void gb_sum_partial(GB_GLOBAL const GB_T* x, GB_GLOBAL GB_T* partials, GB_SIZE n) {
  GB_LOCAL GB_T s[GB_GROUP_SIZE];
  GB_T acc = 0;
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) acc += x[i];
  gb_group_sum_store(s, acc, partials + GB_GROUP_ID);
}

GB_KERNEL void gb_sumsq_partial(GB_GLOBAL const GB_T* x, GB_GLOBAL GB_T* partials, GB_SIZE n) {
  GB_LOCAL GB_T s[GB_GROUP_SIZE];
  GB_T acc = 0;
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) acc += x[i] * x[i];
  gb_group_sum_store(s, acc, partials + GB_GROUP_ID);
}

/* Launched with exactly one work-group: sums `count` partials into out[0]. */
GB_KERNEL void gb_sum_partials(GB_GLOBAL const GB_T* partials, GB_GLOBAL GB_T* out, GB_SIZE count) {
  GB_LOCAL GB_T s[GB_GROUP_SIZE];
  GB_T acc = 0;
  for (GB_SIZE i = GB_LOCAL_ID; i < count; i += GB_GROUP_SIZE) acc += partials[i];
  gb_group_sum_store(s, acc, out);
}

/* out[i] = x[i] / sqrt(sumsq[0]) */
GB_KERNEL void gb_div_by_sqrt(GB_GLOBAL const GB_T* x, GB_GLOBAL const GB_T* sumsq, GB_GLOBAL GB_T* out,
                              GB_SIZE n) {
  GB_T norm = GB_SQRT(sumsq[0]);
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) out[i] = x[i] / norm;
}

/* Segmented kernels (the dynamic batcher): segment s covers [offsets[s], offsets[s+1]) of the
   concatenated inputs; offsets[0] = 0, offsets[nseg] = n, every segment non-empty. */

/* The segment holding element i (i < offsets[nseg]), searching from segment `lo`, which must
   satisfy offsets[lo] <= i: grid-stride loops pass the previous answer, as i only grows. */
GB_DEVICE GB_SIZE gb_segment_of(GB_GLOBAL const GB_SIZE* offsets, GB_SIZE lo, GB_SIZE nseg, GB_SIZE i) {
  GB_SIZE hi = nseg; /* offsets[lo] <= i < offsets[hi] */
  while (hi - lo > 1) {
    GB_SIZE mid = lo + (hi - lo) / 2;
    if (offsets[mid] <= i) lo = mid; else hi = mid;
  }
  return lo;
}

/* out[i] = alpha[s] * x[i] + y[i], alpha[s] being segment s's scalar. */
GB_KERNEL void gb_seg_axpy(GB_GLOBAL const GB_SIZE* offsets, GB_SIZE nseg, GB_GLOBAL const GB_T* alpha,
                           GB_GLOBAL const GB_T* x, GB_GLOBAL const GB_T* y, GB_GLOBAL GB_T* out, GB_SIZE n) {
  GB_SIZE seg = 0;
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) {
    seg = gb_segment_of(offsets, seg, nseg, i);
    out[i] = alpha[seg] * x[i] + y[i];
  }
}

/* Segmented reductions: one work-group per segment, launched with exactly nseg groups. */
GB_KERNEL void gb_seg_dot(GB_GLOBAL const GB_SIZE* offsets, GB_GLOBAL const GB_T* a, GB_GLOBAL const GB_T* b,
                          GB_GLOBAL GB_T* out) {
  GB_LOCAL GB_T s[GB_GROUP_SIZE];
  GB_SIZE seg = GB_GROUP_ID;
  GB_SIZE end = offsets[seg + 1];
  GB_T acc = 0;
  for (GB_SIZE i = offsets[seg] + GB_LOCAL_ID; i < end; i += GB_GROUP_SIZE) acc += a[i] * b[i];
  gb_group_sum_store(s, acc, out + seg);
}

GB_KERNEL void gb_seg_sum(GB_GLOBAL const GB_SIZE* offsets, GB_GLOBAL const GB_T* x, GB_GLOBAL GB_T* out) {
  GB_LOCAL GB_T s[GB_GROUP_SIZE];
  GB_SIZE seg = GB_GROUP_ID;
  GB_SIZE end = offsets[seg + 1];
  GB_T acc = 0;
  for (GB_SIZE i = offsets[seg] + GB_LOCAL_ID; i < end; i += GB_GROUP_SIZE) acc += x[i];
  gb_group_sum_store(s, acc, out + seg);
}

GB_KERNEL void gb_seg_sumsq(GB_GLOBAL const GB_SIZE* offsets, GB_GLOBAL const GB_T* x, GB_GLOBAL GB_T* out) {
  GB_LOCAL GB_T s[GB_GROUP_SIZE];
  GB_SIZE seg = GB_GROUP_ID;
  GB_SIZE end = offsets[seg + 1];
  GB_T acc = 0;
  for (GB_SIZE i = offsets[seg] + GB_LOCAL_ID; i < end; i += GB_GROUP_SIZE) acc += x[i] * x[i];
  gb_group_sum_store(s, acc, out + seg);
}

/* out[i] = x[i] / sqrt(sumsq[s]) for element i of segment s. */
GB_KERNEL void gb_seg_div_by_sqrt(GB_GLOBAL const GB_SIZE* offsets, GB_SIZE nseg, GB_GLOBAL const GB_T* x,
                                  GB_GLOBAL const GB_T* sumsq, GB_GLOBAL GB_T* out, GB_SIZE n) {
  GB_SIZE seg = 0;
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) {
    seg = gb_segment_of(offsets, seg, nseg, i);
    out[i] = x[i] / GB_SQRT(sumsq[seg]);
  }
}
)GBSRC";

}  // namespace

std::string_view portable_kernel_source() { return kSource; }

std::string portable_defines(DType dtype, std::string_view prefix) {
  std::string p(prefix);
  const bool f64 = dtype == DType::f64;
  return p + (f64 ? "GB_T=double" : "GB_T=float") + " " + p + (f64 ? "GB_FP64=1" : "GB_FP64=0") + " " + p +
         "GB_GROUP_SIZE=" + std::to_string(kGroupSize);
}

}  // namespace gpubridge::compute::detail
