// rng.cu: counter-based random fills, the twins of tensor.Backend's RandUniform and RandNormal.
//
// Philox-4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011)
// exactly as tensor/philox.go defines it: element i of a fill with (seed, offset) takes word i%4 of
// block j = i/4, whose counter is (lo32(offset+j), hi32(offset+j), 0, 0) and whose key is
// (lo32(seed), hi32(seed)). Uniforms are (w >> 8)·2^-24 (exact in float32); normals are Box–Muller
// in double precision per word pair, u1 = (w0+1)·2^-32 ∈ (0, 1], u2 = w1·2^-32, r = sqrt(−2 ln u1),
// (r·cos 2πu2, r·sin 2πu2), then rounded to float. One thread computes one block (four elements).
#include "common.cuh"

// Round constants of Philox-4x32 (Random123's PHILOX_M4x32_0/1 and PHILOX_W32_0/1).
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

__device__ __forceinline__ uint4 philox4x32_10(unsigned long long ctr, unsigned long long seed) {
  unsigned c0 = (unsigned)ctr, c1 = (unsigned)(ctr >> 32), c2 = 0u, c3 = 0u;
  unsigned k0 = (unsigned)seed, k1 = (unsigned)(seed >> 32);
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    const unsigned hi0 = __umulhi(PHILOX_M0, c0), lo0 = PHILOX_M0 * c0;
    const unsigned hi1 = __umulhi(PHILOX_M1, c2), lo1 = PHILOX_M1 * c2;
    const unsigned n0 = hi1 ^ c1 ^ k0;
    const unsigned n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  return make_uint4(c0, c1, c2, c3);
}

__device__ __forceinline__ float philox_uniform(unsigned w) {
  return (float)(w >> 8) * (1.0f / 16777216.0f);  // exact: a 24-bit integer times 2^-24
}

// box_muller turns one word pair into two standard normals (double precision, as PhiloxNormal).
__device__ __forceinline__ void box_muller(unsigned a, unsigned b, float& z0, float& z1) {
  const double u1 = ((double)a + 1.0) * (1.0 / 4294967296.0);
  const double u2 = (double)b * (1.0 / 4294967296.0);
  const double r = sqrt(-2.0 * log(u1));
  double s, c;
  sincos(6.283185307179586 * u2, &s, &c);  // 2π rounded to double, as Go's 2*math.Pi
  z0 = (float)(r * c);
  z1 = (float)(r * s);
}

// store4 writes the block's up to four elements (dst is 16-byte aligned, see elementwise.cu).
__device__ __forceinline__ void store4(float* dst, long long n, long long j, float a, float b, float c, float d) {
  const long long i = j << 2;
  if (i + 3 < n) {
    reinterpret_cast<float4*>(dst)[j] = make_float4(a, b, c, d);
    return;
  }
  if (i < n) dst[i] = a;
  if (i + 1 < n) dst[i + 1] = b;
  if (i + 2 < n) dst[i + 2] = c;
}

// rand_uniform_f32: dst[i] = uniform in [0, 1) for i < n (tensor.PhiloxUniform).
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
rand_uniform_f32(float* dst, long long n, unsigned long long seed, unsigned long long offset) {
  const long long blocks = (n + 3) >> 2;
  for (long long j = grid_stride_begin(); j < blocks; j += grid_stride_step()) {
    const uint4 w = philox4x32_10(offset + (unsigned long long)j, seed);
    store4(dst, n, j, philox_uniform(w.x), philox_uniform(w.y), philox_uniform(w.z), philox_uniform(w.w));
  }
}

// rand_normal_f32: dst[i] = standard normal for i < n (tensor.PhiloxNormal).
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
rand_normal_f32(float* dst, long long n, unsigned long long seed, unsigned long long offset) {
  const long long blocks = (n + 3) >> 2;
  for (long long j = grid_stride_begin(); j < blocks; j += grid_stride_step()) {
    const uint4 w = philox4x32_10(offset + (unsigned long long)j, seed);
    float a, b, c, d;
    box_muller(w.x, w.y, a, b);
    box_muller(w.z, w.w, c, d);
    store4(dst, n, j, a, b, c, d);
  }
}
