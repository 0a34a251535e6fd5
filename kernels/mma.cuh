// mma.cuh: the TF32 tensor-core variant of gemm.cuh's tile core, used by gemm.cu and conv.cu for
// their *_tf32_* kernels (Precision TF32 on the host). Included only; no extern "C" kernels.
//
// Why mma.sync and not nvcuda::wmma: the PTX ISA documents exactly which matrix element every lane
// holds in each register of mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 (PTX ISA §9.7.14.5,
// "Matrix Fragments for mma.m16n8k8"; shared/reference/graphs-tf32-mpi-nccl.md §2.2), whereas WMMA's
// fragment layout is unspecified. A documented layout is what lets the CPU emulator
// (scripts/cudaemu) model the instruction lane by lane, so a wrong fragment index fails a test here
// instead of on the first GPU; it also lets the fragments come straight from the tiles that
// gemm.cuh's loaders already fill, with no ldmatrix or WMMA staging. nvcc 11.8 emits it for
// compute_80, and the same PTX runs on sm_90 (Hopper's wgmma needs sm_90a and nvcc 12).
//
// The block (256 threads = 8 warps) computes a BM×BN tile like gemm.cuh, with the same loaders,
// the same double-buffered k-major shared tiles (As[k][m], Bs[k][n]) and one __syncthreads per
// stage. What differs:
//   * operands are rounded to TF32 once, on their way into shared memory, with cvt.rna.tf32.f32
//     (round to nearest, ties away from zero) — the rounding tensor.RoundTF32 and the CPU backend's
//     TF32 mode apply, so both backends multiply the same values;
//   * shared rows are padded by 8 floats instead of 4: a fragment read touches rows k = t and t+4
//     (t = lane%4) and columns g = lane/4, at bank (t·(BM+8) + g) mod 32 = 8t + g — all 32 banks
//     distinct, so fragment loads are conflict-free;
//   * the warps form a WM×WN grid; each owns a (BM/WM)×(BN/WN) warp tile made of MI×NI mma tiles of
//     16×8 and keeps MI·NI·4 fp32 accumulators per lane (64 for the large tile, as the FP32 path's
//     8×8 micro-tile);
//   * per k-step of 8, a warp loads MI A fragments and NI B fragments and issues MI·NI mma.sync.
// Accumulation is fp32 (the tensor core's internal order within one mma is not documented; the
// emulator models it as k-ordered fp32 adds of exact products). Results are deterministic for a
// given launch shape, as on the FP32 path; they differ from it by the TF32 rounding of the operands.
#pragma once
#include "gemm.cuh"

// tf32_round returns x rounded to TF32 as cvt.rna.tf32.f32 does: the float's bit pattern with its
// low 13 mantissa bits cleared after adding half of that unit (ties away from zero); Inf and NaN
// pass unchanged.
__device__ __forceinline__ float tf32_round(float x) {
#ifdef __CUDACC__
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return __uint_as_float(r);
#else
  return __uint_as_float(emu::cvt_rna_tf32(__float_as_uint(x)));
#endif
}

__device__ __forceinline__ void tf32_round4(float (&r)[4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) r[j] = tf32_round(r[j]);
}

// mma_tf32 is d += A·B for one 16×8×8 warp tile: a holds this lane's four A elements (rows g, g+8;
// columns t, t+4), b its two B elements (k = t, t+4; column g), d its four accumulators (row g
// columns 2t, 2t+1; row g+8 the same), with g = lane/4, t = lane%4. All 32 lanes must call it
// together (a warp-collective instruction).
__device__ __forceinline__ void mma_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
#ifdef __CUDACC__
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  emu::mma_m16n8k8_tf32(d, a, b);
#endif
}

// TcCfg describes a tensor-core tile: BM×BN per block, BK values of k per stage (a multiple of 8),
// warps arranged WM×WN. The names the loaders and kernels use (BM, BN, BK, SA, SB, Acc) match
// TileCfg's, so gemm.cu and conv.cu instantiate the same kernel bodies with either.
template <int BM_, int BN_, int BK_, int WM_, int WN_>
struct TcCfg {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, WM = WM_, WN = WN_;
  static constexpr int WTM = BM / WM, WTN = BN / WN;  // warp tile
  static constexpr int MI = WTM / 16, NI = WTN / 8;   // mma tiles per warp tile
  static constexpr int SA = BM + 8;                   // padded shared row lengths (see above)
  static constexpr int SB = BN + 8;
  typedef float Acc[MI][NI][4];
  static_assert(WM * WN == 8, "a tensor-core tile uses 8 warps (256 threads)");
  static_assert(WTM % 16 == 0 && WTN % 8 == 0 && BK % 8 == 0, "warp tiles are made of 16×8×8 mma tiles");
  static_assert(BM * BK / 4 <= 256 && BN * BK / 4 <= 256, "one float4 piece per thread and operand");
  static_assert(SA % 32 == 8 && SB % 32 == 8, "fragment reads are conflict-free only with rows ≡ 8 mod 32");
};

// The tensor-core tiles, with the same block shapes (and so the same host tiling policy) as the FP32
// ones. Large: warp tile 64×32 (MI 4, NI 4: 16 mma per 8 fragment loads per k-step). Small: 64×64
// with BK 16, warp tile 32×16. Narrow (N ≤ 32): 128×32, warp tile 32×16.
typedef TcCfg<128, 128, 8, 2, 4> TcL;
typedef TcCfg<64, 64, 16, 2, 4> TcS;
typedef TcCfg<128, 32, 8, 4, 2> TcN;

// gemm_tile (tensor-core overload, chosen by the accumulator's shape) accumulates the block's tile
// over k in [kBegin, kEnd) into acc, as gemm.cuh's FP32 gemm_tile does.
template <class C, class LA, class LB>
__device__ __forceinline__ void gemm_tile(const LA& la, const LB& lb, int kBegin, int kEnd,
                                          float (&acc)[C::MI][C::NI][4]) {
  __shared__ __align__(16) float As[2][C::BK * C::SA];
  __shared__ __align__(16) float Bs[2][C::BK * C::SB];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int wm = (warp / C::WN) * C::WTM + g, wn = (warp % C::WN) * C::WTN + g;
#pragma unroll
  for (int i = 0; i < C::MI; ++i)
#pragma unroll
    for (int j = 0; j < C::NI; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[i][j][q] = 0.0f;

  const int tiles = kEnd > kBegin ? (kEnd - kBegin + C::BK - 1) / C::BK : 0;
  if (tiles > 0) {
    float ra[4], rb[4];
    la.load(kBegin, ra);
    lb.load(kBegin, rb);
    tf32_round4(ra);
    tf32_round4(rb);
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
      for (int kk = 0; kk < C::BK; kk += 8) {
        const float* a0 = as + (kk + t) * C::SA + wm;  // k = kk+t; k+4 is 4·SA further
        const float* b0 = bs + (kk + t) * C::SB + wn;
        unsigned af[C::MI][4], bf[C::NI][2];
#pragma unroll
        for (int i = 0; i < C::MI; ++i) {
          af[i][0] = __float_as_uint(a0[i * 16]);                 // (row g,   k t)
          af[i][1] = __float_as_uint(a0[i * 16 + 8]);             // (row g+8, k t)
          af[i][2] = __float_as_uint(a0[4 * C::SA + i * 16]);     // (row g,   k t+4)
          af[i][3] = __float_as_uint(a0[4 * C::SA + i * 16 + 8]); // (row g+8, k t+4)
        }
#pragma unroll
        for (int j = 0; j < C::NI; ++j) {
          bf[j][0] = __float_as_uint(b0[j * 8]);             // (k t,   column g)
          bf[j][1] = __float_as_uint(b0[4 * C::SB + j * 8]); // (k t+4, column g)
        }
#pragma unroll
        for (int i = 0; i < C::MI; ++i)
#pragma unroll
          for (int j = 0; j < C::NI; ++j) mma_tf32(acc[i][j], af[i], bf[j]);
      }
      if (more) {
        tf32_round4(ra);  // next stage
        tf32_round4(rb);
        la.store(As[cur ^ 1], ra);
        lb.store(Bs[cur ^ 1], rb);
      }
      __syncthreads();  // stage end
    }
  }
}

// store_tile (tensor-core overload) hands the block's tile at (m0, n0) to epi two columns at a time:
// a lane holds columns 2t, 2t+1 of rows g and g+8 of each mma tile.
template <class C, class E>
__device__ __forceinline__ void store_tile(const float (&acc)[C::MI][C::NI][4], const E& epi, int m0, int n0) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int m = m0 + (warp / C::WN) * C::WTM + g, n = n0 + (warp % C::WN) * C::WTN + 2 * t;
#pragma unroll
  for (int i = 0; i < C::MI; ++i)
#pragma unroll
    for (int j = 0; j < C::NI; ++j) {
      epi.store2(m + i * 16, n + j * 8, acc[i][j][0], acc[i][j][1]);
      epi.store2(m + i * 16 + 8, n + j * 8, acc[i][j][2], acc[i][j][3]);
    }
}
