// optim.cu: the fused optimizer update, twin of tensor.Backend's AdamStep (tensor.OptimParams):
//   m = β1·m + (1−β1)·g
//   Adamax (kind 1): v = max(β2·v, |g|),        w = wd·w − lr·m/(v + ε)
//   Adam   (kind 2): v = β2·v + (1−β2)·g²,      w = wd·w − lr·m/(√v + ε)
// lr already carries any bias correction (the caller's). One pass: reads w, m, v, g and writes w, m, v
// (28 bytes per parameter). The host passes omb1 = 1−β1 and omb2 = 1−β2 rounded from float64, so
// those factors are not re-derived in float32.
#include "common.cuh"

// adam_update is the update of one element, shared by both kernels.
__device__ __forceinline__ void adam_update(float* w, float* m, float* v, const float* g, long long i, int kind, float lr,
                                            float b1, float omb1, float b2, float omb2, float eps, float wd) {
  const float gi = g[i];
  const float mi = fmaf(b1, m[i], omb1 * gi);
  float vi, den;
  if (kind == 1) {
    vi = fmaxf(b2 * v[i], fabsf(gi));
    den = vi + eps;
  } else {
    vi = fmaf(b2, v[i], omb2 * gi * gi);
    den = sqrtf(vi) + eps;
  }
  m[i] = mi;
  v[i] = vi;
  w[i] = wd * w[i] - lr * mi / den;
}

extern "C" __global__ void __launch_bounds__(DLF_THREADS)
adam_step_f32(float* w, float* m, float* v, const float* g, long long n, int kind, float lr, float b1, float omb1,
              float b2, float omb2, float eps, float wd) {
  for (long long i = grid_stride_begin(); i < n; i += grid_stride_step())
    adam_update(w, m, v, g, i, kind, lr, b1, omb1, b2, omb2, eps, wd);
}

// adam_step_lr_f32 is adam_step_f32 with the learning rate read from device memory (lr[0]), so that
// a captured update (a CUDA graph) takes the rate written before each replay.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
adam_step_lr_f32(float* w, float* m, float* v, const float* g, long long n, int kind, const float* __restrict__ lr,
                 float b1, float omb1, float b2, float omb2, float eps, float wd) {
  const float rate = lr[0];
  for (long long i = grid_stride_begin(); i < n; i += grid_stride_step())
    adam_update(w, m, v, g, i, kind, rate, b1, omb1, b2, omb2, eps, wd);
}
