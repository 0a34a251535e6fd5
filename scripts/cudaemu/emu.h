// emu.h: the kernel-side half of dlf's CUDA emulator. build.sh force-includes it (g++ -include emu.h)
// into every kernels/*.cu, which is then compiled as ordinary host C++17: the CUDA qualifiers become
// nothing (or `static` for __shared__), threadIdx/blockIdx/blockDim/gridDim become globals that the
// scheduler (fiber.cpp) sets before it resumes a thread, and __syncthreads and the warp shuffles
// become barriers between fibers.
//
// Execution model: every CUDA thread of a block is a fiber (a user-space stack), and the blocks of a
// grid run one after another on the launching OS thread. One block at a time is why __shared__ can
// simply be `static`: only one block's threads ever use it. Fibers rather than a loop over threads,
// because a kernel may stop at __syncthreads in the middle of a loop with live locals, and only a
// separate stack per thread keeps those; OS threads would cost a futex round trip per barrier and
// per thread.
//
// What it does NOT model (a kernel can pass here and still fail on a GPU):
//   * memory ordering and races: fibers switch only at barriers, so memory is sequentially
//     consistent and a missing __syncthreads is only caught when thread order happens to expose it;
//     no atomics, no inter-block concurrency (blocks run in x, y, z order, never at once);
//   * shared memory contents: it is zeroed once at load and keeps the previous block's values, so a
//     read of shared memory the block did not write goes unnoticed;
//   * timing, occupancy, ptxas register allocation and spills, launch bounds beyond a size check;
//   * floating point details: no FMA contraction (-ffp-contract=off; nvcc contracts a*b+c by
//     default), glibc's expf/logf/tanhf instead of CUDA's (both within a few ulp), and the fast
//     intrinsics below (__expf, rsqrtf, ...) are the accurate functions, not the GPU approximations;
//   * tensor cores: mma.sync m16n8k8 TF32 is modeled lane by lane from the PTX ISA's fragment layout
//     (operands truncated to their top 19 bits as the hardware reads them, exact products, fp32
//     sums in k order); the hardware's internal summation order is undocumented, so a GPU may
//     differ in the last bits of a sum (within the conformance suite's derived bound);
//   * misaligned vector accesses: a float4 load from an address that is not 16-byte aligned faults
//     on a GPU (CUDA_ERROR_MISALIGNED_ADDRESS); here it either works (g++ chose an unaligned load)
//     or faults as CUDA_ERROR_ILLEGAL_ADDRESS with a message saying so.
// A wild pointer is caught two ways (see driver.cpp): a pointer argument that lies in no allocation,
// checked at launch, and an access that faults at run time (allocations sit against PROT_NONE guard
// pages); both set the sticky CUDA_ERROR_ILLEGAL_ADDRESS (700) that a real GPU reports.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <math.h>  // after <cmath>: brings the float overloads (exp(float) is float), as CUDA has

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

struct uint3 {
  unsigned x, y, z;
};
typedef uint3 dim3;

#pragma GCC visibility push(hidden)
namespace emu {
// Set by the scheduler before it resumes a fiber. Kernel code re-reads them after every barrier
// because the barrier functions are opaque calls into another translation unit (never build this
// with LTO: the compiler could then cache threadIdx across a __syncthreads).
extern uint3 threadIdx_, blockIdx_, blockDim_, gridDim_;
void syncthreads();
void syncwarp();
// A warp exchange: every lane of the warp publishes size bytes, waits for the whole warp, reads
// another lane's value, and waits again so that no lane overwrites its slot before all have read.
void warp_publish(const void* v, int size);
void warp_read(int lane, void* out, int size);
void warp_done();
// mma_m16n8k8_tf32 is mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 with C = D: a warp
// barrier at which every lane hands in its fragment registers; the whole warp's D is then computed
// from the PTX ISA's fragment layout (fiber.cpp) and each lane gets its four values back. A lane
// that is missing, or that is at another warp collective, fails the launch.
void mma_m16n8k8_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]);
// cvt_rna_tf32 is cvt.rna.tf32.f32 on a float's bits: round to nearest with ties away from zero at
// the 13th mantissa bit (add 0x1000, clear the low 13 bits); Inf and NaN unchanged.
static inline unsigned cvt_rna_tf32(unsigned bits) {
  if ((bits & 0x7f800000u) == 0x7f800000u) return bits;
  return (bits + 0x1000u) & 0xffffe000u;
}
}  // namespace emu
#pragma GCC visibility pop

#define threadIdx (emu::threadIdx_)
#define blockIdx (emu::blockIdx_)
#define blockDim (emu::blockDim_)
#define gridDim (emu::gridDim_)
static constexpr int warpSize = 32;

static inline void __syncthreads() { emu::syncthreads(); }
static inline void __syncwarp(unsigned = 0xffffffffu) { emu::syncwarp(); }

namespace emu {
// lane_id is the lane of the current thread: warps are consecutive linear thread ids, as on a GPU.
static inline int lane_id() {
  return (int)((threadIdx_.z * blockDim_.y + threadIdx_.y) * blockDim_.x + threadIdx_.x) & 31;
}
// shfl returns the value that lane src (0..31) of the caller's warp passed in, or the caller's own
// v when inSegment is false: __shfl_*_sync return the caller's value for a source lane outside the
// caller's width-lane segment.
template <class T>
static inline T shfl(T v, int src, bool inSegment) {
  static_assert(sizeof(T) <= 16, "emu: warp shuffle of a value wider than 16 bytes");
  warp_publish(&v, sizeof(T));
  T r = v;
  if (inSegment) warp_read(src, &r, sizeof(T));
  warp_done();
  return r;
}
}  // namespace emu

template <class T>
static inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
  const int lane = emu::lane_id(), base = lane & ~(width - 1);
  return emu::shfl(v, base + (src & (width - 1)), true);
}
template <class T>
static inline T __shfl_down_sync(unsigned, T v, unsigned d, int width = 32) {
  const int lane = emu::lane_id(), base = lane & ~(width - 1);
  return emu::shfl(v, lane + (int)d, lane + (int)d < base + width);
}
template <class T>
static inline T __shfl_up_sync(unsigned, T v, unsigned d, int width = 32) {
  const int lane = emu::lane_id(), base = lane & ~(width - 1);
  return emu::shfl(v, lane - (int)d, lane - (int)d >= base);
}
// As CUDA specifies, a butterfly may read earlier segments but not later ones.
template <class T>
static inline T __shfl_xor_sync(unsigned, T v, int m, int width = 32) {
  const int lane = emu::lane_id(), base = lane & ~(width - 1);
  return emu::shfl(v, lane ^ m, (lane ^ m) < base + width);
}

// Vector types with CUDA's sizes and alignments.
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) int2 { int x, y; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned x, y; };
struct __attribute__((aligned(16))) uint4 { unsigned x, y, z, w; };
struct __attribute__((aligned(16))) double2 { double x, y; };
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return {x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
static inline double2 make_double2(double x, double y) { return {x, y}; }

// min/max with CUDA's overload set (math_functions.hpp): mixed signed/unsigned compares as unsigned,
// mixed float/double as double. A call CUDA finds ambiguous is ambiguous here too.
#define EMU_MINMAX(R, A, B)                                                    \
  static inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; }          \
  static inline R max(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; }
EMU_MINMAX(int, int, int)
EMU_MINMAX(unsigned, unsigned, unsigned)
EMU_MINMAX(unsigned, int, unsigned)
EMU_MINMAX(unsigned, unsigned, int)
EMU_MINMAX(long, long, long)
EMU_MINMAX(unsigned long, unsigned long, unsigned long)
EMU_MINMAX(unsigned long, long, unsigned long)
EMU_MINMAX(unsigned long, unsigned long, long)
EMU_MINMAX(long long, long long, long long)
EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
EMU_MINMAX(unsigned long long, long long, unsigned long long)
EMU_MINMAX(unsigned long long, unsigned long long, long long)
#undef EMU_MINMAX
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }
static inline double min(float a, double b) { return fmin(a, b); }
static inline double max(float a, double b) { return fmax(a, b); }
static inline double min(double a, float b) { return fmin(a, b); }
static inline double max(double a, float b) { return fmax(a, b); }

// Integer and bit-cast intrinsics (exact).
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
static inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
static inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline float __int_as_float(int x) { float f; memcpy(&f, &x, 4); return f; }
static inline int __float_as_int(float f) { int x; memcpy(&x, &f, 4); return x; }
static inline float __uint_as_float(unsigned x) { float f; memcpy(&f, &x, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned x; memcpy(&x, &f, 4); return x; }
static inline double __longlong_as_double(long long x) { double d; memcpy(&d, &x, 8); return d; }
static inline long long __double_as_longlong(double d) { long long x; memcpy(&x, &d, 8); return x; }
template <class T>
static inline T __ldg(const T* p) { return *p; }

// Fast-math intrinsics, evaluated accurately (the GPU's approximations are not modeled). __expf
// and __logf need nothing: glibc's <math.h> declares them as aliases of expf and logf.
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return x != x ? 0.0f : fminf(fmaxf(x, 0.0f), 1.0f); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
// Round-to-nearest products that the CUDA compiler may not contract into an FMA; the emulator is
// built with -ffp-contract=off, so a plain product is exactly that.
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
