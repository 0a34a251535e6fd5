// elementwise.cu: the twins of tensor.Backend's Binary, Unary, UnaryGrad and Axpy (tensor/cpu's
// elementwise.go). All are memory-bound grid-stride loops over float4 groups plus a scalar tail.
//
// float4 accesses assume every tensor base pointer is 16-byte aligned, which the CUDA backend's
// allocator guarantees (cuMemAlloc returns 256-byte-aligned blocks and tensors never start inside
// one). dst may alias an input: each thread reads all inputs of its elements before writing them,
// so no pointer is declared __restrict__.
#include "common.cuh"

// Op codes are tensor.BinaryOp, tensor.UnaryOp and tensor.UnaryGradOp values.
enum { kAdd = 1, kSub, kMul, kDiv };
enum { kExp = 1, kLog, kTanh, kSigmoid, kRelu, kSquare, kSqrt, kNeg, kAbs, kScale, kAddConst, kClamp };
enum { kReluGrad = 1, kTanhGrad, kSigmoidGrad, kClampGrad, kAbsGrad };

template <int OP>
__device__ __forceinline__ float binop(float a, float b) {
  if (OP == kAdd) return a + b;
  if (OP == kSub) return a - b;
  if (OP == kMul) return a * b;
  return a / b;  // IEEE division (div.rn.f32)
}

// Broadcast modes of b, chosen by binary_f32 once (uniform over the grid).
enum { kBFull, kBScalar, kBRow4, kBGroup4, kBGeneral };

template <int OP>
__device__ __forceinline__ void binary_body(float* dst, const float* a, const float* b, long long n,
                                            long long div, long long mod) {
  int bm;
  if (div == 1 && mod == n) bm = kBFull;
  else if (mod == 1) bm = kBScalar;
  else if (div == 1 && (mod & 3) == 0) bm = kBRow4;  // b[i%mod]: four lanes contiguous, aligned
  else if ((div & 3) == 0) bm = kBGroup4;            // one b value per float4 group
  else bm = kBGeneral;
  const long long n4 = n >> 2;
  const long long start = grid_stride_begin(), step = grid_stride_step();
  const float4* a4 = reinterpret_cast<const float4*>(a);
  const float4* b4 = reinterpret_cast<const float4*>(b);
  float4* d4 = reinterpret_cast<float4*>(dst);
  for (long long v = start; v < n4; v += step) {
    const long long i = v << 2;
    const float4 x = a4[v];
    float4 y;
    switch (bm) {
      case kBFull:
        y = b4[v];
        break;
      case kBScalar:
        y.x = y.y = y.z = y.w = b[0];
        break;
      case kBRow4:
        y = b4[mod64(i, mod) >> 2];
        break;
      case kBGroup4:
        y.x = y.y = y.z = y.w = b[mod64(div64(i, div), mod)];
        break;
      default:
        y.x = b[mod64(div64(i, div), mod)];
        y.y = b[mod64(div64(i + 1, div), mod)];
        y.z = b[mod64(div64(i + 2, div), mod)];
        y.w = b[mod64(div64(i + 3, div), mod)];
    }
    float4 r;
    r.x = binop<OP>(x.x, y.x);
    r.y = binop<OP>(x.y, y.y);
    r.z = binop<OP>(x.z, y.z);
    r.w = binop<OP>(x.w, y.w);
    d4[v] = r;
  }
  // Tail: the last n%4 elements, one per thread of the first threads.
  const long long i = (n4 << 2) + start;
  if (i < n) dst[i] = binop<OP>(a[i], b[mod64(div64(i, div), mod)]);
}

// binary_f32: dst[i] = a[i] op b[(i/div) % mod] for i < n (tensor.Broadcast).
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
binary_f32(float* dst, const float* a, const float* b, long long n, long long div, long long mod, int op) {
  switch (op) {
    case kAdd: binary_body<kAdd>(dst, a, b, n, div, mod); break;
    case kSub: binary_body<kSub>(dst, a, b, n, div, mod); break;
    case kMul: binary_body<kMul>(dst, a, b, n, div, mod); break;
    default: binary_body<kDiv>(dst, a, b, n, div, mod); break;
  }
}

template <int OP>
__device__ __forceinline__ float unop(float x, float p1, float p2) {
  if (OP == kExp) return expf(x);
  if (OP == kLog) return logf(x);
  if (OP == kTanh) return tanhf(x);
  if (OP == kSigmoid) return sigmoid_f(x);
  if (OP == kRelu) return x > 0.0f ? x : 0.0f;  // NaN → 0, like the CPU twin's !(v > 0)
  if (OP == kSquare) return x * x;
  if (OP == kSqrt) return sqrtf(x);
  if (OP == kNeg) return -x;
  if (OP == kAbs) return fabsf(x);
  if (OP == kScale) return p1 * x;
  if (OP == kAddConst) return x + p1;
  // Clamp as Go's min(max(x, p1), p2): a NaN x stays NaN.
  float v = x;
  if (v < p1) v = p1;
  if (v > p2) v = p2;
  return v;
}

template <int OP>
__device__ __forceinline__ void unary_body(float* dst, const float* x, long long n, float p1, float p2) {
  const long long n4 = n >> 2;
  const long long start = grid_stride_begin(), step = grid_stride_step();
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float4* d4 = reinterpret_cast<float4*>(dst);
  for (long long v = start; v < n4; v += step) {
    const float4 a = x4[v];
    float4 r;
    r.x = unop<OP>(a.x, p1, p2);
    r.y = unop<OP>(a.y, p1, p2);
    r.z = unop<OP>(a.z, p1, p2);
    r.w = unop<OP>(a.w, p1, p2);
    d4[v] = r;
  }
  const long long i = (n4 << 2) + start;
  if (i < n) dst[i] = unop<OP>(x[i], p1, p2);
}

// unary_f32: dst[i] = op(x[i]; p1, p2) for i < n (tensor.UnaryOp).
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
unary_f32(float* dst, const float* x, long long n, int op, float p1, float p2) {
  switch (op) {
    case kExp: unary_body<kExp>(dst, x, n, p1, p2); break;
    case kLog: unary_body<kLog>(dst, x, n, p1, p2); break;
    case kTanh: unary_body<kTanh>(dst, x, n, p1, p2); break;
    case kSigmoid: unary_body<kSigmoid>(dst, x, n, p1, p2); break;
    case kRelu: unary_body<kRelu>(dst, x, n, p1, p2); break;
    case kSquare: unary_body<kSquare>(dst, x, n, p1, p2); break;
    case kSqrt: unary_body<kSqrt>(dst, x, n, p1, p2); break;
    case kNeg: unary_body<kNeg>(dst, x, n, p1, p2); break;
    case kAbs: unary_body<kAbs>(dst, x, n, p1, p2); break;
    case kScale: unary_body<kScale>(dst, x, n, p1, p2); break;
    case kAddConst: unary_body<kAddConst>(dst, x, n, p1, p2); break;
    default: unary_body<kClamp>(dst, x, n, p1, p2); break;
  }
}

template <int OP>
__device__ __forceinline__ float gradop(float s, float g, float p1, float p2) {
  if (OP == kReluGrad) return s > 0.0f ? g : 0.0f;
  if (OP == kTanhGrad) return g * (1.0f - s * s);
  if (OP == kSigmoidGrad) return g * s * (1.0f - s);
  if (OP == kClampGrad) return (s >= p1 && s <= p2) ? g : 0.0f;
  // AbsGrad: dy·sign(x) with sign(0) = 0.
  return s > 0.0f ? g : (s < 0.0f ? -g : 0.0f);
}

template <int OP>
__device__ __forceinline__ void unary_grad_body(float* dx, const float* s, const float* dy, long long n,
                                                float p1, float p2) {
  const long long n4 = n >> 2;
  const long long start = grid_stride_begin(), step = grid_stride_step();
  const float4* s4 = reinterpret_cast<const float4*>(s);
  const float4* g4 = reinterpret_cast<const float4*>(dy);
  float4* d4 = reinterpret_cast<float4*>(dx);
  for (long long v = start; v < n4; v += step) {
    const float4 a = s4[v];
    const float4 g = g4[v];
    float4 r;
    r.x = gradop<OP>(a.x, g.x, p1, p2);
    r.y = gradop<OP>(a.y, g.y, p1, p2);
    r.z = gradop<OP>(a.z, g.z, p1, p2);
    r.w = gradop<OP>(a.w, g.w, p1, p2);
    d4[v] = r;
  }
  const long long i = (n4 << 2) + start;
  if (i < n) dx[i] = gradop<OP>(s[i], dy[i], p1, p2);
}

// unary_grad_f32: dx[i] from the saved input/output s[i] and dy[i] (tensor.UnaryGradOp).
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
unary_grad_f32(float* dx, const float* saved, const float* dy, long long n, int op, float p1, float p2) {
  switch (op) {
    case kReluGrad: unary_grad_body<kReluGrad>(dx, saved, dy, n, p1, p2); break;
    case kTanhGrad: unary_grad_body<kTanhGrad>(dx, saved, dy, n, p1, p2); break;
    case kSigmoidGrad: unary_grad_body<kSigmoidGrad>(dx, saved, dy, n, p1, p2); break;
    case kClampGrad: unary_grad_body<kClampGrad>(dx, saved, dy, n, p1, p2); break;
    default: unary_grad_body<kAbsGrad>(dx, saved, dy, n, p1, p2); break;
  }
}

// axpy_f32: y[i] += alpha·x[i] for i < n.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
axpy_f32(float* y, const float* x, long long n, float alpha) {
  const long long n4 = n >> 2;
  const long long start = grid_stride_begin(), step = grid_stride_step();
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float4* y4 = reinterpret_cast<float4*>(y);
  for (long long v = start; v < n4; v += step) {
    const float4 a = x4[v];
    float4 r = y4[v];
    r.x = fmaf(alpha, a.x, r.x);
    r.y = fmaf(alpha, a.y, r.y);
    r.z = fmaf(alpha, a.z, r.z);
    r.w = fmaf(alpha, a.w, r.w);
    y4[v] = r;
  }
  const long long i = (n4 << 2) + start;
  if (i < n) y[i] = fmaf(alpha, x[i], y[i]);
}
