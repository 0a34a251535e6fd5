// conv.cu: stride-1 "same" 2-D convolutions in NHWC as implicit GEMMs, the twins of tensor.Backend's
// Conv2D, Conv2DBackwardData and Conv2DBackwardWeights. x is [N,H,W,Cin], the weights HWIO
// [K,K,Cp,Cout] (a row-major [K·K·Cp, Cout] matrix), y [N,H,W,Cout], pad = (K-1)/2. With Glow's
// edge bias (dlf-spec §1.6) Cp = Cin + 1 and input channel Cin is an indicator computed on the fly:
// 1 where the tap falls in the zero padding, 0 inside the image; otherwise Cp = Cin.
//
//   forward      y = A·Wt + bias:  A[m, (kh,kw,ci)] = xpad[n, h+kh-pad, w+kw-pad, ci] (m = (n,h,w)),
//                M = N·H·W, N = Cout, K = K·K·Cp;
//   backward data dx = A'·B':      A'[m, (kh',kw',co)] = dypad[n, h+kh'-pad, w+kw'-pad, co] and
//                B'[(kh',kw',co), ci] = w[K-1-kh', K-1-kw', ci, co] (the flipped kernel), for ci < Cin
//                only (the edge channel has no input gradient), M = N·H·W, N = Cin, K = K·K·Cout;
//   backward weights dw = Aᵀ·dy:    rows (kh,kw,ci) of dw, reduction over all N·H·W pixels, done as
//                `splits` fixed pixel slices whose partial products are added in slice order
//                (splitk_finish_f32 in gemm.cu): deterministic without atomics.
// Patches are gathered from global memory (L1/L2-cached) straight into the shared-memory tiles of
// gemm.cuh's pipeline; no im2col buffer is materialised. Every kernel has the grid
// (ceil(M/BM), ceil(N/BN), splits) and any of them may split its reduction (the host decides); with
// splits > 1 the raw partials go to ws[(slice·M + m)·N + n] and splitk_finish_f32 adds them (and
// the bias). kChunk must be a multiple of 16. Index arithmetic is 32-bit for pixels and
// channels (the host checks N·H·W·max(Cp, Cout) < 2^31) and 64-bit for addresses.
#include "mma.cuh"

// Im2col: element (m, k) of the patch matrix, KC layout (k contiguous within a tap). m = (n, h, w) is
// fixed per thread; k = (kh, kw, ci) with ci fastest.
template <int BI, int BK, int S>
struct LoadIm2col {
  const float* x;  // image n of this thread's pixel
  int H, W, C, Cp, K, hp, wp, kEnd;  // hp, wp: pixel position minus the padding; kEnd -1 when idle

  __device__ __forceinline__ LoadIm2col(const float* x_, int H_, int W_, int C_, int Cp_, int K_, int M, int kEnd_,
                                        int i0) {
    constexpr int KG = BK / 4;
    const int t = threadIdx.x;
    const int m = i0 + t / KG;
    const bool on = t < BI * KG && m < M;
    H = H_; W = W_; C = C_; Cp = Cp_; K = K_;
    kEnd = on ? kEnd_ : -1;
    const int hw = H_ * W_;
    const int n = on ? m / hw : 0;
    const int rem = on ? m - n * hw : 0;
    const int h = rem / W_;
    const int pad = (K_ - 1) / 2;
    hp = h - pad;
    wp = rem - h * W_ - pad;
    x = x_ + (long long)n * hw * C_;
  }

  __device__ __forceinline__ void load(int k0, float (&r)[4]) const {
    zero4(r);
    const int k = k0 + kc_quad<BK>();
    if (k >= kEnd) return;
    const int tap = k / Cp;
    int ci = k - tap * Cp;
    int kh = tap / K;
    int kw = tap - kh * K;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (k + j < kEnd) {
        const int hh = hp + kh, ww = wp + kw;
        const bool inside = (unsigned)hh < (unsigned)H && (unsigned)ww < (unsigned)W;
        if (ci < C) {
          if (inside) r[j] = x[((long long)hh * W + ww) * C + ci];
        } else {
          r[j] = inside ? 0.0f : 1.0f;  // edge-bias channel
        }
      }
      if (++ci == Cp) {
        ci = 0;
        if (++kw == K) {
          kw = 0;
          ++kh;
        }
      }
    }
  }

  __device__ __forceinline__ void store(float* s, const float (&r)[4]) const {
    if (threadIdx.x >= BI * (BK / 4)) return;
#pragma unroll
    for (int j = 0; j < 4; ++j) s[(kc_quad<BK>() + j) * S + kc_row<BK>()] = r[j];
  }
};

// FlippedWeights: element (k, ci) of B' for the backward-data GEMM, KC layout: k = (kh', kw', co)
// with co fastest, value w[K-1-kh', K-1-kw', ci, co] = w[((KK-1-tap')·Cp + ci)·Cout + co].
template <int BI, int BK, int S>
struct LoadFlippedWeights {
  const float* wc;  // &w[ci*Cout]
  int Cout, KK, tapStride, kEnd;
  bool on;

  __device__ __forceinline__ LoadFlippedWeights(const float* w, int Cin, int Cp, int Cout_, int KK_, int kEnd_,
                                                int i0) {
    constexpr int KG = BK / 4;
    const int t = threadIdx.x;
    const int ii = t / KG;
    const int ci = i0 + ii;
    Cout = Cout_;
    KK = KK_;
    tapStride = Cp * Cout_;
    kEnd = kEnd_;
    on = t < BI * KG && ci < Cin;
    wc = w + (on ? (long long)ci * Cout_ : 0);
  }

  __device__ __forceinline__ void load(int k0, float (&r)[4]) const {
    zero4(r);
    const int k = k0 + kc_quad<BK>();
    if (!on || k >= kEnd) return;
    int tap = k / Cout;
    int co = k - tap * Cout;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (k + j < kEnd) r[j] = wc[(long long)(KK - 1 - tap) * tapStride + co];
      if (++co == Cout) {
        co = 0;
        ++tap;
      }
    }
  }

  __device__ __forceinline__ void store(float* s, const float (&r)[4]) const {
    if (threadIdx.x >= BI * (BK / 4)) return;
#pragma unroll
    for (int j = 0; j < 4; ++j) s[(kc_quad<BK>() + j) * S + kc_row<BK>()] = r[j];
  }
};

// Im2colT: element (i, m) of the transposed patch matrix for the weight gradient, IC layout: rows
// i = (kh, kw, ci) of dw (4 consecutive per thread, fixed), reduction index m = (n, h, w) pixel.
template <int BI, int BK, int S>
struct LoadIm2colT {
  const float* x;
  int H, W, C, Cp, K, pad, kh0, kw0, ci0, nvalid, kEnd;

  __device__ __forceinline__ LoadIm2colT(const float* x_, int H_, int W_, int C_, int Cp_, int K_, int rows, int kEnd_,
                                         int i0) {
    constexpr int IG = BI / 4;
    const int t = threadIdx.x;
    const int kk = t / IG;
    const int iq = (t - kk * IG) * 4;
    const int i = i0 + iq;
    x = x_;
    H = H_; W = W_; C = C_; Cp = Cp_; K = K_;
    pad = (K_ - 1) / 2;
    kEnd = kEnd_;
    nvalid = t < BK * IG ? min(max(rows - i, 0), 4) : 0;
    const int tap = i / Cp_;
    ci0 = i - tap * Cp_;
    kh0 = tap / K_;
    kw0 = tap - kh0 * K_;
  }

  __device__ __forceinline__ void load(int k0, float (&r)[4]) const {
    zero4(r);
    const int m = k0 + ic_k<BI>();
    if (nvalid == 0 || m >= kEnd) return;
    const int hw = H * W;
    const int n = m / hw;
    const int rem = m - n * hw;
    const int h = rem / W;
    const int w = rem - h * W;
    const float* xn = x + (long long)n * hw * C;
    int ci = ci0, kh = kh0, kw = kw0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j < nvalid) {
        const int hh = h + kh - pad, ww = w + kw - pad;
        const bool inside = (unsigned)hh < (unsigned)H && (unsigned)ww < (unsigned)W;
        if (ci < C) {
          if (inside) r[j] = xn[((long long)hh * W + ww) * C + ci];
        } else {
          r[j] = inside ? 0.0f : 1.0f;  // edge-bias channel
        }
      }
      if (++ci == Cp) {
        ci = 0;
        if (++kw == K) {
          kw = 0;
          ++kh;
        }
      }
    }
  }

  __device__ __forceinline__ void store(float* s, const float (&r)[4]) const {
    if (threadIdx.x >= BK * (BI / 4)) return;
    *reinterpret_cast<float4*>(&s[ic_k<BI>() * S + ic_quad<BI>()]) = make_float4(r[0], r[1], r[2], r[3]);
  }
};

// slice_range returns this block's reduction slice [kBegin, kEnd) of [0, total).
__device__ __forceinline__ void slice_range(int total, int kChunk, int& kBegin, int& kEnd) {
  kBegin = blockIdx.z * kChunk;
  kEnd = total - kBegin > kChunk ? kBegin + kChunk : total;
}

template <class C>
__device__ __forceinline__ void conv_fwd(float* y, const float* x, const float* w, const float* bias, float* ws, int N,
                                         int H, int W, int Cin, int Cout, int K, int edge, int splits, int kChunk) {
  const int M = N * H * W, Cp = Cin + (edge ? 1 : 0), Kred = K * K * Cp;
  int kBegin, kEnd;
  slice_range(Kred, kChunk, kBegin, kEnd);
  const int m0 = blockIdx.x * C::BM, n0 = blockIdx.y * C::BN;
  typename C::Acc acc;
  gemm_tile<C>(LoadIm2col<C::BM, C::BK, C::SA>(x, H, W, Cin, Cp, K, M, kEnd, m0),
               LoadIC<C::BN, C::BK, C::SB>(w, Cout, Cout, kEnd, n0), kBegin, kEnd, acc);
  if (splits == 1) {
    store_tile<C>(acc, Epilogue(y, bias, M, Cout, 1.0f, 0.0f), m0, n0);
  } else {
    store_tile<C>(acc, Epilogue(ws + (long long)blockIdx.z * M * Cout, nullptr, M, Cout, 1.0f, 0.0f), m0, n0);
  }
}

template <class C>
__device__ __forceinline__ void conv_bwd_data(float* dx, const float* dy, const float* w, float* ws, int N, int H,
                                              int W, int Cin, int Cout, int K, int edge, int splits, int kChunk) {
  const int M = N * H * W, Cp = Cin + (edge ? 1 : 0), Kred = K * K * Cout;
  int kBegin, kEnd;
  slice_range(Kred, kChunk, kBegin, kEnd);
  const int m0 = blockIdx.x * C::BM, n0 = blockIdx.y * C::BN;
  typename C::Acc acc;
  gemm_tile<C>(LoadIm2col<C::BM, C::BK, C::SA>(dy, H, W, Cout, Cout, K, M, kEnd, m0),
               LoadFlippedWeights<C::BN, C::BK, C::SB>(w, Cin, Cp, Cout, K * K, kEnd, n0), kBegin, kEnd, acc);
  if (splits == 1) {
    store_tile<C>(acc, Epilogue(dx, nullptr, M, Cin, 1.0f, 0.0f), m0, n0);
  } else {
    store_tile<C>(acc, Epilogue(ws + (long long)blockIdx.z * M * Cin, nullptr, M, Cin, 1.0f, 0.0f), m0, n0);
  }
}

template <class C>
__device__ __forceinline__ void conv_bwd_filter(float* dw, const float* x, const float* dy, float* ws, int N, int H,
                                                int W, int Cin, int Cout, int K, int edge, int splits, int kChunk) {
  const int P = N * H * W, Cp = Cin + (edge ? 1 : 0), Mw = K * K * Cp;
  int kBegin, kEnd;
  slice_range(P, kChunk, kBegin, kEnd);
  const int m0 = blockIdx.x * C::BM, n0 = blockIdx.y * C::BN;
  typename C::Acc acc;
  gemm_tile<C>(LoadIm2colT<C::BM, C::BK, C::SA>(x, H, W, Cin, Cp, K, Mw, kEnd, m0),
               LoadIC<C::BN, C::BK, C::SB>(dy, Cout, Cout, kEnd, n0), kBegin, kEnd, acc);
  if (splits == 1) {
    store_tile<C>(acc, Epilogue(dw, nullptr, Mw, Cout, 1.0f, 0.0f), m0, n0);
  } else {
    store_tile<C>(acc, Epilogue(ws + (long long)blockIdx.z * Mw * Cout, nullptr, Mw, Cout, 1.0f, 0.0f), m0, n0);
  }
}

extern "C" __global__ void __launch_bounds__(256, 2)
conv2d_fwd_128x128(float* y, const float* x, const float* w, const float* bias, float* ws, int N, int H, int W, int Cin,
                   int Cout, int K, int edge, int splits, int kChunk) {
  conv_fwd<CfgL>(y, x, w, bias, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256, 2)
conv2d_bwd_data_128x128(float* dx, const float* dy, const float* w, float* ws, int N, int H, int W, int Cin, int Cout,
                        int K, int edge, int splits, int kChunk) {
  conv_bwd_data<CfgL>(dx, dy, w, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256, 2)
conv2d_bwd_filter_128x128(float* dw, const float* x, const float* dy, float* ws, int N, int H, int W, int Cin,
                          int Cout, int K, int edge, int splits, int kChunk) {
  conv_bwd_filter<CfgL>(dw, x, dy, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_fwd_64x64(float* y, const float* x, const float* w, const float* bias, float* ws, int N, int H, int W, int Cin,
                   int Cout, int K, int edge, int splits, int kChunk) {
  conv_fwd<CfgS>(y, x, w, bias, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_bwd_data_64x64(float* dx, const float* dy, const float* w, float* ws, int N, int H, int W, int Cin, int Cout,
                        int K, int edge, int splits, int kChunk) {
  conv_bwd_data<CfgS>(dx, dy, w, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_bwd_filter_64x64(float* dw, const float* x, const float* dy, float* ws, int N, int H, int W, int Cin,
                          int Cout, int K, int edge, int splits, int kChunk) {
  conv_bwd_filter<CfgS>(dw, x, dy, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_fwd_128x32(float* y, const float* x, const float* w, const float* bias, float* ws, int N, int H, int W, int Cin,
                   int Cout, int K, int edge, int splits, int kChunk) {
  conv_fwd<CfgN>(y, x, w, bias, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_bwd_data_128x32(float* dx, const float* dy, const float* w, float* ws, int N, int H, int W, int Cin, int Cout,
                        int K, int edge, int splits, int kChunk) {
  conv_bwd_data<CfgN>(dx, dy, w, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_bwd_filter_128x32(float* dw, const float* x, const float* dy, float* ws, int N, int H, int W, int Cin,
                          int Cout, int K, int edge, int splits, int kChunk) {
  conv_bwd_filter<CfgN>(dw, x, dy, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

// The TF32 tensor-core twins of the three convolutions (mma.cuh): same arguments and tiling;
// operands rounded to TF32 (cvt.rna) as they are gathered, products accumulated in fp32.

extern "C" __global__ void __launch_bounds__(256, 2)
conv2d_fwd_tf32_128x128(float* y, const float* x, const float* w, const float* bias, float* ws, int N, int H, int W,
                   int Cin, int Cout, int K, int edge, int splits, int kChunk) {
  conv_fwd<TcL>(y, x, w, bias, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256, 2)
conv2d_bwd_data_tf32_128x128(float* dx, const float* dy, const float* w, float* ws, int N, int H, int W, int Cin,
                        int Cout, int K, int edge, int splits, int kChunk) {
  conv_bwd_data<TcL>(dx, dy, w, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256, 2)
conv2d_bwd_filter_tf32_128x128(float* dw, const float* x, const float* dy, float* ws, int N, int H, int W, int Cin,
                          int Cout, int K, int edge, int splits, int kChunk) {
  conv_bwd_filter<TcL>(dw, x, dy, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_fwd_tf32_64x64(float* y, const float* x, const float* w, const float* bias, float* ws, int N, int H, int W,
                   int Cin, int Cout, int K, int edge, int splits, int kChunk) {
  conv_fwd<TcS>(y, x, w, bias, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_bwd_data_tf32_64x64(float* dx, const float* dy, const float* w, float* ws, int N, int H, int W, int Cin,
                        int Cout, int K, int edge, int splits, int kChunk) {
  conv_bwd_data<TcS>(dx, dy, w, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_bwd_filter_tf32_64x64(float* dw, const float* x, const float* dy, float* ws, int N, int H, int W, int Cin,
                          int Cout, int K, int edge, int splits, int kChunk) {
  conv_bwd_filter<TcS>(dw, x, dy, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_fwd_tf32_128x32(float* y, const float* x, const float* w, const float* bias, float* ws, int N, int H, int W,
                   int Cin, int Cout, int K, int edge, int splits, int kChunk) {
  conv_fwd<TcN>(y, x, w, bias, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_bwd_data_tf32_128x32(float* dx, const float* dy, const float* w, float* ws, int N, int H, int W, int Cin,
                        int Cout, int K, int edge, int splits, int kChunk) {
  conv_bwd_data<TcN>(dx, dy, w, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_bwd_filter_tf32_128x32(float* dw, const float* x, const float* dy, float* ws, int N, int H, int W, int Cin,
                          int Cout, int K, int edge, int splits, int kChunk) {
  conv_bwd_filter<TcN>(dw, x, dy, ws, N, H, W, Cin, Cout, K, edge, splits, kChunk);
}
