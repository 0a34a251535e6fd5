// linalg.cu: the invertible 1×1 convolution's log-determinant and W⁻ᵀ on the device
// (tensor.InvLogDet), so that a training step never downloads W for a host factorisation.
#include "common.cuh"

// inv_logdet_f32: block b inverts matrix b of w [B,C,C] by Gauss-Jordan elimination with partial
// pivoting on the float64 augmented matrix [W | I], held in work[b] (C × 2C doubles, then C factors:
// C reaches 96 for imagenet64, 147 KiB, more than a block's shared memory). It writes W⁻ᵀ into inv
// and scale·log|det W| into logdet[b], both rounded once to float32; a zero pivot gives −Inf and an
// inverse of NaN. The elimination order is the CPU twin's (tensor/cpu/linalg.go): the pivot is the
// first row of largest magnitude, rows are swapped, the pivot row is divided by the pivot, then every
// other row i subtracts f_i × the pivot row with f_i read before the update; products are
// __dmul_rn, never contracted into an FMA, so both backends round identically. One thread scans
// for the pivot (at most C values); the swaps, the division and the elimination are spread over
// the block.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
inv_logdet_f32(float* inv, float* logdet, const float* __restrict__ w, double* work, int c, double scale) {
  const int b = blockIdx.x;
  const int n = 2 * c;
  double* a = work + (long long)b * ((long long)c * n + c);
  double* f = a + (long long)c * n;
  const float* wb = w + (long long)b * c * c;
  __shared__ int pivot;
  __shared__ int singular;
  __shared__ double lad;
  for (int idx = threadIdx.x; idx < c * n; idx += blockDim.x) {
    const int i = idx / n, j = idx - (idx / n) * n;
    a[idx] = j < c ? (double)wb[i * c + j] : (j - c == i ? 1.0 : 0.0);
  }
  if (threadIdx.x == 0) {
    singular = 0;
    lad = 0.0;
  }
  __syncthreads();
  for (int k = 0; k < c; k++) {
    if (threadIdx.x == 0) {
      int p = k;
      double best = fabs(a[k * n + k]);
      for (int i = k + 1; i < c; i++) {
        const double v = fabs(a[i * n + k]);
        if (v > best) {
          p = i;
          best = v;
        }
      }
      pivot = p;
      if (best == 0.0) {
        singular = 1;
      } else {
        lad += log(best);
      }
    }
    __syncthreads();
    if (singular) break;  // a shared value: every thread leaves together
    const int p = pivot;
    if (p != k) {
      for (int j = threadIdx.x; j < n; j += blockDim.x) {
        const double t = a[k * n + j];
        a[k * n + j] = a[p * n + j];
        a[p * n + j] = t;
      }
    }
    __syncthreads();
    const double pv = a[k * n + k];
    __syncthreads();  // every thread has read the pivot before its row is divided
    for (int j = threadIdx.x; j < n; j += blockDim.x) a[k * n + j] = a[k * n + j] / pv;
    for (int i = threadIdx.x; i < c; i += blockDim.x) f[i] = a[i * n + k];
    __syncthreads();
    for (long long idx = threadIdx.x; idx < (long long)c * n; idx += blockDim.x) {
      const int i = (int)(idx / n), j = (int)(idx - (long long)i * n);
      if (i != k) a[idx] = a[idx] - __dmul_rn(f[i], a[k * n + j]);
    }
    __syncthreads();
  }
  const float nan = __int_as_float(0x7fc00000);
  float* ib = inv + (long long)b * c * c;
  for (int idx = threadIdx.x; idx < c * c; idx += blockDim.x) {
    const int i = idx / c, j = idx - (idx / c) * c;
    // W⁻ᵀ[j][i] = W⁻¹[i][j], the right half of row i.
    ib[j * c + i] = singular ? nan : (float)a[i * n + c + j];
  }
  if (threadIdx.x == 0) logdet[b] = singular ? __int_as_float(0xff800000) : (float)(scale * lad);
}
