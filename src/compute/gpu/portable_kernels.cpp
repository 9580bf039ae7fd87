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
#  define GB_FABS fabs
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
#    define GB_FABS fabs
#  else
#    define GB_SQRT sqrtf
#    define GB_FABS fabsf
#  endif
#endif

/* Element-wise work over [0, n): one element per work-item when the grid covers n (OpenCL CPU
   compilers such as PoCL then vectorise the work-group; a loop defeats that), else a grid-stride
   loop. `body` uses the index `i`. */
#define GB_ELEMENTWISE(n, body)                                          \
  {                                                                      \
    GB_SIZE i = GB_THREAD_ID;                                            \
    if (GB_THREAD_COUNT >= (n)) {                                        \
      if (i < (n)) { body; }                                             \
    } else {                                                             \
      for (; i < (n); i += GB_THREAD_COUNT) { body; }                    \
    }                                                                    \
  }

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
  GB_ELEMENTWISE(n, out[i] = a[i] + b[i])
}

GB_KERNEL void gb_axpy(GB_T alpha, GB_GLOBAL const GB_T* x, GB_GLOBAL const GB_T* y, GB_GLOBAL GB_T* out,
                       GB_SIZE n) {
  GB_ELEMENTWISE(n, out[i] = alpha * x[i] + y[i])
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
  GB_ELEMENTWISE(n, out[i] = x[i] / norm)
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

/* ---- Matrices (row-major). Tiled kernels: one work-group per GB_TILE x GB_TILE tile of the
   output, work-item l handles tile element (l / GB_TILE, l % GB_TILE); GB_TILE * GB_TILE must
   equal GB_GROUP_SIZE. Groups are numbered row of tiles by row of tiles. ---- */
#define GB_TILE 16

/* c (m x n) = a (m x k) * b (k x n), launched with ceil(m/T) * ceil(n/T) groups. */
GB_KERNEL void gb_matmul_tiled(GB_GLOBAL const GB_T* a, GB_GLOBAL const GB_T* b, GB_GLOBAL GB_T* c, GB_SIZE m,
                               GB_SIZE k, GB_SIZE n) {
  GB_LOCAL GB_T ta[GB_TILE * GB_TILE];
  GB_LOCAL GB_T tb[GB_TILE * GB_TILE];
  unsigned ty = GB_LOCAL_ID / GB_TILE, tx = GB_LOCAL_ID % GB_TILE;
  GB_SIZE tiles_n = (n + GB_TILE - 1) / GB_TILE;
  GB_SIZE row = ((GB_SIZE)GB_GROUP_ID / tiles_n) * GB_TILE + ty;
  GB_SIZE col = ((GB_SIZE)GB_GROUP_ID % tiles_n) * GB_TILE + tx;
  GB_T acc = (GB_T)0;
  for (GB_SIZE t0 = 0; t0 < k; t0 += GB_TILE) {
    ta[ty * GB_TILE + tx] = (row < m && t0 + tx < k) ? a[row * k + t0 + tx] : (GB_T)0;
    tb[ty * GB_TILE + tx] = (t0 + ty < k && col < n) ? b[(t0 + ty) * n + col] : (GB_T)0;
    GB_BARRIER();
    for (unsigned q = 0; q < GB_TILE; ++q) acc += ta[ty * GB_TILE + q] * tb[q * GB_TILE + tx];
    GB_BARRIER();
  }
  if (row < m && col < n) c[row * n + col] = acc;
}

/* out (n x m) = a (m x n)^T through a padded local tile, so that reads and writes both run along
   rows; launched with ceil(m/T) * ceil(n/T) groups. */
GB_KERNEL void gb_transpose_tiled(GB_GLOBAL const GB_T* a, GB_GLOBAL GB_T* out, GB_SIZE m, GB_SIZE n) {
  GB_LOCAL GB_T tile[GB_TILE * (GB_TILE + 1)];
  unsigned ty = GB_LOCAL_ID / GB_TILE, tx = GB_LOCAL_ID % GB_TILE;
  GB_SIZE tiles_n = (n + GB_TILE - 1) / GB_TILE;
  GB_SIZE row0 = ((GB_SIZE)GB_GROUP_ID / tiles_n) * GB_TILE;
  GB_SIZE col0 = ((GB_SIZE)GB_GROUP_ID % tiles_n) * GB_TILE;
  if (row0 + ty < m && col0 + tx < n) tile[ty * (GB_TILE + 1) + tx] = a[(row0 + ty) * n + col0 + tx];
  GB_BARRIER();
  /* out row col0 + ty, column row0 + tx holds a[row0 + tx][col0 + ty]. */
  if (col0 + ty < n && row0 + tx < m) out[(col0 + ty) * m + row0 + tx] = tile[tx * (GB_TILE + 1) + ty];
}

/* Max |x[i]| per group into partials[group]; a NaN anywhere makes the result NaN. */
GB_DEVICE GB_T gb_max_abs_combine(GB_T acc, GB_T v) { return (v > acc || v != v) ? v : acc; }

GB_DEVICE void gb_group_max_store(GB_LOCAL_PTR GB_T* s, GB_T v, GB_GLOBAL GB_T* dst) {
  unsigned lid = GB_LOCAL_ID;
  s[lid] = v;
  GB_BARRIER();
  for (unsigned stride = GB_GROUP_SIZE / 2; stride > 0; stride >>= 1) {
    if (lid < stride) s[lid] = gb_max_abs_combine(s[lid], s[lid + stride]);
    GB_BARRIER();
  }
  if (lid == 0) *dst = s[0];
}

GB_KERNEL void gb_max_abs_partial(GB_GLOBAL const GB_T* x, GB_GLOBAL GB_T* partials, GB_SIZE n) {
  GB_LOCAL GB_T s[GB_GROUP_SIZE];
  GB_T acc = (GB_T)0;
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) acc = gb_max_abs_combine(acc, GB_FABS(x[i]));
  gb_group_max_store(s, acc, partials + GB_GROUP_ID);
}

/* Launched with exactly one work-group: the max of `count` partials into out[0]. */
GB_KERNEL void gb_max_partials(GB_GLOBAL const GB_T* partials, GB_GLOBAL GB_T* out, GB_SIZE count) {
  GB_LOCAL GB_T s[GB_GROUP_SIZE];
  GB_T acc = (GB_T)0;
  for (GB_SIZE i = GB_LOCAL_ID; i < count; i += GB_GROUP_SIZE) acc = gb_max_abs_combine(acc, partials[i]);
  gb_group_max_store(s, acc, out);
}

GB_KERNEL void gb_copy(GB_GLOBAL const GB_T* src, GB_GLOBAL GB_T* dst, GB_SIZE n) {
  for (GB_SIZE i = GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) dst[i] = src[i];
}

/* out (n x n) = I */
GB_KERNEL void gb_identity(GB_GLOBAL GB_T* out, GB_SIZE n) {
  GB_SIZE total = n * n;
  for (GB_SIZE i = GB_THREAD_ID; i < total; i += GB_THREAD_COUNT) out[i] = (i / n == i % n) ? (GB_T)1 : (GB_T)0;
}

/* Launched with exactly one work-group: the row p >= j of the largest |lu[p][j]| (the first such
   row on ties) into result[0] = |lu[p][j]|, result[1] = p. result[0] < 0 when no entry compares
   (all NaN). */
GB_KERNEL void gb_lu_pivot(GB_GLOBAL const GB_T* lu, GB_GLOBAL GB_T* result, GB_SIZE n, GB_SIZE j) {
  GB_LOCAL GB_T sv[GB_GROUP_SIZE];
  GB_LOCAL GB_SIZE si[GB_GROUP_SIZE];
  unsigned lid = GB_LOCAL_ID;
  GB_T best = (GB_T)-1;
  GB_SIZE best_row = j;
  for (GB_SIZE i = j + lid; i < n; i += GB_GROUP_SIZE) {
    GB_T v = GB_FABS(lu[i * n + j]);
    if (v > best) { best = v; best_row = i; } /* rows ascend per work-item: ties keep the first */
  }
  sv[lid] = best;
  si[lid] = best_row;
  GB_BARRIER();
  for (unsigned stride = GB_GROUP_SIZE / 2; stride > 0; stride >>= 1) {
    if (lid < stride) {
      GB_T v = sv[lid + stride];
      GB_SIZE r = si[lid + stride];
      if (v > sv[lid] || (v == sv[lid] && r < si[lid])) { sv[lid] = v; si[lid] = r; }
    }
    GB_BARRIER();
  }
  if (lid == 0) { result[0] = sv[0]; result[1] = (GB_T)si[0]; }
}

/* Swaps rows r1 and r2 of both n x n matrices. */
GB_KERNEL void gb_swap_rows(GB_GLOBAL GB_T* lu, GB_GLOBAL GB_T* x, GB_SIZE n, GB_SIZE r1, GB_SIZE r2) {
  for (GB_SIZE c = GB_THREAD_ID; c < n; c += GB_THREAD_COUNT) {
    GB_T t = lu[r1 * n + c]; lu[r1 * n + c] = lu[r2 * n + c]; lu[r2 * n + c] = t;
    t = x[r1 * n + c]; x[r1 * n + c] = x[r2 * n + c]; x[r2 * n + c] = t;
  }
}

/* The multipliers of column j: lu[i][j] /= lu[j][j] for i > j. */
GB_KERNEL void gb_lu_scale_column(GB_GLOBAL GB_T* lu, GB_SIZE n, GB_SIZE j) {
  GB_T pivot = lu[j * n + j];
  for (GB_SIZE i = j + 1 + GB_THREAD_ID; i < n; i += GB_THREAD_COUNT) lu[i * n + j] = lu[i * n + j] / pivot;
}

/* Rank-1 update of the trailing block: lu[i][c] -= lu[i][j] * lu[j][c] for i, c > j. */
GB_KERNEL void gb_lu_update(GB_GLOBAL GB_T* lu, GB_SIZE n, GB_SIZE j) {
  GB_SIZE w = n - j - 1;
  GB_SIZE total = w * w;
  for (GB_SIZE t = GB_THREAD_ID; t < total; t += GB_THREAD_COUNT) {
    GB_SIZE i = j + 1 + t / w, c = j + 1 + t % w;
    lu[i * n + c] -= lu[i * n + j] * lu[j * n + c];
  }
}

/* Solves L Y = X in place (L unit lower triangular from lu), one work-item per column of X. */
GB_KERNEL void gb_lu_forward(GB_GLOBAL const GB_T* lu, GB_GLOBAL GB_T* x, GB_SIZE n) {
  for (GB_SIZE c = GB_THREAD_ID; c < n; c += GB_THREAD_COUNT) {
    for (GB_SIZE i = 1; i < n; ++i) {
      GB_T acc = x[i * n + c];
      for (GB_SIZE k = 0; k < i; ++k) acc -= lu[i * n + k] * x[k * n + c];
      x[i * n + c] = acc;
    }
  }
}

/* Solves U Z = Y in place (U upper triangular from lu), one work-item per column. */
GB_KERNEL void gb_lu_backward(GB_GLOBAL const GB_T* lu, GB_GLOBAL GB_T* x, GB_SIZE n) {
  for (GB_SIZE c = GB_THREAD_ID; c < n; c += GB_THREAD_COUNT) {
    for (GB_SIZE i = n; i-- > 0;) {
      GB_T acc = x[i * n + c];
      for (GB_SIZE k = i + 1; k < n; ++k) acc -= lu[i * n + k] * x[k * n + c];
      x[i * n + c] = acc / lu[i * n + i];
    }
  }
}
)GBSRC";

}  // namespace

// The core source, then each kernel family's own part (image_source.cpp, graph_source.cpp), so that
// families are written in their own files; one program holds them all.
std::string_view portable_kernel_source() {
  static const std::string source = std::string(kSource) + std::string(image_kernel_source()) +
                                    std::string(graph_kernel_source());
  return source;
}

std::string portable_defines(DType dtype, std::string_view prefix) {
  std::string p(prefix);
  const bool f64 = dtype == DType::f64;
  return p + (f64 ? "GB_T=double" : "GB_T=float") + " " + p + (f64 ? "GB_FP64=1" : "GB_FP64=0") + " " + p +
         "GB_GROUP_SIZE=" + std::to_string(kGroupSize);
}

}  // namespace gpubridge::compute::detail
