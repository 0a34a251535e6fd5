// gemm.cu: FP32 GEMM, the twin of tensor.Backend's Gemm: C = alpha·op(A)·op(B) + beta·C for row-major
// operands, op(A) M×K, op(B) K×N, optionally batched (grid.z) with element strides, and optionally
// split along K into `splits` fixed slices whose partial products go to a workspace and are added in
// slice order by splitk_finish_f32 (deterministic; used when M×N alone gives too few blocks).
//
// One kernel per (tile shape, transA, transB): sgemm_<ta><tb>_<BM>x<BN>, n = as stored, t =
// transposed. A is [M,K] (n) or [K,M] (t); B is [K,N] (n) or [N,K] (t); C is [M,N]. The grid is
// (ceil(M/BM), ceil(N/BN), batches·splits); blockIdx.z = batch·splits + slice. Slice s covers k in
// [s·kChunk, min(K, (s+1)·kChunk)); kChunk must be a multiple of 16 (every tile's BK) so vector loads
// stay aligned. With splits == 1 the block applies alpha and beta itself; otherwise it writes its raw
// partial product to ws[(z·M + m)·N + n] and splitk_finish_f32 applies them. With beta == 0, C is not
// read. The tile machinery is gemm.cuh's; see it for the algorithm.
#include "mma.cuh"

template <class C, bool TA, bool TB>
__device__ __forceinline__ void sgemm(float* c, const float* a, const float* b, float* ws, int M, int N, int K,
                                      int splits, int kChunk, float alpha, float beta, long long strideA,
                                      long long strideB, long long strideC) {
  const int z = blockIdx.z;
  const int batch = z / splits, slice = z - batch * splits;
  a += batch * strideA;
  b += batch * strideB;
  const int kBegin = slice * kChunk;
  const int kEnd = K - kBegin > kChunk ? kBegin + kChunk : K;
  const int m0 = blockIdx.x * C::BM, n0 = blockIdx.y * C::BN;
  typename C::Acc acc;
  // op(A)(m, k): stored [M,K] → A[m*K + k] (k contiguous); stored [K,M] → A[k*M + m].
  // op(B)(k, n): stored [K,N] → B[k*N + n] (n contiguous); stored [N,K] → B[n*K + k].
  if (!TA && !TB) {
    gemm_tile<C>(LoadKC<C::BM, C::BK, C::SA>(a, K, M, kEnd, m0), LoadIC<C::BN, C::BK, C::SB>(b, N, N, kEnd, n0),
                 kBegin, kEnd, acc);
  } else if (!TA && TB) {
    gemm_tile<C>(LoadKC<C::BM, C::BK, C::SA>(a, K, M, kEnd, m0), LoadKC<C::BN, C::BK, C::SB>(b, K, N, kEnd, n0),
                 kBegin, kEnd, acc);
  } else if (TA && !TB) {
    gemm_tile<C>(LoadIC<C::BM, C::BK, C::SA>(a, M, M, kEnd, m0), LoadIC<C::BN, C::BK, C::SB>(b, N, N, kEnd, n0),
                 kBegin, kEnd, acc);
  } else {
    gemm_tile<C>(LoadIC<C::BM, C::BK, C::SA>(a, M, M, kEnd, m0), LoadKC<C::BN, C::BK, C::SB>(b, K, N, kEnd, n0),
                 kBegin, kEnd, acc);
  }
  if (splits == 1) {
    store_tile<C>(acc, Epilogue(c + batch * strideC, nullptr, M, N, alpha, beta), m0, n0);
  } else {
    store_tile<C>(acc, Epilogue(ws + (long long)z * M * N, nullptr, M, N, 1.0f, 0.0f), m0, n0);
  }
}

extern "C" __global__ void __launch_bounds__(256, 2)
sgemm_nn_128x128(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<CfgL, false, false>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256, 2)
sgemm_nt_128x128(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<CfgL, false, true>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256, 2)
sgemm_tn_128x128(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<CfgL, true, false>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256, 2)
sgemm_tt_128x128(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<CfgL, true, true>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
sgemm_nn_64x64(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<CfgS, false, false>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
sgemm_nt_64x64(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<CfgS, false, true>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
sgemm_tn_64x64(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<CfgS, true, false>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
sgemm_tt_64x64(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<CfgS, true, true>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
sgemm_nn_128x32(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<CfgN, false, false>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
sgemm_nt_128x32(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<CfgN, false, true>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
sgemm_tn_128x32(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<CfgN, true, false>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
sgemm_tt_128x32(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<CfgN, true, true>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

// The TF32 tensor-core twins of the kernels above (mma.cuh): same arguments, tiles and split-K
// scheme; operands rounded to TF32 (cvt.rna), products accumulated in fp32. Host: Precision TF32.

extern "C" __global__ void __launch_bounds__(256, 2)
gemm_tf32_nn_128x128(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<TcL, false, false>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256, 2)
gemm_tf32_nt_128x128(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<TcL, false, true>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256, 2)
gemm_tf32_tn_128x128(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<TcL, true, false>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256, 2)
gemm_tf32_tt_128x128(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<TcL, true, true>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
gemm_tf32_nn_64x64(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<TcS, false, false>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
gemm_tf32_nt_64x64(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<TcS, false, true>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
gemm_tf32_tn_64x64(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<TcS, true, false>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
gemm_tf32_tt_64x64(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<TcS, true, true>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
gemm_tf32_nn_128x32(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<TcN, false, false>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
gemm_tf32_nt_128x32(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<TcN, false, true>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
gemm_tf32_tn_128x32(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<TcN, true, false>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}

extern "C" __global__ void __launch_bounds__(256)
gemm_tf32_tt_128x32(float* c, const float* a, const float* b, float* ws, int M, int N, int K, int splits, int kChunk,
                 float alpha, float beta, long long strideA, long long strideB, long long strideC) {
  sgemm<TcN, true, true>(c, a, b, ws, M, N, K, splits, kChunk, alpha, beta, strideA, strideB, strideC);
}
// splitk_finish_f32: for each batch b < batches and element e < MN of an [M,N] output:
//   s = Σ_{slice < splits} ws[(b·splits + slice)·MN + e]   (slice order, in double)
//   out[b·strideOut + e] = alpha·s + bias[e % N] (when bias) + beta·out (only when beta != 0).
// It finishes split-K GEMMs and convolutions (conv.cu) alike.
extern "C" __global__ void __launch_bounds__(256)
splitk_finish_f32(float* out, const float* ws, const float* bias, long long MN, int N, int splits, int batches,
                  float alpha, float beta, long long strideOut) {
  const long long total = MN * batches;
  for (long long idx = grid_stride_begin(); idx < total; idx += grid_stride_step()) {
    const long long b = div64(idx, MN), e = idx - b * MN;
    const float* w = ws + b * splits * MN + e;
    double s = 0.0;
    for (int k = 0; k < splits; ++k) s += w[k * MN];
    float v = (float)((double)alpha * s);
    if (bias) v += bias[mod64(e, N)];
    float* q = out + b * strideOut + e;
    if (beta != 0.0f) v = fmaf(beta, *q, v);
    *q = v;
  }
}
