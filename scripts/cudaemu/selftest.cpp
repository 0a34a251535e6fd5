// selftest.cpp: build.sh links this with the scheduler (fiber.cpp) and the PTX reader (ptx.cpp) and
// runs it before installing a new libcuda_emu.so, so that a change to the emulator that breaks its
// CUDA semantics fails the build rather than showing up as puzzling kernel test failures. It checks,
// against plain loops: threadIdx/blockIdx for 3-D blocks and grids, __syncthreads between writers
// and readers of shared memory, every __shfl_*_sync variant with widths 32 and 8 on a partial last
// warp, deadlock detection, a fault becoming CUDA_ERROR_ILLEGAL_ADDRESS, mma.sync m16n8k8 TF32
// against a plain loop (and divergent or mixed warp collectives failing), cvt.rna, and parse_ptx.
//
// It tests the emulator, not dlf's kernels (make emu-test does that); like the emulator it does not
// model memory ordering, timing, ptxas register allocation or real occupancy.
#include "emu.h"
#include "runtime.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    fprintf(stderr, "cudaemu selftest: FAIL: %s\n", what.c_str());
    failures++;
  }
}

// Each thread records its coordinates, after a barrier that all threads of the block cross.
void coords(int* out) {
  const unsigned t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  const unsigned b = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  const unsigned n = blockDim.x * blockDim.y * blockDim.z;
  __syncthreads();
  int* o = out + 6 * (b * n + t);
  o[0] = threadIdx.x, o[1] = threadIdx.y, o[2] = threadIdx.z;
  o[3] = blockIdx.x, o[4] = blockIdx.y, o[5] = blockIdx.z;
}

// A shared-memory tree sum: wrong unless every __syncthreads separates writers from readers.
void tree_sum(const int* in, int* out) {
  __shared__ int sh[64];
  sh[threadIdx.x] = in[blockIdx.x * 64 + threadIdx.x];
  __syncthreads();
  for (int half = 32; half > 0; half >>= 1) {
    const int v = threadIdx.x < (unsigned)half ? sh[threadIdx.x + half] : 0;
    __syncthreads();
    if (threadIdx.x < (unsigned)half) sh[threadIdx.x] += v;
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = sh[0];
}

// Every shuffle variant, back to back; thread t passes 100 + t + 1000·k to shuffle k, so a lane
// that overwrites its slot before the others have read it shows up.
void shuffles(int* out) {
  const int v = 100 + (int)threadIdx.x;
  int* o = out + 8 * threadIdx.x;
  o[0] = __shfl_down_sync(0xffffffffu, v, 3);
  o[1] = __shfl_up_sync(0xffffffffu, v + 1000, 2);
  o[2] = __shfl_xor_sync(0xffffffffu, v + 2000, 5);
  o[3] = __shfl_sync(0xffffffffu, v + 3000, 7);
  o[4] = __shfl_down_sync(0xffffffffu, v + 4000, 3, 8);
  o[5] = __shfl_up_sync(0xffffffffu, v + 5000, 2, 8);
  o[6] = __shfl_xor_sync(0xffffffffu, v + 6000, 12, 8);
  o[7] = __shfl_sync(0xffffffffu, v + 7000, 13, 8);
}

void divergent_barrier(int*) {
  if (threadIdx.x < 16) __syncthreads();
}

void wild_write(int* p) { p[threadIdx.x] = 1; }

// One m16n8k8 TF32 product per warp: A (16×8, row-major) and B (8×8, k-major) from memory, each
// lane loading its fragment elements by the PTX ISA layout, D written back the same way. Warp w
// multiplies A + w·128 by B; D = A·B + C with C = 1.
void mma_product(const float* a, const float* b, float* d) {
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const float* aw = a + w * 128;
  unsigned af[4] = {__float_as_uint(aw[g * 8 + t]), __float_as_uint(aw[(g + 8) * 8 + t]),
                    __float_as_uint(aw[g * 8 + t + 4]), __float_as_uint(aw[(g + 8) * 8 + t + 4])};
  unsigned bf[2] = {__float_as_uint(b[t * 8 + g]), __float_as_uint(b[(t + 4) * 8 + g])};
  float acc[4] = {1, 1, 1, 1};
  emu::mma_m16n8k8_tf32(acc, af, bf);
  float* dw = d + w * 128;
  dw[g * 8 + 2 * t] = acc[0];
  dw[g * 8 + 2 * t + 1] = acc[1];
  dw[(g + 8) * 8 + 2 * t] = acc[2];
  dw[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

// Lanes 0..15 issue an mma that lanes 16..31 skip: a GPU's behaviour is undefined; the emulator
// must fail the launch rather than compute with stale registers.
void mma_divergent(float*) {
  unsigned af[4] = {0, 0, 0, 0}, bf[2] = {0, 0};
  float acc[4] = {0, 0, 0, 0};
  if ((threadIdx.x & 31) < 16) emu::mma_m16n8k8_tf32(acc, af, bf);
  __syncwarp();
}

// Half the warp at an mma while the other half is at a shuffle.
void mma_mixed(float*) {
  unsigned af[4] = {0, 0, 0, 0}, bf[2] = {0, 0};
  float acc[4] = {0, 0, 0, 0};
  if ((threadIdx.x & 31) < 16) {
    emu::mma_m16n8k8_tf32(acc, af, bf);
  } else {
    (void)__shfl_sync(0xffffffffu, 1, 0);
  }
}

// What CUDA specifies for shuffle kind of lane l in a warp of `lanes` live lanes starting at thread
// warpBase.
int expect_shuffle(int kind, int l, int warpBase, int lanes) {
  const int width = kind < 4 ? 32 : 8, base = l & ~(width - 1);
  int src = l;
  switch (kind % 4) {
    case 0: src = l + 3 < base + width ? l + 3 : l; break;
    case 1: src = l - 2 >= base ? l - 2 : l; break;
    case 2: src = (l ^ (kind < 4 ? 5 : 12)) < base + width ? l ^ (kind < 4 ? 5 : 12) : l; break;
    case 3: src = base + ((kind < 4 ? 7 : 13) & (width - 1)); break;
  }
  if (src >= lanes) src = l;  // no such lane in a partial warp: the emulator keeps the own value
  return 100 + 1000 * kind + warpBase + src;
}

const char* kPTX = R"(
.version 7.8
.target sm_80
.address_size 64
// .entry commented_out(
.visible .entry k1(
	.param .u64 .ptr .global .align 4 k1_param_0,
	.param .u32 k1_param_1,
	.param .f64 k1_param_2,
	.param .align 8 .b8 k1_param_3[24]
)
.maxntid 256, 1, 1
{
	.shared .align 8 .b8 _ZZ2k1E2sh[256];
	.shared .align 4 .f32 x[10];
	ld.shared.f64 %fd1, [_ZZ2k1E2sh];
	ret;
}
.entry k2()
{
	ret;
}
)";

}  // namespace

int main() {
  using emu::Describe;
  {
    const emu::Dim grid{3, 2, 2}, block{4, 3, 2};
    const int nb = 12, nt = 24;
    std::vector<int> out(6 * nb * nt, -1);
    int* p = out.data();
    void* params[] = {&p};
    const emu::Kernel k = Describe<&coords>::make("coords", "selftest");
    check(k.nparams == 1 && k.sizes[0] == 8 && k.ptrMask == 1, "Describe: one pointer parameter");
    const emu::LaunchResult r = emu::run_grid(k, params, grid, block);
    check(r.code == 0, "coords launch: " + r.message);
    bool ok = true;
    for (unsigned bz = 0; bz < 2; bz++)
      for (unsigned by = 0; by < 2; by++)
        for (unsigned bx = 0; bx < 3; bx++)
          for (unsigned z = 0; z < 2; z++)
            for (unsigned y = 0; y < 3; y++)
              for (unsigned x = 0; x < 4; x++) {
                const int* o = &out[6 * (((bz * 2 + by) * 3 + bx) * nt + (z * 3 + y) * 4 + x)];
                ok &= o[0] == (int)x && o[1] == (int)y && o[2] == (int)z && o[3] == (int)bx && o[4] == (int)by && o[5] == (int)bz;
              }
    check(ok, "threadIdx/blockIdx of a 3-D block in a 3-D grid");
  }
  {
    std::vector<int> in(5 * 64), out(5, 0);
    for (size_t i = 0; i < in.size(); i++) in[i] = (int)(i * 7919 % 1000) - 500;
    const int* pi = in.data();
    int* po = out.data();
    void* params[] = {&pi, &po};
    const emu::LaunchResult r = emu::run_grid(Describe<&tree_sum>::make("tree_sum", "selftest"), params, {5, 1, 1}, {64, 1, 1});
    check(r.code == 0, "tree_sum launch: " + r.message);
    for (int b = 0; b < 5; b++) {
      int s = 0;
      for (int t = 0; t < 64; t++) s += in[b * 64 + t];
      check(out[b] == s, "shared-memory tree sum of block " + std::to_string(b));
    }
  }
  {
    const int n = 48;  // one full warp and a partial one of 16 lanes
    std::vector<int> out(8 * n, -1);
    int* p = out.data();
    void* params[] = {&p};
    const emu::LaunchResult r = emu::run_grid(Describe<&shuffles>::make("shuffles", "selftest"), params, {1, 1, 1}, {n, 1, 1});
    check(r.code == 0, "shuffles launch: " + r.message);
    for (int t = 0; t < n; t++)
      for (int kind = 0; kind < 8; kind++) {
        const int base = t & ~31, lanes = n - base < 32 ? n - base : 32;
        const int want = expect_shuffle(kind, t & 31, base, lanes);
        check(out[8 * t + kind] == want, "shuffle " + std::to_string(kind) + " of thread " + std::to_string(t) + ": got " +
                                             std::to_string(out[8 * t + kind]) + ", want " + std::to_string(want));
      }
  }
  {
    int* p = nullptr;
    void* params[] = {&p};
    const emu::LaunchResult r = emu::run_grid(Describe<&divergent_barrier>::make("divergent", "selftest"), params, {1, 1, 1}, {64, 1, 1});
    check(r.code == 719 && r.message.find("deadlock") != std::string::npos, "a divergent __syncthreads is a deadlock: " + r.message);
  }
  {
    // mma.sync against a plain loop over TF32 values (exact products, so only the fp32 sums round:
    // small integers and halves keep every sum exact too).
    std::vector<float> a(2 * 128), b(64), d(2 * 128, -1);
    for (int i = 0; i < 256; i++) a[i] = (float)((i * 7) % 11) - 5.0f;
    for (int i = 0; i < 64; i++) b[i] = 0.5f * (float)((i * 5) % 9 - 4);
    const float* pa = a.data();
    const float* pb = b.data();
    float* pd = d.data();
    void* params[] = {&pa, &pb, &pd};
    const emu::LaunchResult r = emu::run_grid(Describe<&mma_product>::make("mma", "selftest"), params, {1, 1, 1}, {64, 1, 1});
    check(r.code == 0, "mma launch: " + r.message);
    bool ok = true;
    for (int w = 0; w < 2; w++)
      for (int i = 0; i < 16; i++)
        for (int j = 0; j < 8; j++) {
          float want = 1;
          for (int k = 0; k < 8; k++) want += a[w * 128 + i * 8 + k] * b[k * 8 + j];
          ok = ok && d[w * 128 + i * 8 + j] == want;
        }
    check(ok, "mma.sync m16n8k8: D = A·B + C for every lane's fragment");
    // Operands with low mantissa bits are read truncated to TF32, as the tensor core reads them.
    a[0] = 1.0f + 1.0f / 4096;  // 1 + 2^-12: below TF32's resolution
    std::fill(b.begin(), b.end(), 0.0f);
    b[0] = 1.0f;
    emu::run_grid(Describe<&mma_product>::make("mma", "selftest"), params, {1, 1, 1}, {64, 1, 1});
    check(d[0] == 2.0f, "mma.sync reads fp32 operands truncated to TF32: got " + std::to_string(d[0]));
    check(emu::cvt_rna_tf32(0x3f801000u) == 0x3f802000u && emu::cvt_rna_tf32(0xbf800fffu) == 0xbf800000u &&
              emu::cvt_rna_tf32(0x7f800000u) == 0x7f800000u,
          "cvt.rna.tf32: ties away from zero, below-half down, Inf unchanged");
  }
  {
    float* p = nullptr;
    void* params[] = {&p};
    emu::LaunchResult r = emu::run_grid(Describe<&mma_divergent>::make("mma_divergent", "selftest"), params, {1, 1, 1}, {32, 1, 1});
    check(r.code == 719, "an mma.sync that half the warp skips fails the launch: " + r.message);
    r = emu::run_grid(Describe<&mma_mixed>::make("mma_mixed", "selftest"), params, {1, 1, 1}, {32, 1, 1});
    check(r.code == 719 && r.message.find("mma.sync") != std::string::npos,
          "an mma.sync meeting a shuffle fails the launch naming mma.sync: " + r.message);
  }
  {
    int* p = (int*)16;  // the first page is never mapped
    void* params[] = {&p};
    const emu::LaunchResult r = emu::run_grid(Describe<&wild_write>::make("wild", "selftest"), params, {2, 1, 1}, {32, 1, 1});
    check(r.code == 700 && r.faulted && r.faultAddr == 16, "a wild write faults with 700 at address 16: " + r.message);
    // The scheduler works again after a fault.
    std::vector<int> out(6 * 32, -1);
    int* q = out.data();
    void* params2[] = {&q};
    check(emu::run_grid(Describe<&coords>::make("coords", "selftest"), params2, {1, 1, 1}, {32, 1, 1}).code == 0 && out[6 * 31] == 31,
          "a launch after a fault");
  }
  {
    std::vector<emu::PtxEntry> es;
    std::string err;
    const bool ok = emu::parse_ptx(kPTX, es, err);
    check(ok && es.size() == 2, "parse_ptx finds two entries: " + err);
    if (ok && es.size() == 2) {
      const emu::PtxEntry& a = es[0];
      check(a.name == "k1" && a.paramSizes == std::vector<unsigned>{8, 4, 8, 24}, "parse_ptx: k1's parameter sizes");
      check(a.maxThreads == 256 && a.sharedBytes == 296, "parse_ptx: k1's .maxntid and static shared bytes");
      check(es[1].name == "k2" && es[1].paramSizes.empty() && es[1].maxThreads == 0, "parse_ptx: k2 has no parameters");
    }
    check(!emu::parse_ptx("\x7f" "ELF", es, err), "parse_ptx rejects a cubin");
    check(!emu::parse_ptx(".version 7.8\n.target sm_80\n", es, err), "parse_ptx rejects PTX without entries");
  }
  if (failures) {
    fprintf(stderr, "cudaemu selftest: %d failure(s)\n", failures);
    return 1;
  }
  printf("cudaemu selftest: ok\n");
  return 0;
}
