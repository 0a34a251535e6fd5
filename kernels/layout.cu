// layout.cu: Glow's space-to-channel squeeze and its inverse (dlf-spec §2.2), the twins of
// tensor.Backend's Squeeze2 and Unsqueeze2: for src u [N,H,W,C] and s [N,H/2,W/2,4C],
//   s[n, i, j, c·4 + dy·2 + dx] = u[n, 2i+dy, 2j+dx, c].
// One thread per output element, so writes are coalesced; the reads gather from two input rows and
// are served by L1/L2. Pure data movement: both directions are exact.
#include "common.cuh"

// squeeze2_f32: dst [N,H/2,W/2,4C] from src [N,H,W,C]; total = N·H·W·C. H and W are even.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
squeeze2_f32(float* dst, const float* src, long long total, int H, int W, int C) {
  const int W2 = W >> 1, H2 = H >> 1, C4 = 4 * C;
  for (long long o = grid_stride_begin(); o < total; o += grid_stride_step()) {
    const long long pos = div64(o, C4);         // (n, i, j) of the squeezed tensor
    const int oc = (int)(o - pos * C4);   // c·4 + dy·2 + dx
    const int c = oc >> 2, dy = (oc >> 1) & 1, dx = oc & 1;
    const long long nq = div64(pos, W2);        // n·H2 + i
    const int j = (int)(pos - nq * W2);
    const long long n = div64(nq, H2);
    const int i = (int)(nq - n * H2);
    dst[o] = src[((n * H + 2 * i + dy) * W + 2 * j + dx) * C + c];
  }
}

// unsqueeze2_f32: dst [N,2H,2W,C] from src [N,H,W,4C]; total = N·4·H·W·C; H, W, C are dst's halves'
// source sizes: H, W of src and C of dst.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
unsqueeze2_f32(float* dst, const float* src, long long total, int H, int W, int C) {
  const int W2 = 2 * W, H2 = 2 * H;
  for (long long o = grid_stride_begin(); o < total; o += grid_stride_step()) {
    const long long pos = div64(o, C);          // (n, y, x) of the unsqueezed tensor
    const int c = (int)(o - pos * C);
    const long long ny = div64(pos, W2);        // n·2H + y
    const int x = (int)(pos - ny * W2);
    const long long n = div64(ny, H2);
    const int y = (int)(ny - n * H2);
    dst[o] = src[((n * H + (y >> 1)) * W + (x >> 1)) * (4LL * C) + c * 4 + (y & 1) * 2 + (x & 1)];
  }
}

// unpack_u8_f32: dst[i] = src[i] >> shift for bytes src (an image batch uploaded as raw bytes, four
// per float32 word of the tensor that holds them): the conversion the host used to do, exact.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
unpack_u8_f32(float* __restrict__ dst, const unsigned char* __restrict__ src, long long n, int shift) {
  for (long long i = grid_stride_begin(); i < n; i += grid_stride_step()) dst[i] = (float)(src[i] >> shift);
}
