// flow.cu: the fused kernels of the flow layers, twins of tensor.Backend's ActNorm*, Affine* and
// Gaussian* methods (tensor/cpu's actnorm.go, affine.go, gaussian.go; the formulas are repeated there
// and in tensor/backend.go). Each reads every input once and writes every output once; their
// reductions (logdets, log-probabilities, parameter gradients) are deterministic two-pass sums:
// per-(row, block) or per-(column, block) double partials with fixed owners (common.cuh's RowPart and
// ColPart), finished in index order by reduce_finish_f32 / sum2_finish_f32 (reduce.cu) or by the
// dedicated *_finish kernels below. Launch shapes depend only on tensor shapes.
//
// Per-example kernels use the grid (N, P): block (n, p) owns elements [p·chunk, (p+1)·chunk) of
// example n's L = H·W·C values, so the example index is blockIdx.x and needs no division.
// Outputs may alias inputs of the same shape (in-place use): each thread reads all inputs of an
// element before writing its outputs.
#include "common.cuh"

// ln(2π), the normalising constant of the Gaussian log-density.
#define LN_2PI 1.8378770664093454835606594728112352797227949472755668

// ---------------------------------------------------------------------------------------------
// ActNorm (Glow §3.1): y = (x + b_c)·e_c, e_c = exp(s·logs_c); logdet = H·W·Σ_c s·logs_c.

// actnorm_fwd_f32: out = (in + bias[c])·exp(s·logs[c]) or, with inverse, in·exp(−s·logs[c]) − bias[c],
// for i < n with c = i % C.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
actnorm_fwd_f32(float* out, const float* in, const float* bias, const float* logs, long long n, int C, float scale,
                int inverse) {
  const float sgn = inverse ? -1.0f : 1.0f;
  for (long long i = grid_stride_begin(); i < n; i += grid_stride_step()) {
    const int c = (int)mod64(i, C);
    const float e = expf(sgn * (scale * logs[c]));
    const float v = in[i];
    out[i] = inverse ? fmaf(v, e, -bias[c]) : (v + bias[c]) * e;
  }
}

// chan_logdet_f32: one block. ld[n] += sign·hw·Σ_c ℓ_c for n < N, where ℓ_c = s·v[c] (mode 0: actnorm,
// v = logs) or the affine log-scale of r = v[2c+1] (modes 1 and 2: ScaleTanh, ScaleSigmoid; v = the
// PerChannel h vector).
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
chan_logdet_f32(float* ld, const float* v, const float* alpha, const float* beta, int N, int C, int mode, float scale,
                long long hw, float sign) {
  __shared__ double sh[32];
  __shared__ float total;
  const LogScale ls = load_scale(mode, alpha, beta);
  double acc[1] = {0.0};
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    if (mode == 0) {
      acc[0] += (double)scale * (double)v[c];
    } else {
      float l, e, t, dl;
      ls.eval(v[2 * c + 1], l, e, t, dl);
      acc[0] += l;
    }
  }
  block_sum<1>(acc, sh);
  if (threadIdx.x == 0) total = (float)((double)sign * (double)hw * acc[0]);
  __syncthreads();
  for (int n = threadIdx.x; n < N; n += blockDim.x) ld[n] += total;
}

// chan_scale_bwd_f32: the data pass of ActNormBackward and of the PerChannel AffineBackward. Over
// rows r < R of [R, C] tensors, with e_c from mode (0: exp(s·v[c]); 1, 2: affine e^ℓ of v[2c+1]):
//   dx = dy·e_c;  partials of Σ_r dy (q = 0) and Σ_r dy·y (q = 1) per column (ColPart layout:
//   part[(q·P + p)·C + c]).
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
chan_scale_bwd_f32(float* dx, double* part, const float* dy, const float* y, const float* v, const float* alpha,
                   const float* beta, long long R, int C, long long chunk, int mode, float scale) {
  __shared__ double sh[2 * DLF_THREADS];
  const ColPart cp(R, C, chunk);
  double acc[2] = {0.0, 0.0};
  if (cp.active) {
    float e;
    if (mode == 0) {
      e = expf(scale * v[cp.col]);
    } else {
      const LogScale ls = load_scale(mode, alpha, beta);
      float l, t, dl;
      ls.eval(v[2 * cp.col + 1], l, e, t, dl);
    }
    for (long long r = cp.begin + cp.g; r < cp.end; r += cp.G) {
      const long long i = r * C + cp.col;
      const float g = dy[i];
      const float yy = y[i];
      acc[0] += g;
      acc[1] += (double)g * (double)yy;
      dx[i] = g * e;
    }
  }
  cp.store<2>(acc, sh, part, C);
}

// actnorm_bwd_finish_f32: grid-stride over channels. With S1_c, S2_c the column sums of
// chan_scale_bwd_f32 (P partials each):
//   dbias_c = e_c·S1_c,  dlogs_c = s·S2_c + s·hw·Σ_n dld_n   (dld may be null: no logdet gradient).
// Every block adds Σ_n dld_n itself (N is a batch size: cheap), in the same fixed order.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
actnorm_bwd_finish_f32(float* dbias, float* dlogs, const double* part, const float* logs, const float* dld, int N,
                       int C, int parts, float scale, long long hw) {
  __shared__ double sh[32];
  __shared__ double sdld;
  double acc[1] = {0.0};
  if (dld) {
    for (int n = threadIdx.x; n < N; n += blockDim.x) acc[0] += dld[n];
  }
  block_sum<1>(acc, sh);
  if (threadIdx.x == 0) sdld = acc[0];
  __syncthreads();
  const double s = scale;
  for (long long c = grid_stride_begin(); c < C; c += grid_stride_step()) {
    double s1 = 0.0, s2 = 0.0;
    for (int p = 0; p < parts; ++p) {
      s1 += part[(long long)p * C + c];
      s2 += part[((long long)parts + p) * C + c];
    }
    dbias[c] = (float)(exp(s * (double)logs[c]) * s1);
    dlogs[c] = (float)(s * s2 + s * (double)hw * sdld);
  }
}

// ---------------------------------------------------------------------------------------------
// Affine transform of a DLT part / coupling: y = (x + μ)·e^ℓ, μ = h[…,2c], r = h[…,2c+1],
// ℓ = α·tanh r + β (mode 1) or log σ(r + 2) (mode 2); logdet[n] += Σ ℓ.

// affine_fwd_f32: grid (N, P). out = (in + μ)·e^ℓ, or with inverse out = in / e^ℓ − μ. With
// perChannel, (μ, r) = (h[2c], h[2c+1]) for every position; otherwise h has 2C values per position
// and element i's pair is h[2i], h[2i+1]. When part is non-null, block (n, p) writes Σ ℓ over its
// elements to part[n·P + p].
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
affine_fwd_f32(float* out, double* part, const float* in, const float* h, const float* alpha, const float* beta,
               long long L, int C, long long chunk, int mode, int perChannel, int inverse) {
  __shared__ double sh[32];
  const RowPart rp(L, chunk);
  const LogScale ls = load_scale(mode, alpha, beta);
  const long long base = rp.row * L;
  double acc[1] = {0.0};
  for (long long j = rp.begin + threadIdx.x; j < rp.end; j += blockDim.x) {
    const long long i = base + j;
    const long long hi = perChannel ? 2 * mod64(j, C) : 2 * i;
    const float mu = h[hi];
    float l, e, t, dl;
    ls.eval(h[hi + 1], l, e, t, dl);
    const float v = in[i];
    out[i] = inverse ? v / e - mu : (v + mu) * e;
    acc[0] += l;
  }
  if (part) rp.store<1>(acc, sh, part);
}

// affine_bwd_f32: grid (N, P), not PerChannel. With e = e^ℓ and dℓ = dy·y + dld_n:
//   dx = dy·e,  dh[2i] = dμ = dy·e,  dh[2i+1] = dr = dℓ·dℓ/dr,
// and, when part is non-null (mode 1), partials of dα = Σ dℓ·tanh r (q = 0) and dβ = Σ dℓ (q = 1)
// at part[(q·N + n)·P + p] for sum2_finish_f32.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
affine_bwd_f32(float* dx, float* dh, double* part, const float* dy, const float* y, const float* h,
               const float* alpha, const float* beta, const float* dld, long long L, long long chunk, int mode) {
  __shared__ double sh[64];
  const RowPart rp(L, chunk);
  const LogScale ls = load_scale(mode, alpha, beta);
  const float dl0 = dld ? dld[rp.row] : 0.0f;
  const long long base = rp.row * L;
  double acc[2] = {0.0, 0.0};
  for (long long j = rp.begin + threadIdx.x; j < rp.end; j += blockDim.x) {
    const long long i = base + j;
    const float r = h[2 * i + 1];
    float l, e, t, dldr;
    ls.eval(r, l, e, t, dldr);
    const float g = dy[i];
    const float d = fmaf(g, y[i], dl0);  // dℓ
    const float ge = g * e;
    dx[i] = ge;
    dh[2 * i] = ge;
    dh[2 * i + 1] = d * dldr;
    acc[0] += (double)d * (double)t;
    acc[1] += d;
  }
  if (part) rp.store<2>(acc, sh, part);
}

// affine_bwd_pc_finish_f32: one block; the PerChannel AffineBackward's parameter gradients from the
// column sums S1_c = Σ dy, S2_c = Σ dy·y of chan_scale_bwd_f32 (mode 1 or 2):
//   dℓ_c = S2_c + pos·Σ_n dld_n,  dh[2c] = e_c·S1_c,  dh[2c+1] = dℓ_c·dℓ/dr,
//   dα = Σ_c dℓ_c·tanh r_c,  dβ = Σ_c dℓ_c   (written only in mode 1).
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
affine_bwd_pc_finish_f32(float* dh, float* dalpha, float* dbeta, const double* part, const float* h,
                         const float* alpha, const float* beta, const float* dld, int N, int C, int parts, int mode,
                         long long pos) {
  __shared__ double sh[64];
  __shared__ double sdld;
  double acc[2] = {0.0, 0.0};
  if (dld) {
    for (int n = threadIdx.x; n < N; n += blockDim.x) acc[0] += dld[n];
  }
  block_sum<2>(acc, sh);
  if (threadIdx.x == 0) sdld = acc[0];
  __syncthreads();
  const LogScale ls = load_scale(mode, alpha, beta);
  acc[0] = acc[1] = 0.0;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    double s1 = 0.0, s2 = 0.0;
    for (int p = 0; p < parts; ++p) {
      s1 += part[(long long)p * C + c];
      s2 += part[((long long)parts + p) * C + c];
    }
    float l, e, t, dldr;
    ls.eval(h[2 * c + 1], l, e, t, dldr);
    const double d = s2 + (double)pos * sdld;
    dh[2 * c] = (float)((double)e * s1);
    dh[2 * c + 1] = (float)(d * (double)dldr);
    acc[0] += d * (double)t;
    acc[1] += d;
  }
  block_sum<2>(acc, sh);
  if (threadIdx.x == 0 && mode == 1) {
    dalpha[0] = (float)acc[0];
    dbeta[0] = (float)acc[1];
  }
}

// ---------------------------------------------------------------------------------------------
// Diagonal Gaussians (priors): z [N,H,W,C], parameters p [N or 1, H, W, 2C]; with d = z − μ and
// u = d·e^{−log σ}: log N = −½(ln 2π + 2 log σ + u²), ∂/∂z = −dlp·u·e^{−log σ}, ∂/∂μ = −∂/∂z,
// ∂/∂log σ = dlp·(u² − 1); log σ = α·tanh r + β when bounded, else r.

// GaussParam locates μ and r of position-channel jj in p (interleaved: 2jj, 2jj+1; halves: μ at
// row·2C + c = 2jj − c and r C further) and evaluates log σ.
struct GaussParam {
  int interleaved, bounded, C;
  float alpha, beta;

  __device__ __forceinline__ GaussParam(int interleaved_, int bounded_, int C_, const float* a, const float* b)
      : interleaved(interleaved_), bounded(bounded_), C(C_), alpha(0.0f), beta(0.0f) {
    if (bounded_) {
      alpha = a[0];
      beta = b[0];
    }
  }

  __device__ __forceinline__ void index(long long jj, long long& mi, long long& ri) const {
    if (interleaved) {
      mi = 2 * jj;
      ri = mi + 1;
    } else {
      mi = 2 * jj - mod64(jj, C);
      ri = mi + C;
    }
  }

  // logsigma returns log σ of raw r, with tanh r (bounded) and ∂log σ/∂r.
  __device__ __forceinline__ float logsigma(float r, float& t, float& dr) const {
    if (!bounded) {
      t = 0.0f;
      dr = 1.0f;
      return r;
    }
    t = tanhf(r);
    dr = alpha * (1.0f - t * t);
    return fmaf(alpha, t, beta);
  }
};

// gauss_logp_f32: grid (N, P). For the block's elements: eps[i] = u (when eps is non-null) and, when
// part is non-null, part[n·P + p] = Σ log N(z_i; μ, σ). With bcast, p has one example shared by all.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
gauss_logp_f32(float* eps, double* part, const float* z, const float* p, const float* alpha, const float* beta,
               long long L, int C, long long chunk, int interleaved, int bounded, int bcast) {
  __shared__ double sh[32];
  const RowPart rp(L, chunk);
  const GaussParam gp(interleaved, bounded, C, alpha, beta);
  const long long base = rp.row * L;
  double acc[1] = {0.0};
  for (long long j = rp.begin + threadIdx.x; j < rp.end; j += blockDim.x) {
    const long long i = base + j;
    long long mi, ri;
    gp.index(bcast ? j : i, mi, ri);
    float t, dr;
    const float ls = gp.logsigma(p[ri], t, dr);
    const float u = (z[i] - p[mi]) * expf(-ls);
    if (eps) eps[i] = u;
    acc[0] += -0.5 * (LN_2PI + 2.0 * (double)ls + (double)u * (double)u);
  }
  if (part) rp.store<1>(acc, sh, part);
}

// gauss_elem computes one element's gradients: returns dμ = dlp·u·e^{−log σ} (dz = −dμ) and
// dls = dlp·(u² − 1).
__device__ __forceinline__ void gauss_elem(float zv, float mu, float ls, float g, float& dmu, float& dls) {
  const float inv = expf(-ls);
  const float u = (zv - mu) * inv;
  dmu = g * u * inv;
  dls = g * fmaf(u, u, -1.0f);
}

// gauss_bwd_f32: grid (N, P), p per example. dz[i] = −dμ, dp[mi] = dμ, dp[ri] = dls·∂log σ/∂r, and,
// when part is non-null (bounded), partials of dα = Σ dls·tanh r (q = 0), dβ = Σ dls (q = 1) at
// part[(q·N + n)·P + p]. dlp may be null (zero gradient).
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
gauss_bwd_f32(float* dz, float* dp, double* part, const float* z, const float* p, const float* alpha,
              const float* beta, const float* dlp, long long L, int C, long long chunk, int interleaved, int bounded) {
  __shared__ double sh[64];
  const RowPart rp(L, chunk);
  const GaussParam gp(interleaved, bounded, C, alpha, beta);
  const float g = dlp ? dlp[rp.row] : 0.0f;
  const long long base = rp.row * L;
  double acc[2] = {0.0, 0.0};
  for (long long j = rp.begin + threadIdx.x; j < rp.end; j += blockDim.x) {
    const long long i = base + j;
    long long mi, ri;
    gp.index(i, mi, ri);
    float t, dr;
    const float ls = gp.logsigma(p[ri], t, dr);
    float dmu, dls;
    gauss_elem(z[i], p[mi], ls, g, dmu, dls);
    dz[i] = -dmu;
    dp[mi] = dmu;
    dp[ri] = dls * dr;
    acc[0] += (double)dls * (double)t;
    acc[1] += dls;
  }
  if (part) rp.store<2>(acc, sh, part);
}

// gauss_bwd_bcast_f32: BatchBroadcast. ColPart over rows n < N and columns jj < L (position-channel
// pairs of the shared p): dz[n·L + jj] = −dμ, and per-column partials of S1 = Σ_n dμ (q = 0) and
// S2 = Σ_n dls (q = 1); gauss_bwd_bcast_finish_f32 turns them into dp, dα, dβ.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
gauss_bwd_bcast_f32(float* dz, double* part, const float* z, const float* p, const float* alpha, const float* beta,
                    const float* dlp, int N, int L, int C, long long chunk, int interleaved, int bounded) {
  __shared__ double sh[2 * DLF_THREADS];
  const ColPart cp(N, L, chunk);
  double acc[2] = {0.0, 0.0};
  if (cp.active) {
    const GaussParam gp(interleaved, bounded, C, alpha, beta);
    long long mi, ri;
    gp.index(cp.col, mi, ri);
    float t, dr;
    const float ls = gp.logsigma(p[ri], t, dr);
    const float mu = p[mi];
    for (long long n = cp.begin + cp.g; n < cp.end; n += cp.G) {
      const float g = dlp ? dlp[n] : 0.0f;
      const long long i = n * L + cp.col;
      float dmu, dls;
      gauss_elem(z[i], mu, ls, g, dmu, dls);
      dz[i] = -dmu;
      acc[0] += dmu;
      acc[1] += dls;
    }
  }
  cp.store<2>(acc, sh, part, L);
}

// gauss_bwd_bcast_finish_f32: columns jj < L (grid-stride with the host's fixed grid). With S1, S2
// from gauss_bwd_bcast_f32: dp[mi] = S1, dp[ri] = S2·∂log σ/∂r, and per-block partials of
// dα = Σ S2·tanh r, dβ = Σ S2 at part2[q·gridDim.x + blockIdx.x] for sum2_finish_f32.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
gauss_bwd_bcast_finish_f32(float* dp, double* part2, const double* part, const float* p, const float* alpha,
                           const float* beta, int L, int C, int parts, int interleaved, int bounded) {
  __shared__ double sh[64];
  const GaussParam gp(interleaved, bounded, C, alpha, beta);
  double acc[2] = {0.0, 0.0};
  for (long long jj = grid_stride_begin(); jj < L; jj += grid_stride_step()) {
    double s1 = 0.0, s2 = 0.0;
    for (int q = 0; q < parts; ++q) {
      s1 += part[(long long)q * L + jj];
      s2 += part[((long long)parts + q) * L + jj];
    }
    long long mi, ri;
    gp.index(jj, mi, ri);
    float t, dr;
    gp.logsigma(p[ri], t, dr);
    dp[mi] = (float)s1;
    dp[ri] = (float)(s2 * (double)dr);
    acc[0] += s2 * (double)t;
    acc[1] += s2;
  }
  block_sum<2>(acc, sh);
  if (threadIdx.x == 0) {
    part2[blockIdx.x] = acc[0];
    part2[gridDim.x + blockIdx.x] = acc[1];
  }
}

// gauss_sample_f32: z[i] = μ + e^{log σ}·eps[i] for i < n; L = H·W·C (per example) for bcast.
extern "C" __global__ void __launch_bounds__(DLF_THREADS)
gauss_sample_f32(float* z, const float* eps, const float* p, const float* alpha, const float* beta, long long n,
                 long long L, int C, int interleaved, int bounded, int bcast) {
  const GaussParam gp(interleaved, bounded, C, alpha, beta);
  for (long long i = grid_stride_begin(); i < n; i += grid_stride_step()) {
    long long mi, ri;
    gp.index(bcast ? mod64(i, L) : i, mi, ri);
    float t, dr;
    const float ls = gp.logsigma(p[ri], t, dr);
    z[i] = fmaf(expf(ls), eps[i], p[mi]);
  }
}
