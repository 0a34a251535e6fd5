// reduce.cu: the twin of tensor.Backend's Reduce (Sum, Mean, SumSq over AxisAll, AxisExample and
// AxisChannel), deterministic in two passes:
//
//   pass 1  reduce_rows_f32 (AxisAll: R = 1; AxisExample: R = N rows of H·W·C) or reduce_cols_f32
//           (AxisChannel: C columns over N·H·W rows) writes one double partial per (output, block)
//           with a fixed owner and order (common.cuh's RowPart/ColPart);
//   pass 2  reduce_finish_f32 adds each output's P partials in index order.
//
// The launch shape depends only on the tensor shape, so results are bit-identical from run to run.
// reduce_finish_f32 and sum2_finish_f32 also finish the fused flow kernels' reductions (flow.cu).
#include "common.cuh"

// reduce_rows_f32: grid (R, P), block DLF_THREADS. part[r*P + p] = Σ (or Σ x²) of elements
// [p*chunk, min(L, (p+1)*chunk)) of row r of the row-major [R, L] array src. chunk must be a multiple
// of 4 (the host rounds it up) so that, when L is too, every block starts on a float4 boundary.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
reduce_rows_f32(double* part, const float* src, long long L, long long chunk, int square) {
  __shared__ double sh[32];
  const RowPart rp(L, chunk);
  const float* s = src + rp.row * L;
  double acc[1] = {0.0};
  if ((L & 3) == 0 && (chunk & 3) == 0) {
    const float4* s4 = reinterpret_cast<const float4*>(s);
    for (long long j = rp.begin + 4 * (long long)threadIdx.x; j < rp.end; j += 4 * (long long)blockDim.x) {
      const float4 v = s4[j >> 2];
      const double a = v.x, b = v.y, c = v.z, d = v.w;
      acc[0] += square ? (a * a + b * b) + (c * c + d * d) : (a + b) + (c + d);
    }
  } else {
    for (long long j = rp.begin + threadIdx.x; j < rp.end; j += blockDim.x) {
      const double a = s[j];
      acc[0] += square ? a * a : a;
    }
  }
  rp.store<1>(acc, sh, part);
}

// reduce_cols_f32: grid (ceil(C / min(C, DLF_THREADS)), P), block DLF_THREADS.
// part[p*C + c] = Σ (or Σ x²) of column c over rows [p*chunk, min(R, (p+1)*chunk)) of src [R, C].
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
reduce_cols_f32(double* part, const float* src, long long R, int C, long long chunk, int square) {
  __shared__ double sh[DLF_THREADS];
  const ColPart cp(R, C, chunk);
  double acc[1] = {0.0};
  if (cp.active) {
    for (long long r = cp.begin + cp.g; r < cp.end; r += cp.G) {
      const double a = src[r * C + cp.col];
      acc[0] += square ? a * a : a;
    }
  }
  cp.store<1>(acc, sh, part, C);
}

// reduce_finish_f32: for j < count, s = Σ_{p<parts} part[j*jstride + p*pstride] (in p order) and
//   dst[j] = (accumulate ? dst[j] : 0) + (float)(s * scale / divisor).
// Row partials (RowPart) have jstride = parts, pstride = 1; column partials (ColPart) jstride = 1,
// pstride = count. Mean passes divisor = the number of reduced elements; the logdet kernels pass
// scale = ±1 and accumulate = 1 to add into ld/lp.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
reduce_finish_f32(float* dst, const double* part, long long count, int parts, long long jstride, long long pstride,
                  float scale, long long divisor, int accumulate) {
  for (long long j = grid_stride_begin(); j < count; j += grid_stride_step()) {
    double s = 0.0;
    const double* q = part + j * jstride;
    for (int p = 0; p < parts; ++p) s += q[p * pstride];
    const float v = (float)(s * (double)scale / (double)divisor);
    dst[j] = accumulate ? dst[j] + v : v;
  }
}

// sum2_finish_f32: one block. d0[0] = Σ part[0..n), d1[0] = Σ part[n..2n) with a fixed order (each
// thread a strided sequence, then block_sum). d1 may be null (only d0 wanted).
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
sum2_finish_f32(float* d0, float* d1, const double* part, long long n) {
  __shared__ double sh[64];
  double acc[2] = {0.0, 0.0};
  for (long long j = threadIdx.x; j < n; j += blockDim.x) {
    acc[0] += part[j];
    acc[1] += part[n + j];
  }
  block_sum<2>(acc, sh);
  if (threadIdx.x == 0) {
    d0[0] = (float)acc[0];
    if (d1) d1[0] = (float)acc[1];
  }
}
