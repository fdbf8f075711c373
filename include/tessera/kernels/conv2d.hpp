// Fast 2D convolution in float (NCHW, OIHW weight, zero padding, dilation 1) as im2col + our GEMM, forward and
// backward; the dispatch:: overloads at the bottom pick it for float and the reference loops for double.
// Legend: B images, C input channels, H x W input, O output channels, kh x kw kernel, Ho x Wo output (Conv2dSizes);
// K = C kh kw (one weight row), P = Ho Wo (output pixels of one image).
// Layout: inp (B, C, H, W); weight (O, C, kh, kw), read as the matrix (O, K); bias (O); out (B, O, Ho, Wo), each
// image an (O, P) matrix. col, one image's im2col matrix, is (K, P):
//   col[(c kh + ky) kw + kx, y Wo + x] = inp[b, c, y sh - ph + ky, x sw - pw + kx], 0 outside the image.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <memory>

#include "tessera/core/threads.hpp"
#include "tessera/kernels/conv2d_sizes.hpp"
#include "tessera/kernels/gemm/gemm.hpp"
#include "tessera/kernels/reference/conv2d.hpp"
#include "tessera/kernels/simd.hpp"

namespace tessera::kernels {

// Images per slice of conv2d_backward's weight gradient: each slice sums its images' products into a partial
// (O, K) of its own, and the partials are added in slice order, so dweight depends on B alone, not on the threads.
inline constexpr int kConv2dSliceImages = 8;

// Below this many floating-point operations a convolution runs on the calling thread.
inline constexpr double kConv2dParallelMinFlops = 1 << 20;

namespace conv2d_detail {

// The output positions t in [lo, hi) whose input position t stride - pad + k lies inside [0, in), clipped to
// [0, out). Outside the range the input is padding.
struct Inside {
  int lo, hi;
};

inline Inside inside(int k, int stride, int pad, int in, int out) {
  const int first = pad - k;          // t stride >= first
  const int last = in - 1 + pad - k;  // t stride <= last
  const int lo = std::min(out, first <= 0 ? 0 : (first + stride - 1) / stride);
  const int hi = std::min(out, last < 0 ? 0 : last / stride + 1);
  return {lo, std::max(lo, hi)};
}

// d[t] = x[t stride] for t < n; Stride > 0 fixes the stride at compile time (so the loop vectorises).
template <int Stride>
inline void gather(float* d, const float* x, int n, int stride) {
  const int step = Stride > 0 ? Stride : stride;
  for (int t = 0; t < n; ++t) d[t] = x[t * step];
}

// y[t stride] += g[t] for t < n; Stride > 0 fixes the stride at compile time.
template <int Stride>
inline void scatter_add(float* y, const float* g, int n, int stride) {
  const int step = Stride > 0 ? Stride : stride;
  for (int t = 0; t < n; ++t) y[t * step] += g[t];
}

// One row (c, ky, kx) of the im2col matrix: where it starts in col, and the output rows and columns whose input pixel
// lies inside the image.
struct Im2colRow {
  int c, ky, kx;
  int64_t offset;  // ((c kh + ky) kw + kx) P
  Inside rows, cols;
  // Index in the image (C, H, W) of the input pixel of output pixel (y, cols.lo), y in [rows.lo, rows.hi).
  int64_t first_input(int y, const Conv2dSizes& s) const {
    return (int64_t{c} * s.H + y * s.stride_h - s.pad_h + ky) * s.W + cols.lo * s.stride_w - s.pad_w + kx;
  }
};

// Calls visit(row) for each row of the im2col matrix in order; im2col and col2im_add walk it the same way.
template <class Visit>
inline void for_each_im2col_row(const Conv2dSizes& s, const Visit& visit) {
  const int Ho = s.Ho(), Wo = s.Wo();
  const int64_t P = int64_t{Ho} * Wo;
  for (int c = 0; c < s.C; ++c)
    for (int ky = 0; ky < s.kh; ++ky) {
      const Inside rows = inside(ky, s.stride_h, s.pad_h, s.H, Ho);
      for (int kx = 0; kx < s.kw; ++kx) {
        const Inside cols = inside(kx, s.stride_w, s.pad_w, s.W, Wo);
        visit(Im2colRow{c, ky, kx, ((int64_t{c} * s.kh + ky) * s.kw + kx) * P, rows, cols});
      }
    }
}

// col (K, P) = the im2col matrix of one image x (C, H, W).
inline void im2col(float* col, const float* x, const Conv2dSizes& s) {
  const int Wo = s.Wo();
  const int64_t P = s.out_pixels();
  for_each_im2col_row(s, [&](const Im2colRow& r) {
    const Inside cols = r.cols;
    float* dst = col + r.offset;
    std::fill(dst, dst + int64_t{r.rows.lo} * Wo, 0.0f);
    for (int y = r.rows.lo; y < r.rows.hi; ++y) {
      float* d = dst + int64_t{y} * Wo;
      std::fill(d, d + cols.lo, 0.0f);
      const float* first = x + r.first_input(y, s);
      if (s.stride_w == 1)
        std::memcpy(d + cols.lo, first, sizeof(float) * size_t(cols.hi - cols.lo));
      else if (s.stride_w == 2)
        gather<2>(d + cols.lo, first, cols.hi - cols.lo, 2);
      else
        gather<0>(d + cols.lo, first, cols.hi - cols.lo, s.stride_w);
      std::fill(d + cols.hi, d + Wo, 0.0f);
    }
    std::fill(dst + int64_t{r.rows.hi} * Wo, dst + P, 0.0f);
  });
}

// dx (C, H, W) += the im2col matrix dcol (K, P) scattered back onto the pixels it was gathered from (col2im),
// row by row of dcol: each pixel receives its terms in a fixed order.
inline void col2im_add(float* dx, const float* dcol, const Conv2dSizes& s) {
  const int Wo = s.Wo();
  for_each_im2col_row(s, [&](const Im2colRow& r) {
    const Inside cols = r.cols;
    for (int y = r.rows.lo; y < r.rows.hi; ++y) {
      const float* g = dcol + r.offset + int64_t{y} * Wo;
      float* first = dx + r.first_input(y, s);
      if (s.stride_w == 1)
        scatter_add<1>(first, g + cols.lo, cols.hi - cols.lo, 1);
      else if (s.stride_w == 2)
        scatter_add<2>(first, g + cols.lo, cols.hi - cols.lo, 2);
      else
        scatter_add<0>(first, g + cols.lo, cols.hi - cols.lo, s.stride_w);
    }
  });
}

// Runs task(u, buffer) for u in [0, count). With enough units for every thread to take two, the units are shared
// out over a team and each thread passes its own buffer of `buffer_floats`; otherwise they run in order on this
// thread with one buffer, and the GEMMs inside them use the threads. A unit gives the same bits either way (the
// GEMM's result does not depend on its thread count).
template <class Task>
inline void for_each_unit(int count, int64_t buffer_floats, double flops, const Task& task) {
  const int threads = tessera::in_parallel_region() || flops < kConv2dParallelMinFlops ? 1 : tessera::num_threads();
  if (threads > 1 && count >= 2 * threads) {
    std::unique_ptr<float[]> buffers(new float[size_t(threads * buffer_floats)]);
#pragma omp parallel num_threads(threads)
    {
      float* mine = buffers.get() + tessera::thread_index() * buffer_floats;
#pragma omp for schedule(dynamic)
      for (int u = 0; u < count; ++u) task(u, mine);
    }
  } else {
    std::unique_ptr<float[]> buffer(new float[size_t(buffer_floats)]);
    for (int u = 0; u < count; ++u) task(u, buffer.get());
  }
}

}  // namespace conv2d_detail

// out[b] (O, P) = weight (O, K) · col_b (K, P) + bias, col_b the im2col matrix of image b (the image itself for a
// pointwise kernel). Images are shared out over the threads, each thread building its col in its own buffer.
// inp is (B, C, H, W), weight (O, C, kh, kw), bias (O) or null, out (B, O, Ho, Wo).
inline void conv2d_forward(float* out, const float* inp, const float* weight, const float* bias, const Conv2dSizes& s) {
  assert(s.B >= 0 && s.C >= 1 && s.O >= 1 && s.kh >= 1 && s.kw >= 1 && s.stride_h >= 1 && s.stride_w >= 1);
  assert(s.pad_h >= 0 && s.pad_w >= 0 && s.Ho() >= 1 && s.Wo() >= 1);
  const int64_t K = s.patch_size(), P = s.out_pixels();
  const int64_t image_in = int64_t{s.C} * s.H * s.W, image_out = s.O * P;
  const bool pointwise = s.is_pointwise();
  const double flops = 2.0 * s.B * s.O * K * P;
  conv2d_detail::for_each_unit(s.B, pointwise ? 0 : K * P, flops, [&](int b, float* col) {
    const float* x = inp + b * image_in;
    if (!pointwise) {
      conv2d_detail::im2col(col, x, s);
      x = col;
    }
    float* y = out + b * image_out;
    if (bias)
      for (int o = 0; o < s.O; ++o) std::fill(y + o * P, y + (o + 1) * P, bias[o]);
    gemm(false, false, s.O, int(P), int(K), 1.0f, weight, int(K), x, int(P), bias ? 1.0f : 0.0f, y, int(P));
  });
}

// With g_b = dout[b] as an (O, P) matrix and col_b the im2col matrix of image b:
//   dweight (O, K) += sum over b of g_b · col_bᵀ   (per slice of kConv2dSliceImages images into a partial, the
//                                                   partials then added in slice order)
//   dinp[b]        += col2im(weightᵀ · g_b)        (weightᵀ · g_b is (K, P); pointwise: added straight into dinp)
//   dbias[o]       += sum over b and pixels of dout[b, o]
// dinp is (B, C, H, W), dweight (O, C, kh, kw), dbias (O), each null when not wanted; dout is (B, O, Ho, Wo);
// inp and weight as in the forward (inp is read only for dweight). Slices are shared out over the threads.
inline void conv2d_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                            const float* weight, const Conv2dSizes& s) {
  assert(s.B >= 0 && s.C >= 1 && s.O >= 1 && s.kh >= 1 && s.kw >= 1 && s.stride_h >= 1 && s.stride_w >= 1);
  assert(s.pad_h >= 0 && s.pad_w >= 0 && s.Ho() >= 1 && s.Wo() >= 1);
  const int64_t K = s.patch_size(), P = s.out_pixels();
  const int64_t image_in = int64_t{s.C} * s.H * s.W, image_out = s.O * P;
  if (dbias) {
#pragma omp parallel for schedule(static) if (s.B * image_out >= simd::kParallelMinElements && \
                                              !tessera::in_parallel_region())
    for (int o = 0; o < s.O; ++o) {
      double sum = 0.0;
      for (int b = 0; b < s.B; ++b) sum += simd::row_sum<simd::VecNative>(dout + b * image_out + o * P, P);
      dbias[o] += static_cast<float>(sum);
    }
  }
  if (!dweight && !dinp) return;
  const bool pointwise = s.is_pointwise();
  const int64_t col_floats = dweight && !pointwise ? K * P : 0;
  const int64_t dcol_floats = dinp && !pointwise ? K * P : 0;
  const int slices = (s.B + kConv2dSliceImages - 1) / kConv2dSliceImages;
  const int64_t weight_size = s.O * K;
  std::unique_ptr<float[]> partials(dweight ? new float[size_t(slices * weight_size)] : nullptr);
  const double flops = 2.0 * s.B * s.O * K * P * ((dweight ? 1 : 0) + (dinp ? 1 : 0));
  conv2d_detail::for_each_unit(slices, col_floats + dcol_floats, flops, [&](int slice, float* buffer) {
    float* col = buffer;
    float* dcol = buffer + col_floats;
    const int b0 = slice * kConv2dSliceImages, b1 = std::min(s.B, b0 + kConv2dSliceImages);
    for (int b = b0; b < b1; ++b) {
      const float* g = dout + b * image_out;
      if (dweight) {
        const float* x = inp + b * image_in;
        if (!pointwise) {
          conv2d_detail::im2col(col, x, s);
          x = col;
        }
        gemm(false, true, s.O, int(K), int(P), 1.0f, g, int(P), x, int(P), b == b0 ? 0.0f : 1.0f,
             partials.get() + slice * weight_size, int(K));
      }
      if (dinp) {
        float* dx = dinp + b * image_in;
        if (pointwise) {
          gemm(true, false, int(K), int(P), s.O, 1.0f, weight, int(K), g, int(P), 1.0f, dx, int(P));
        } else {
          gemm(true, false, int(K), int(P), s.O, 1.0f, weight, int(K), g, int(P), 0.0f, dcol, int(P));
          conv2d_detail::col2im_add(dx, dcol, s);
        }
      }
    }
  });
  if (!dweight) return;
  for (int slice = 0; slice < slices; ++slice) {
    const float* partial = partials.get() + slice * weight_size;
    for (int64_t i = 0; i < weight_size; ++i) dweight[i] += partial[i];
  }
}

}  // namespace tessera::kernels
