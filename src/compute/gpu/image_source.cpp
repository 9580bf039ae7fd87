// The image kernels' part of the portable GPU source (appended to portable_kernels.cpp's).
//
// Images are H x W x C row-major. Every kernel reproduces the CPU implementation's arithmetic
// (src/samples/cpu/image_ops.cpp) operation for operation: products and sums in the element type,
// accumulated from zero in the same tap order, never contracted into fused multiply-adds (the
// CPU build has none), so that CPU and GPU agree to the last bit wherever the device rounds
// like IEEE (division and sqrt aside). Borders are OpenCV's BORDER_REFLECT_101; a dimension of
// length 1 reflects onto its only pixel, as on the CPU.
#include "gpu_recipe.hpp"

namespace gpubridge::compute::detail {

namespace {

constexpr std::string_view kImageSource = R"GBSRC(
/* ---- Images (image.*) ---- */
#ifdef __OPENCL_VERSION__
#  pragma OPENCL FP_CONTRACT OFF
#  define GB_IMG_MUL(a, b) ((a) * (b))
#  define GB_IMG_ADD(a, b) ((a) + (b))
#  define GB_IMG_LONG long
#  define GB_IMG_FLOORF floor
#else
#  if GB_FP64
#    define GB_IMG_MUL(a, b) __dmul_rn((a), (b))
#    define GB_IMG_ADD(a, b) __dadd_rn((a), (b))
#  else
#    define GB_IMG_MUL(a, b) __fmul_rn((a), (b))
#    define GB_IMG_ADD(a, b) __fadd_rn((a), (b))
#  endif
#  define GB_IMG_LONG long long
#  define GB_IMG_FLOORF floorf
#endif

/* BORDER_REFLECT_101 index of p for a dimension of `length` (repeated reflection; length 1 -> 0). */
GB_DEVICE GB_SIZE gb_img_reflect101(GB_IMG_LONG p, GB_SIZE length) {
  if (length == 1) return 0;
  GB_IMG_LONG period = 2 * ((GB_IMG_LONG)length - 1);
  p %= period;
  if (p < 0) p += period;
  if (p >= (GB_IMG_LONG)length) p = period - p;
  return (GB_SIZE)p;
}

/* dst[offset + i] = v_i, i < 6: small host-computed tables (filter taps) travel as scalars. */
GB_KERNEL void gb_img_store6(GB_GLOBAL GB_T* dst, GB_SIZE offset, GB_T v0, GB_T v1, GB_T v2, GB_T v3, GB_T v4,
                             GB_T v5) {
  if (GB_THREAD_ID == 0) {
    dst[offset] = v0; dst[offset + 1] = v1; dst[offset + 2] = v2;
    dst[offset + 3] = v3; dst[offset + 4] = v4; dst[offset + 5] = v5;
  }
}

/* Horizontal pass of a separable filter: dst[y][x][c] = sum over t of
   taps[t] * src[y][reflect101(x + t - ntaps/2)][c], taps at coefs[coef_offset...]. */
GB_KERNEL void gb_img_filter_rows(GB_GLOBAL const GB_T* src, GB_GLOBAL GB_T* dst, GB_GLOBAL const GB_T* coefs,
                                  GB_SIZE coef_offset, GB_SIZE count, GB_SIZE width, GB_SIZE channels,
                                  GB_SIZE ntaps) {
  GB_IMG_LONG anchor = (GB_IMG_LONG)(ntaps / 2);
  for (GB_SIZE i = GB_THREAD_ID; i < count; i += GB_THREAD_COUNT) {
    GB_SIZE c = i % channels;
    GB_SIZE x = (i / channels) % width;
    GB_SIZE row = i - x * channels - c;
    GB_T acc = (GB_T)0;
    for (GB_SIZE t = 0; t < ntaps; ++t) {
      GB_SIZE sx = gb_img_reflect101((GB_IMG_LONG)(x + t) - anchor, width);
      acc = GB_IMG_ADD(acc, GB_IMG_MUL(coefs[coef_offset + t], src[row + sx * channels + c]));
    }
    dst[i] = acc;
  }
}

/* Vertical pass: dst[y][r] = sum over t of taps[t] * src[reflect101(y + t - ntaps/2)][r], r < row_values. */
GB_KERNEL void gb_img_filter_cols(GB_GLOBAL const GB_T* src, GB_GLOBAL GB_T* dst, GB_GLOBAL const GB_T* coefs,
                                  GB_SIZE coef_offset, GB_SIZE count, GB_SIZE height, GB_SIZE row_values,
                                  GB_SIZE ntaps) {
  GB_IMG_LONG anchor = (GB_IMG_LONG)(ntaps / 2);
  for (GB_SIZE i = GB_THREAD_ID; i < count; i += GB_THREAD_COUNT) {
    GB_SIZE y = i / row_values;
    GB_SIZE r = i - y * row_values;
    GB_T acc = (GB_T)0;
    for (GB_SIZE t = 0; t < ntaps; ++t) {
      GB_SIZE sy = gb_img_reflect101((GB_IMG_LONG)(y + t) - anchor, height);
      acc = GB_IMG_ADD(acc, GB_IMG_MUL(coefs[coef_offset + t], src[sy * row_values + r]));
    }
    dst[i] = acc;
  }
}

/* The CPU's 3 x 3 separable filter at one value: rows with (h0, h1, h2), then columns with (v0, v1, v2). */
GB_DEVICE GB_T gb_img_separable3(GB_GLOBAL const GB_T* src, GB_SIZE height, GB_SIZE width, GB_SIZE channels,
                                 GB_SIZE y, GB_SIZE x, GB_SIZE c, GB_T h0, GB_T h1, GB_T h2, GB_T v0, GB_T v1,
                                 GB_T v2) {
  GB_SIZE x0 = gb_img_reflect101((GB_IMG_LONG)x - 1, width) * channels + c;
  GB_SIZE x1 = x * channels + c;
  GB_SIZE x2 = gb_img_reflect101((GB_IMG_LONG)x + 1, width) * channels + c;
  GB_T acc = (GB_T)0;
  for (int t = 0; t < 3; ++t) {
    GB_SIZE sy = gb_img_reflect101((GB_IMG_LONG)y + t - 1, height);
    GB_GLOBAL const GB_T* row = src + sy * width * channels;
    GB_T r = (GB_T)0;
    r = GB_IMG_ADD(r, GB_IMG_MUL(h0, row[x0]));
    r = GB_IMG_ADD(r, GB_IMG_MUL(h1, row[x1]));
    r = GB_IMG_ADD(r, GB_IMG_MUL(h2, row[x2]));
    GB_T v = t == 0 ? v0 : (t == 1 ? v1 : v2);
    acc = GB_IMG_ADD(acc, GB_IMG_MUL(v, r));
  }
  return acc;
}

/* 3 x 3 Sobel: component 0 dx, 1 dy, anything else the magnitude sqrt(dx^2 + dy^2). */
GB_KERNEL void gb_img_sobel(GB_GLOBAL const GB_T* src, GB_GLOBAL GB_T* dst, GB_SIZE height, GB_SIZE width,
                            GB_SIZE channels, GB_SIZE component) {
  GB_SIZE count = height * width * channels;
  for (GB_SIZE i = GB_THREAD_ID; i < count; i += GB_THREAD_COUNT) {
    GB_SIZE c = i % channels;
    GB_SIZE x = (i / channels) % width;
    GB_SIZE y = i / (width * channels);
    GB_T gx = (GB_T)0, gy = (GB_T)0;
    if (component != 1) gx = gb_img_separable3(src, height, width, channels, y, x, c, -1, 0, 1, 1, 2, 1);
    if (component != 0) gy = gb_img_separable3(src, height, width, channels, y, x, c, 1, 2, 1, -1, 0, 1);
    dst[i] = component == 0 ? gx : (component == 1 ? gy : GB_SQRT(GB_IMG_ADD(GB_IMG_MUL(gx, gx), GB_IMG_MUL(gy, gy))));
  }
}

/* As cv2.filter2D: dst[y][x][c] = sum over (ky, kx), row by row, of
   weights[ky][kx] * src[reflect101(y + ky - krows/2)][reflect101(x + kx - kcols/2)][c]. */
GB_KERNEL void gb_img_correlate(GB_GLOBAL const GB_T* src, GB_GLOBAL const GB_T* weights, GB_GLOBAL GB_T* dst,
                                GB_SIZE height, GB_SIZE width, GB_SIZE channels, GB_SIZE krows, GB_SIZE kcols) {
  GB_SIZE row_values = width * channels;
  GB_SIZE count = height * row_values;
  GB_IMG_LONG anchor_y = (GB_IMG_LONG)(krows / 2), anchor_x = (GB_IMG_LONG)(kcols / 2);
  for (GB_SIZE i = GB_THREAD_ID; i < count; i += GB_THREAD_COUNT) {
    GB_SIZE c = i % channels;
    GB_SIZE x = (i / channels) % width;
    GB_SIZE y = i / row_values;
    GB_T acc = (GB_T)0;
    for (GB_SIZE ky = 0; ky < krows; ++ky) {
      GB_SIZE base = gb_img_reflect101((GB_IMG_LONG)(y + ky) - anchor_y, height) * row_values + c;
      for (GB_SIZE kx = 0; kx < kcols; ++kx) {
        GB_SIZE sx = gb_img_reflect101((GB_IMG_LONG)(x + kx) - anchor_x, width);
        acc = GB_IMG_ADD(acc, GB_IMG_MUL(weights[ky * kcols + kx], src[base + sx * channels]));
      }
    }
    dst[i] = acc;
  }
}

/* INTER_LINEAR tap of destination index d along one axis: out[0] = first source index, out[1]
   = the second one's weight f (the first's is 1 - f). The source coordinate
   (d + 0.5) * src / dst - 0.5 = p / q is rounded once, to nearest float (ties to even), from its
   exact value, in integers: the CPU rounds the same value, computed in double, to float. */
GB_DEVICE void gb_img_linear_tap(GB_SIZE d, GB_SIZE src_size, GB_SIZE dst_size, GB_GLOBAL GB_T* out) {
  GB_IMG_LONG p = (GB_IMG_LONG)((2 * d + 1) * src_size) - (GB_IMG_LONG)dst_size;
  GB_SIZE q = 2 * dst_size;
  GB_SIZE last = src_size - 1;
  GB_SIZE s = 0;
  float f = 0.0f;
  if (p > 0) {
    GB_SIZE up = (GB_SIZE)p;
    unsigned k = 0;
    while ((up << k) < (q << 23)) ++k; /* p/q * 2^k in [2^23, 2^24): p/q < 2^17, q <= 2^17 */
    GB_SIZE scaled = up << k;
    GB_SIZE m = scaled / q;
    GB_SIZE rem = scaled - m * q;
    if (2 * rem > q || (2 * rem == q && (m & 1) != 0)) ++m;
    float unit = 1.0f;
    for (unsigned j = 0; j < k; ++j) unit *= 0.5f;
    float v = (float)m * unit; /* exact: m <= 2^24, scaled by a power of two */
    float whole = GB_IMG_FLOORF(v);
    s = (GB_SIZE)whole;
    f = v - whole;
  }
  if (s >= last) {
    s = last;
    f = 0.0f;
  }
  out[0] = (GB_T)s;
  out[1] = (GB_T)f;
}

/* Taps of both axes: x axis at taps[0 .. 2 dst_w), y axis at taps[2 dst_w .. 2 (dst_w + dst_h)). */
GB_KERNEL void gb_img_resize_taps(GB_GLOBAL GB_T* taps, GB_SIZE src_h, GB_SIZE src_w, GB_SIZE dst_h,
                                  GB_SIZE dst_w) {
  for (GB_SIZE i = GB_THREAD_ID; i < dst_w + dst_h; i += GB_THREAD_COUNT) {
    if (i < dst_w) {
      gb_img_linear_tap(i, src_w, dst_w, taps + 2 * i);
    } else {
      gb_img_linear_tap(i - dst_w, src_h, dst_h, taps + 2 * i);
    }
  }
}

/* Bilinear resize, one work-item per output value: the two source rows blended along x, then
   the two blends along y, as the CPU does. */
GB_KERNEL void gb_img_resize(GB_GLOBAL const GB_T* src, GB_GLOBAL const GB_T* taps, GB_GLOBAL GB_T* dst,
                             GB_SIZE src_h, GB_SIZE src_w, GB_SIZE channels, GB_SIZE dst_h, GB_SIZE dst_w) {
  GB_SIZE count = dst_h * dst_w * channels;
  GB_SIZE src_row = src_w * channels;
  for (GB_SIZE i = GB_THREAD_ID; i < count; i += GB_THREAD_COUNT) {
    GB_SIZE c = i % channels;
    GB_SIZE x = (i / channels) % dst_w;
    GB_SIZE y = i / (dst_w * channels);
    GB_SIZE sx0 = (GB_SIZE)taps[2 * x];
    GB_SIZE sx1 = sx0 + 1 < src_w ? sx0 + 1 : src_w - 1;
    GB_T fx = taps[2 * x + 1];
    GB_SIZE sy0 = (GB_SIZE)taps[2 * (dst_w + y)];
    GB_SIZE sy1 = sy0 + 1 < src_h ? sy0 + 1 : src_h - 1;
    GB_T fy = taps[2 * (dst_w + y) + 1];
    GB_T wx0 = (GB_T)1 - fx, wy0 = (GB_T)1 - fy;
    GB_GLOBAL const GB_T* r0 = src + sy0 * src_row + c;
    GB_GLOBAL const GB_T* r1 = src + sy1 * src_row + c;
    GB_T upper = GB_IMG_ADD(GB_IMG_MUL(r0[sx0 * channels], wx0), GB_IMG_MUL(r0[sx1 * channels], fx));
    GB_T lower = GB_IMG_ADD(GB_IMG_MUL(r1[sx0 * channels], wx0), GB_IMG_MUL(r1[sx1 * channels], fx));
    dst[i] = GB_IMG_ADD(GB_IMG_MUL(wy0, upper), GB_IMG_MUL(fy, lower));
  }
}

#ifdef __OPENCL_VERSION__
#  pragma OPENCL FP_CONTRACT ON
#endif
)GBSRC";

}  // namespace

std::string_view image_kernel_source() { return kImageSource; }

}  // namespace gpubridge::compute::detail
