// common.cuh: helpers shared by dlf's kernel families (included by the .cu files, never compiled on
// its own, so it declares no extern "C" kernels and the launcher generator never sees it).
//
// Conventions of every kernel in this directory:
//   * float32 data, NHWC, contiguous; element counts and offsets are 64-bit (long long);
//   * 1-D blocks of DLF_THREADS threads unless a kernel says otherwise;
//   * no --use_fast_math: expf/logf/tanhf/sqrtf and '/' are the IEEE-accurate library versions, so a
//     kernel matches its CPU twin (which evaluates in float64 and rounds once) to a few ulp;
//   * reductions are deterministic: every partial sum has a fixed owner and a fixed summation order
//     that depends only on the launch shape, which the host derives from tensor shapes alone; no
//     floating-point atomics anywhere. Partials are accumulated in double: on the data-centre parts
//     we target (A100 9.7, H100 34 TFLOP/s FP64) a double add per loaded float is free next to the
//     memory traffic, and it keeps sums over 10^6–10^8 elements accurate to float32 rounding, like
//     the CPU twin's float64 accumulators.
#pragma once

#define DLF_THREADS 256

// grid_stride_begin/grid_stride_step give a 64-bit grid-stride loop.
__device__ __forceinline__ long long grid_stride_begin() {
  return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long grid_stride_step() {
  return (long long)gridDim.x * blockDim.x;
}

// div64 and mod64 divide non-negative 64-bit values, taking the 32-bit unsigned path when both
// operands fit (by far the common case): div.u32 is several times cheaper than the div.s64
// emulation, which matters in bandwidth-bound kernels that split a flat index per element.
__device__ __forceinline__ long long div64(long long a, long long b) {
  if ((((unsigned long long)a | (unsigned long long)b) >> 32) == 0) return (long long)((unsigned)a / (unsigned)b);
  return a / b;
}
__device__ __forceinline__ long long mod64(long long a, long long b) {
  if ((((unsigned long long)a | (unsigned long long)b) >> 32) == 0) return (long long)((unsigned)a % (unsigned)b);
  return a % b;
}

// warp_sum returns the sum of v over the 32 lanes in lane 0 (fixed butterfly order: deterministic).
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

// block_sum reduces v[0..Q) over a 1-D block of at most 1024 threads; the sums are valid in thread 0.
// sh must hold Q*32 doubles. Every thread of the block must call it (it synchronises).
template <int Q>
__device__ __forceinline__ void block_sum(double (&v)[Q], double* sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nw = (blockDim.x + 31) >> 5;
#pragma unroll
  for (int q = 0; q < Q; ++q) {
    const double s = warp_sum(v[q]);
    if (lane == 0) sh[q * 32 + warp] = s;
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int q = 0; q < Q; ++q) {
      v[q] = warp_sum(lane < nw ? sh[q * 32 + lane] : 0.0);
    }
  }
  __syncthreads();  // sh may be reused after return
}

// Row partition for per-example (or whole-tensor) reductions. The grid is (R, P): block (r, p) owns
// elements [p*chunk, min(L, (p+1)*chunk)) of row r of a row-major [R, L] array, and its Q sums go to
// part[(q*R + r)*P + p], so that reduce_finish-style kernels add a row's P partials contiguously and
// in order.
struct RowPart {
  long long row;    // r
  long long begin;  // first element of the row owned by this block
  long long end;    // one past the last
  int p, parts;

  __device__ __forceinline__ RowPart(long long L, long long chunk) {
    row = blockIdx.x;
    p = blockIdx.y;
    parts = gridDim.y;
    begin = (long long)p * chunk;
    end = begin + chunk < L ? begin + chunk : L;
  }

  template <int Q>
  __device__ __forceinline__ void store(double (&acc)[Q], double* sh, double* part) const {
    block_sum<Q>(acc, sh);
    if (threadIdx.x == 0) {
      const long long R = gridDim.x;
#pragma unroll
      for (int q = 0; q < Q; ++q) part[((long long)q * R + row) * parts + p] = acc[q];
    }
  }
};

// Column partition for per-column reductions of a row-major [R, C] array (per-channel sums over
// N·H·W rows, or BatchBroadcast sums over the batch). The grid is (tiles, P). A tile is W = min(C,
// blockDim.x) adjacent columns; the block's threads form G = blockDim.x / W row lanes of W threads,
// so a warp reads consecutive columns of a row (coalesced) and a thread keeps one column for the
// whole loop (its per-column constants stay in registers). Block (tile, p) owns rows
// [p*chunk, min(R, (p+1)*chunk)); lane g walks rows begin+g, begin+g+G, ... The G lane sums of a
// column are then added by a fixed binary tree in shared memory, and column c's Q sums go to
// part[(q*P + p)*C + c]: consecutive columns are adjacent, so both this store and the finishing
// kernels' reads (one thread per column, looping over p) are coalesced.
struct ColPart {
  int W, G;        // tile width and number of row lanes
  int g, col;      // this thread's lane and column (col >= C or !active: idle)
  bool active;
  long long begin, end;
  int p, parts;

  __device__ __forceinline__ ColPart(long long R, int C, long long chunk) {
    const int nt = blockDim.x;
    W = C < nt ? C : nt;
    G = nt / W;
    const int t = threadIdx.x;
    g = t / W;
    col = blockIdx.x * W + (t - g * W);
    active = g < G && col < C;
    p = blockIdx.y;
    parts = gridDim.y;
    begin = (long long)p * chunk;
    end = begin + chunk < R ? begin + chunk : R;
  }

  // store adds the lane sums of each column (sh must hold Q*blockDim.x doubles) and writes them.
  template <int Q>
  __device__ __forceinline__ void store(double (&acc)[Q], double* sh, double* part, int C) const {
    const int t = threadIdx.x;
    const int tc = t - g * W;  // column within the tile
    const int nt = blockDim.x;
    if (g < G) {
#pragma unroll
      for (int q = 0; q < Q; ++q) sh[q * nt + t] = active ? acc[q] : 0.0;
    }
    __syncthreads();
    // Fixed tree over the lanes: n lanes → ceil(n/2), lane g adds lane g+half.
    for (int n = G; n > 1;) {
      const int half = (n + 1) >> 1;
      if (g < n - half) {
#pragma unroll
        for (int q = 0; q < Q; ++q) sh[q * nt + g * W + tc] += sh[q * nt + (g + half) * W + tc];
      }
      n = half;
      __syncthreads();
    }
    if (g == 0 && active) {
#pragma unroll
      for (int q = 0; q < Q; ++q) part[((long long)q * parts + p) * C + col] = sh[q * nt + tc];
    }
  }
};

// Sigmoid and softplus evaluated without overflow, as the CPU twin does.
__device__ __forceinline__ float sigmoid_f(float x) {
  if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
  const float e = expf(x);
  return e / (1.0f + e);
}

// LogScale turns the raw log-scale parameter r of an affine transform or a bounded Gaussian into ℓ
// (tensor.ScaleMode): mode 1 is DLF's ℓ = α·tanh(r) + β (dlf-spec §1.5); mode 2 is Glow's
// ℓ = log σ(r + 2) = −softplus(−(r + 2)) (dlf-spec §5). eval also returns e^ℓ, tanh r (mode 1) and
// dℓ/dr. For mode 2 one exponential u = e^{−|z|} gives ℓ, σ(z) and σ(−z) without overflow, the same
// formulation as the CPU twin.
struct LogScale {
  int mode;
  float alpha, beta;

  __device__ __forceinline__ void eval(float r, float& l, float& e, float& t, float& dl) const {
    if (mode == 2) {
      const float z = r + 2.0f;
      const float u = expf(-fabsf(z));
      const float lp = log1pf(u);
      const float inv = 1.0f / (1.0f + u);
      t = 0.0f;
      if (z >= 0.0f) {
        l = -lp;
        e = inv;          // σ(z)
        dl = u * inv;     // σ(−z)
      } else {
        l = z - lp;
        e = u * inv;      // σ(z)
        dl = inv;         // σ(−z)
      }
      return;
    }
    t = tanhf(r);
    l = fmaf(alpha, t, beta);
    e = expf(l);
    dl = alpha * (1.0f - t * t);
  }
};

// load_scale reads α and β from device memory for mode 1 (mode 2 ignores them; the pointers may be
// null there).
__device__ __forceinline__ LogScale load_scale(int mode, const float* alpha, const float* beta) {
  LogScale s;
  s.mode = mode;
  s.alpha = 0.0f;
  s.beta = 0.0f;
  if (mode == 1) {
    s.alpha = alpha[0];
    s.beta = beta[0];
  }
  return s;
}
