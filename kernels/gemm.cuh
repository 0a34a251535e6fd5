// gemm.cuh: the tiled FP32 matrix-multiply core shared by gemm.cu (dense GEMM) and conv.cu
// (implicit-GEMM convolutions). Included only; it defines no extern "C" kernels.
//
// A block of 256 threads computes a BM×BN tile of C = op(A)·op(B) over a k-range [kBegin, kEnd):
//   * operands stream through double-buffered shared memory, k-major (As[k][m], Bs[k][n]) with rows
//     padded by 4 floats, BK values of k per stage; each thread fetches one 4-element piece of each
//     operand per stage into registers while the previous stage is being multiplied, so one
//     __syncthreads per stage suffices (stage t reads buffer t&1 and fills buffer (t+1)&1, whose last
//     readers finished before the barrier that ended stage t-1);
//   * each thread owns a TM×TN register micro-tile made of TM/4 × TN/4 groups of 4×4 spaced BM/(TM/4)
//     and BN/(TN/4) apart, so its shared-memory reads are float4 broadcasts without bank conflicts
//     and its global stores are float4s, 16 threads covering 256 contiguous bytes of a row;
//   * out-of-range rows, columns and k are loaded as zeros, so edge tiles need no special path, and
//     the epilogue stores only in-range elements: any M, N, K works.
// Loaders decide how (i, k) maps to memory: dense with k contiguous (KC), dense with i contiguous
// (IC), or convolution patches gathered on the fly (conv.cu). Accumulation is plain FP32 FMA in a
// fixed order: results are exact FP32 GEMM, deterministic for a given launch shape.
#pragma once
#include "common.cuh"

template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct TileCfg {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int TX = BN / TN;       // threads along n
  static constexpr int TY = BM / TM;       // threads along m
  static constexpr int SA = BM + 4;        // padded shared row length of A (one row per k)
  static constexpr int SB = BN + 4;
  static constexpr int RM = BM / (TM / 4); // distance between a thread's 4-row groups
  static constexpr int RN = BN / (TN / 4);
  typedef float Acc[TM][TN];               // a thread's accumulators (mma.cuh's configs differ)
  static_assert(TX * TY == 256, "a tile config must use 256 threads");
  static_assert(TM % 4 == 0 && TN % 4 == 0 && BK % 4 == 0, "micro-tiles and BK are built from float4s");
  static_assert(BM * BK / 4 <= 256 && BN * BK / 4 <= 256, "one float4 piece per thread and operand");
};

// The three tile shapes. Large: 128×128 tiles, 8×8 per thread, for big M and N (GFLOP-scale GEMMs,
// 3x3 convolutions to 512 channels). Small: 64×64, 4×4 per thread, when large tiles would leave SMs
// idle. Narrow: 128×32, 4×4 per thread, for N ≤ 32 (the invertible 1x1 convolutions and the
// zero-initialised output convolutions to 2·C_k channels).
typedef TileCfg<128, 128, 8, 8, 8> CfgL;
typedef TileCfg<64, 64, 16, 4, 4> CfgS;
typedef TileCfg<128, 32, 8, 4, 4> CfgN;

__device__ __forceinline__ bool aligned16(const void* p) {
  return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0;
}

__device__ __forceinline__ void zero4(float (&r)[4]) { r[0] = r[1] = r[2] = r[3] = 0.0f; }

// A thread's piece of a tile follows from threadIdx.x alone (power-of-two divisors: shifts and
// masks), so loaders recompute it instead of keeping it in registers through the main loop.
// KC layout (k contiguous): tile row kc_row, k offset kc_quad. IC layout: k row ic_k, i offset ic_quad.
template <int BK>
__device__ __forceinline__ int kc_row() { return (int)threadIdx.x / (BK / 4); }
template <int BK>
__device__ __forceinline__ int kc_quad() { return ((int)threadIdx.x % (BK / 4)) * 4; }
template <int BI>
__device__ __forceinline__ int ic_k() { return (int)threadIdx.x / (BI / 4); }
template <int BI>
__device__ __forceinline__ int ic_quad() { return ((int)threadIdx.x % (BI / 4)) * 4; }

// KC loader: element (i, k) of a BI×BK tile at p[i*ld + k] (k contiguous). Thread t loads k-quad
// (t % (BK/4)) of tile row t / (BK/4). Only a base pointer and the k bound stay live in the main loop.
template <int BI, int BK, int S>
struct LoadKC {
  const float* q;  // &p[i*ld + kq]
  int kEnd;
  bool on, vec;

  __device__ __forceinline__ LoadKC(const float* p, long long ld, int rows, int kEnd_, int i0) {
    constexpr int KG = BK / 4;
    const int t = threadIdx.x;
    const int ii = t / KG;
    const int i = i0 + ii;
    kEnd = kEnd_;
    on = t < BI * KG && i < rows;
    vec = (ld & 3) == 0 && aligned16(p);
    q = on ? p + (long long)i * ld + kc_quad<BK>() : p;
  }

  __device__ __forceinline__ void load(int k0, float (&r)[4]) const {
    zero4(r);
    const int k = k0 + kc_quad<BK>();
    if (!on || k >= kEnd) return;
    const float* a = q + k0;
    if (vec && k + 3 < kEnd) {
      const float4 v = *reinterpret_cast<const float4*>(a);
      r[0] = v.x; r[1] = v.y; r[2] = v.z; r[3] = v.w;
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (k + j < kEnd) r[j] = a[j];
    }
  }

  __device__ __forceinline__ void store(float* s, const float (&r)[4]) const {
    if (threadIdx.x >= BI * (BK / 4)) return;
#pragma unroll
    for (int j = 0; j < 4; ++j) s[(kc_quad<BK>() + j) * S + kc_row<BK>()] = r[j];
  }
};

// IC loader: element (i, k) of a BI×BK tile at p[k*ld + i] (i contiguous). Thread t loads i-quad
// (t % (BI/4)) of tile row k = t / (BI/4).
template <int BI, int BK, int S>
struct LoadIC {
  const float* q;  // &p[kk*ld + i]
  long long ld;
  int kEnd, nvalid;  // nvalid: how many of the 4 columns are inside (0..4)
  bool vec;

  __device__ __forceinline__ LoadIC(const float* p, long long ld_, int rows, int kEnd_, int i0) {
    constexpr int IG = BI / 4;
    const int t = threadIdx.x;
    const int kk = t / IG;
    const int iq = (t - kk * IG) * 4;
    const int i = i0 + iq;
    ld = ld_;
    kEnd = kEnd_;
    nvalid = t < BK * IG ? min(max(rows - i, 0), 4) : 0;
    vec = nvalid == 4 && (ld_ & 3) == 0 && aligned16(p);
    q = nvalid > 0 ? p + (long long)kk * ld_ + i : p;
  }

  __device__ __forceinline__ void load(int k0, float (&r)[4]) const {
    zero4(r);
    if (nvalid == 0 || k0 + ic_k<BI>() >= kEnd) return;
    const float* a = q + (long long)k0 * ld;
    if (vec) {
      const float4 v = *reinterpret_cast<const float4*>(a);
      r[0] = v.x; r[1] = v.y; r[2] = v.z; r[3] = v.w;
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (j < nvalid) r[j] = a[j];
    }
  }

  __device__ __forceinline__ void store(float* s, const float (&r)[4]) const {
    if (threadIdx.x >= BK * (BI / 4)) return;
    *reinterpret_cast<float4*>(&s[ic_k<BI>() * S + ic_quad<BI>()]) = make_float4(r[0], r[1], r[2], r[3]);
  }
};

// Epilogue: out[m*N + n] = alpha·acc + bias[n] (when bias) + beta·out (only when beta != 0, so a
// beta = 0 output is never read and may hold NaN). Split-K partials use alpha 1, beta 0, no bias.
struct Epilogue {
  float* out;
  const float* bias;
  int M, N;
  float alpha, beta;
  bool vec, vec2;

  __device__ __forceinline__ Epilogue(float* out_, const float* bias_, int M_, int N_, float alpha_, float beta_)
      : out(out_), bias(bias_), M(M_), N(N_), alpha(alpha_), beta(beta_) {
    vec = (N_ & 3) == 0 && aligned16(out_);
    vec2 = (N_ & 1) == 0 && (reinterpret_cast<unsigned long long>(out_) & 7ull) == 0;
  }

  // store2 is operator() for the two columns n, n+1 (n even) that a tensor-core lane holds
  // (mma.cuh), with the same arithmetic per element.
  __device__ __forceinline__ void store2(int m, int n, float v0, float v1) const {
    if (m >= M || n >= N) return;
    float* q = out + (long long)m * N + n;
    const bool two = n + 1 < N;
    float o0 = alpha * v0, o1 = alpha * v1;
    if (bias) {
      o0 += bias[n];
      if (two) o1 += bias[n + 1];
    }
    if (beta != 0.0f) {
      o0 = fmaf(beta, q[0], o0);
      if (two) o1 = fmaf(beta, q[1], o1);
    }
    if (two && vec2) {
      *reinterpret_cast<float2*>(q) = make_float2(o0, o1);
    } else {
      q[0] = o0;
      if (two) q[1] = o1;
    }
  }

  __device__ __forceinline__ void operator()(int m, int n, const float* v) const {
    if (m >= M || n >= N) return;
    float* q = out + (long long)m * N + n;
    if (vec && n + 3 < N) {
      float4 o;
      o.x = alpha * v[0];
      o.y = alpha * v[1];
      o.z = alpha * v[2];
      o.w = alpha * v[3];
      if (bias) {
        o.x += bias[n];
        o.y += bias[n + 1];
        o.z += bias[n + 2];
        o.w += bias[n + 3];
      }
      if (beta != 0.0f) {
        const float4 c = *reinterpret_cast<const float4*>(q);
        o.x = fmaf(beta, c.x, o.x);
        o.y = fmaf(beta, c.y, o.y);
        o.z = fmaf(beta, c.z, o.z);
        o.w = fmaf(beta, c.w, o.w);
      }
      *reinterpret_cast<float4*>(q) = o;
      return;
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (n + j < N) {
        float o = alpha * v[j];
        if (bias) o += bias[n + j];
        if (beta != 0.0f) o = fmaf(beta, q[j], o);
        q[j] = o;
      }
    }
  }
};

// gemm_tile accumulates the block's BM×BN tile over k in [kBegin, kEnd) into acc. The epilogue is
// built only afterwards (store_tile), so its pointers and scalars do not occupy registers in the loop.
template <class C, class LA, class LB>
__device__ __forceinline__ void gemm_tile(const LA& la, const LB& lb, int kBegin, int kEnd,
                                          float (&acc)[C::TM][C::TN]) {
  __shared__ __align__(16) float As[2][C::BK * C::SA];
  __shared__ __align__(16) float Bs[2][C::BK * C::SB];
  const int t = threadIdx.x;
  const int tx = t % C::TX, ty = t / C::TX;
#pragma unroll
  for (int i = 0; i < C::TM; ++i)
#pragma unroll
    for (int j = 0; j < C::TN; ++j) acc[i][j] = 0.0f;

  const int tiles = kEnd > kBegin ? (kEnd - kBegin + C::BK - 1) / C::BK : 0;
  if (tiles > 0) {
    float ra[4], rb[4];
    la.load(kBegin, ra);
    lb.load(kBegin, rb);
    la.store(As[0], ra);
    lb.store(Bs[0], rb);
    __syncthreads();
    for (int s = 0; s < tiles; ++s) {
      const int cur = s & 1;
      const bool more = s + 1 < tiles;
      if (more) {
        la.load(kBegin + (s + 1) * C::BK, ra);
        lb.load(kBegin + (s + 1) * C::BK, rb);
      }
      const float* as = As[cur];
      const float* bs = Bs[cur];
#pragma unroll
      for (int kk = 0; kk < C::BK; ++kk) {
        float a[C::TM], b[C::TN];
#pragma unroll
        for (int g = 0; g < C::TM / 4; ++g) {
          const float4 v = *reinterpret_cast<const float4*>(&as[kk * C::SA + ty * 4 + g * C::RM]);
          a[g * 4 + 0] = v.x;
          a[g * 4 + 1] = v.y;
          a[g * 4 + 2] = v.z;
          a[g * 4 + 3] = v.w;
        }
#pragma unroll
        for (int g = 0; g < C::TN / 4; ++g) {
          const float4 v = *reinterpret_cast<const float4*>(&bs[kk * C::SB + tx * 4 + g * C::RN]);
          b[g * 4 + 0] = v.x;
          b[g * 4 + 1] = v.y;
          b[g * 4 + 2] = v.z;
          b[g * 4 + 3] = v.w;
        }
#pragma unroll
        for (int i = 0; i < C::TM; ++i)
#pragma unroll
          for (int j = 0; j < C::TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
      if (more) {
        la.store(As[cur ^ 1], ra);
        lb.store(Bs[cur ^ 1], rb);
      }
      __syncthreads();
    }
  }
}

// store_tile hands the block's tile at (m0, n0) to epi in 4-column pieces.
template <class C, class E>
__device__ __forceinline__ void store_tile(const float (&acc)[C::TM][C::TN], const E& epi, int m0, int n0) {
  const int t = threadIdx.x;
  const int tx = t % C::TX, ty = t / C::TX;
#pragma unroll
  for (int gi = 0; gi < C::TM / 4; ++gi)
#pragma unroll
    for (int ii = 0; ii < 4; ++ii) {
      const int m = m0 + ty * 4 + gi * C::RM + ii;
#pragma unroll
      for (int gj = 0; gj < C::TN / 4; ++gj) epi(m, n0 + tx * 4 + gj * C::RN, &acc[gi * 4 + ii][gj * 4]);
    }
}
