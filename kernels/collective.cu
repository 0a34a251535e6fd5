// collective.cu: the reduction step of the ring all-reduce (tensor/collective). A received slice
// sits in the receiver's staging buffer; the kernel folds it into the receiver's own buffer.
// Slices start at arbitrary element offsets, so the kernel makes no float4 alignment assumption.
#include "common.cuh"

// ring_reduce_f32: dst[i] = (dst[i] + src[i])·scale for i < n. scale is 1 except on the last
// reduce-scatter step of an averaging all-reduce (1/N), where the chunk owner finalises the mean
// before the all-gather copies it; the add and the multiply are separate roundings, as in the CPU
// ring (HostRing), so both produce the same float32 values.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
ring_reduce_f32(float* dst, const float* __restrict__ src, long long n, float scale) {
  const long long step = grid_stride_step();
  for (long long i = grid_stride_begin(); i < n; i += step) {
    // An add then a multiply: no a·b + c pattern, so nvcc cannot contract them into an FMA.
    const float s = dst[i] + src[i];
    dst[i] = scale == 1.0f ? s : s * scale;
  }
}

// scale_f32: x[i] = x[i]·scale for i < n. It finishes an averaging all-reduce whose sum another
// library computed (NCCL's ncclSum over processes, tensor/collective/nccl): the sum then one
// multiply, the same two roundings as ring_reduce_f32's last step, so the mean has the same bits as
// the in-process ring's for two ranks.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
scale_f32(float* x, long long n, float scale) {
  const long long step = grid_stride_step();
  for (long long i = grid_stride_begin(); i < n; i += step) x[i] = x[i] * scale;
}
