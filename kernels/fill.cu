// Fill and copy kernels: the data-movement family of dlf's CUDA backend.
//
// Every kernel is a grid-stride loop with 64-bit indexing, so any grid size
// covers any length (tensors past 2^31 elements included); a grid of a few
// blocks per SM saturates memory bandwidth. Built with
//   nvcc -ptx -arch=compute_80 -O3 -o fill.ptx fill.cu
// and launched through the generated launchers in launch_gen.go.

// Index of this thread in the whole grid, and the whole grid's size.
__device__ __forceinline__ long long grid_index() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long grid_stride() {
    return (long long)gridDim.x * blockDim.x;
}

template <typename T>
__device__ __forceinline__ void fill_impl(T* __restrict__ dst, long long n, T v) {
    const long long stride = grid_stride();
    for (long long i = grid_index(); i < n; i += stride) {
        dst[i] = v;
    }
}

template <typename T>
__device__ __forceinline__ void copy_impl(T* __restrict__ dst, const T* __restrict__ src, long long n) {
    const long long stride = grid_stride();
    for (long long i = grid_index(); i < n; i += stride) {
        dst[i] = src[i];
    }
}

// Element i of the rows x c slice maps to row i / c, channel i % c. A 32-bit
// unsigned division is several times cheaper than a 64-bit one on the GPU,
// so the common case (fewer than 2^32 elements moved) takes that path.
template <typename T>
__device__ __forceinline__ void copy_channels_impl(T* __restrict__ dst, const T* __restrict__ src,
                                                   long long rows, int dst_c, int dst_off,
                                                   int src_c, int src_off, int c) {
    const long long total = rows * (long long)c;
    const long long stride = grid_stride();
    if (total <= 0xffffffffLL) {
        const unsigned uc = (unsigned)c;
        for (long long i = grid_index(); i < total; i += stride) {
            const unsigned ui = (unsigned)i;
            const unsigned row = ui / uc;
            const unsigned j = ui - row * uc;
            dst[(long long)row * dst_c + dst_off + j] = src[(long long)row * src_c + src_off + j];
        }
    } else {
        for (long long i = grid_index(); i < total; i += stride) {
            const long long row = i / c;
            const long long j = i - row * c;
            dst[row * dst_c + dst_off + j] = src[row * src_c + src_off + j];
        }
    }
}

// Sets dst[0..n) to v.
extern "C" __global__ void fill_f32(float* __restrict__ dst, long long n, float v) {
    fill_impl(dst, n, v);
}

// Copies n floats from src to dst; the buffers must not overlap.
extern "C" __global__ void copy_f32(float* __restrict__ dst, const float* __restrict__ src, long long n) {
    copy_impl(dst, src, n);
}

// Copies a channel slice between row-major [rows, channels] tensors (NHWC
// with rows = N*H*W): for every row and j in [0, c),
//   dst[row*dst_c + dst_off + j] = src[row*src_c + src_off + j].
// This splits and concatenates channel partitions (the DLT, split priors)
// without a transpose. dst and src must not overlap.
extern "C" __global__ void copy_channels_f32(float* __restrict__ dst, const float* __restrict__ src,
                                             long long rows, int dst_c, int dst_off,
                                             int src_c, int src_off, int c) {
    copy_channels_impl(dst, src, rows, dst_c, dst_off, src_c, src_off, c);
}
