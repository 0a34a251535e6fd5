// fiber.cpp: the emulator's thread scheduler. It runs a grid block by block on the calling OS
// thread; inside a block every CUDA thread is a fiber with its own stack, resumed in thread order
// until it finishes or waits at a barrier (__syncthreads, __syncwarp, a warp shuffle). A barrier
// opens when all threads it expects have arrived; if every unfinished thread waits on a barrier
// that cannot open (a __syncthreads in divergent code, or threads that returned early while others
// wait), the launch fails with CUDA_ERROR_LAUNCH_FAILED (719) and a message naming the block,
// instead of hanging as a GPU would.
//
// Why fibers: a kernel can stop at a barrier in the middle of a loop with live locals, so each
// thread needs its own stack; user-space switching costs a few nanoseconds where OS threads would
// cost a futex round trip per thread per barrier. On x86-64 the switch is a few instructions of
// assembly (callee-saved registers, MXCSR and the x87 control word); elsewhere, or with
// -DEMU_UCONTEXT, it is swapcontext, which also saves the signal mask with a system call per
// switch and is several times slower.
//
// Faults: a kernel that touches unmapped memory (a wild pointer, an overrun into an allocation's
// guard page, a fiber stack overflow into its guard page) raises SIGSEGV on this thread. The
// handler (installed once, in front of the Go runtime's) recognises the running kernel's thread
// and siglongjmps back into run_grid, which abandons the grid and reports the fault: the driver
// turns it into the sticky CUDA_ERROR_ILLEGAL_ADDRESS (700). Any other signal, and a fault on any
// other thread or outside a kernel, goes to the previous handler unchanged, as the Go runtime
// requires of foreign handlers (os/signal, "Go programs that use cgo or SWIG").
//
// Not modeled: a GPU's warp-level lockstep (threads interleave only at barriers), memory ordering,
// block concurrency and scheduling order; see emu.h.
#include "emu.h"
#include "runtime.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

#if !defined(__x86_64__) && !defined(EMU_UCONTEXT)
#define EMU_UCONTEXT 1
#endif
#ifdef EMU_UCONTEXT
#include <ucontext.h>
#endif

namespace emu {

uint3 threadIdx_, blockIdx_, blockDim_, gridDim_;

namespace {

constexpr size_t kStackSize = 128 << 10;  // per fiber; dlf's kernels use a few KiB
constexpr size_t kGuard = 4096;           // PROT_NONE page below each stack: overflow faults
constexpr int kMaxThreads = 1024;

#ifndef EMU_UCONTEXT
// emu_switch saves the callee-saved state on the current stack, stores the stack pointer in
// *save, and resumes the context whose stack pointer is next (x86-64 System V ABI).
extern "C" void emu_switch(void** save, void* next);
asm(R"(
  .text
  .p2align 4
  .type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch,.-emu_switch
)");
#endif

struct Barrier {
  int count = 0;  // arrivals in the current generation
  long gen = 0;   // bumped when the barrier opens
};

struct Fiber {
  char* stack = nullptr;  // kStackSize bytes above a kGuard guard page
#ifdef EMU_UCONTEXT
  ucontext_t ctx;
#else
  void* sp = nullptr;
#endif
  uint3 tid{};
  int linear = 0;
  bool done = false;
  const Barrier* waitOn = nullptr;  // non-null: blocked until waitOn->gen != waitGen
  long waitGen = 0;
};

Fiber fibers[kMaxThreads];
int nthreads = 0;
int cur = -1;
#ifdef EMU_UCONTEXT
ucontext_t schedCtx;
#else
void* schedSp = nullptr;
#endif
const Kernel* running = nullptr;
void* const* runningParams = nullptr;
Barrier blockBar;
Barrier warpBar[kMaxThreads / 32];
alignas(16) unsigned char slots[kMaxThreads][16];  // warp exchange, indexed by linear thread id

// Tensor-core state (mma_m16n8k8_tf32). mmaIn: each lane's fragment registers, by linear thread
// id; mmaCalls: how many mma calls each thread has made in this block (the lanes of a warp must
// agree: mma.sync is executed by the whole, converged warp); mmaOut: the warp's result, lane by
// lane, computed by whichever lane runs first after the barrier opens (mmaGen: the barrier
// generation it was computed for).
struct MmaIn {
  unsigned a[4], b[2];
  float c[4];
};
MmaIn mmaIn[kMaxThreads];
long mmaCalls[kMaxThreads];
float mmaOut[kMaxThreads / 32][32][4];
long mmaGen[kMaxThreads / 32];

// A kernel error the emulator detects itself (not a hardware fault): run_grid reports failMsg
// as CUDA_ERROR_LAUNCH_FAILED.
char failMsg[256];

// Fault state, written by the signal handler.
std::atomic<bool> inKernel{false};
pthread_t kernelThread;
sigjmp_buf faultJmp;
volatile sig_atomic_t faultSig = 0;
volatile sig_atomic_t faultCode = 0;  // si_code: SI_KERNEL for an x86 general-protection fault
void* volatile faultAddr = nullptr;
struct sigaction previous[32];

void fiber_main();

void resume(int t) {
  cur = t;
  threadIdx_ = fibers[t].tid;
#ifdef EMU_UCONTEXT
  swapcontext(&schedCtx, &fibers[t].ctx);
#else
  emu_switch(&schedSp, fibers[t].sp);
#endif
  cur = -1;
}

void yield_to_scheduler() {
#ifdef EMU_UCONTEXT
  swapcontext(&fibers[cur].ctx, &schedCtx);
#else
  emu_switch(&fibers[cur].sp, schedSp);
#endif
}

void start_fiber(Fiber& f) {
#ifdef EMU_UCONTEXT
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack;
  f.ctx.uc_stack.ss_size = kStackSize;
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, fiber_main, 0);
#else
  // A frame that emu_switch "returns" into fiber_main from, as if fiber_main had just been called:
  // at its first instruction the stack pointer is 8 mod 16 (the System V call alignment).
  unsigned long long* top = (unsigned long long*)(((uintptr_t)(f.stack + kStackSize)) & ~(uintptr_t)15);
  unsigned long long* sp = top - 9;
  unsigned ctrl[2];
  asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(ctrl[0]), "=m"(ctrl[1]));
  memcpy(&sp[0], ctrl, 8);                     // MXCSR and x87 control word of this thread
  for (int i = 1; i <= 6; i++) sp[i] = 0;      // r15 r14 r13 r12 rbx rbp
  sp[7] = (unsigned long long)&fiber_main;     // return address of emu_switch
  sp[8] = 0;                                   // fiber_main's own return address: never used
  f.sp = sp;
#endif
}

void fiber_main() {
  running->invoke(runningParams);
  fibers[cur].done = true;
  yield_to_scheduler();
  abort();  // a finished fiber is never resumed
}

// arrive waits at b until expected threads of the current generation have arrived.
void arrive(Barrier& b, int expected) {
  if (++b.count == expected) {
    b.count = 0;
    b.gen++;
    return;
  }
  Fiber& f = fibers[cur];
  f.waitOn = &b;
  f.waitGen = b.gen;
  yield_to_scheduler();
  f.waitOn = nullptr;
}

int warp_size(int w) { return nthreads - w * 32 < 32 ? nthreads - w * 32 : 32; }

bool ensure_stacks(int n, std::string& err) {
  for (int i = 0; i < n; i++) {
    if (fibers[i].stack) continue;
    void* m = mmap(nullptr, kStackSize + kGuard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED || mprotect(m, kGuard, PROT_NONE) != 0) {
      err = "cannot map fiber stacks";
      if (m != MAP_FAILED) munmap(m, kStackSize + kGuard);
      return false;
    }
    fibers[i].stack = (char*)m + kGuard;
  }
  return true;
}

void on_fault(int sig, siginfo_t* info, void* uc) {
  if (inKernel.load(std::memory_order_relaxed) && pthread_equal(pthread_self(), kernelThread)) {
    faultSig = sig;
    faultAddr = info ? info->si_addr : nullptr;
    faultCode = info ? info->si_code : 0;
    inKernel.store(false, std::memory_order_relaxed);
    siglongjmp(faultJmp, 1);
  }
  const struct sigaction& p = previous[sig];
  if (p.sa_flags & SA_SIGINFO) {
    p.sa_sigaction(sig, info, uc);
  } else if (p.sa_handler != SIG_DFL && p.sa_handler != SIG_IGN) {
    p.sa_handler(sig);
  } else {
    // No handler before us: restore the default action; returning re-executes the faulting
    // instruction, which now kills the process as it would have without the emulator.
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, nullptr);
  }
}

}  // namespace

void syncthreads() { arrive(blockBar, nthreads); }

void syncwarp() {
  const int w = fibers[cur].linear >> 5;
  arrive(warpBar[w], warp_size(w));
}

void warp_publish(const void* v, int size) {
  memcpy(slots[fibers[cur].linear], v, size);
  syncwarp();
}

void warp_read(int lane, void* out, int size) {
  const int w = fibers[cur].linear >> 5;
  const int src = w * 32 + lane;
  // A lane past the end of a partial last warp holds no value: the reader keeps its own (out is
  // preset by the caller), which is one of the values a GPU may return there.
  if (lane >= 0 && lane < 32 && src < nthreads) memcpy(out, slots[src], size);
}

void warp_done() { syncwarp(); }

namespace {
[[noreturn]] void kernel_fail(const char* what) {
  snprintf(failMsg, sizeof failMsg, "%s", what);
  inKernel.store(false, std::memory_order_relaxed);
  siglongjmp(faultJmp, 2);
}

// tf32_operand is the value the tensor core reads from a .tf32 register: the top 19 bits of the
// fp32 pattern (sign, exponent, 10 mantissa bits), the rest ignored (graphs-tf32-mpi-nccl.md §2.3;
// the kernels round with cvt.rna first, so this drops only zeros there). A NaN stays a NaN.
float tf32_operand(unsigned bits) {
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) return NAN;
  float f;
  bits &= 0xffffe000u;
  memcpy(&f, &bits, 4);
  return f;
}
}  // namespace

void mma_m16n8k8_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
  const int lin = fibers[cur].linear, w = lin >> 5;
  if (warp_size(w) != 32) kernel_fail("mma.sync in a partial warp (the block size is not a multiple of 32)");
  MmaIn& in = mmaIn[lin];
  memcpy(in.a, a, sizeof in.a);
  memcpy(in.b, b, sizeof in.b);
  memcpy(in.c, d, sizeof in.c);
  const long call = ++mmaCalls[lin];
  arrive(warpBar[w], 32);
  if (mmaGen[w] != warpBar[w].gen) {
    // First lane after the barrier: every lane must be at this same mma (not at a shuffle, not
    // one call behind), then D = A·B + C for the whole warp.
    for (int l = 0; l < 32; l++)
      if (mmaCalls[w * 32 + l] != call) {
        char m[160];
        snprintf(m, sizeof m, "mma.sync: lane %d of warp %d is not at the same mma as lane %d (a divergent or missing mma.sync)",
                 l, w, lin & 31);
        kernel_fail(m);
      }
    // The PTX ISA's m16n8k8 .tf32 fragments (§9.7.14.5.x), g = lane/4, t = lane%4:
    //   A (16×8, row): a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4);
    //   B (8×8, col):  b0 (k t, n g), b1 (k t+4, n g);
    //   C, D (16×8):   c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1).
    float A[16][8], B[8][8], C[16][8];
    for (int l = 0; l < 32; l++) {
      const MmaIn& p = mmaIn[w * 32 + l];
      const int g = l >> 2, t = l & 3;
      A[g][t] = tf32_operand(p.a[0]);
      A[g + 8][t] = tf32_operand(p.a[1]);
      A[g][t + 4] = tf32_operand(p.a[2]);
      A[g + 8][t + 4] = tf32_operand(p.a[3]);
      B[t][g] = tf32_operand(p.b[0]);
      B[t + 4][g] = tf32_operand(p.b[1]);
      C[g][2 * t] = p.c[0];
      C[g][2 * t + 1] = p.c[1];
      C[g + 8][2 * t] = p.c[2];
      C[g + 8][2 * t + 1] = p.c[3];
    }
    for (int l = 0; l < 32; l++) {
      const int g = l >> 2, t = l & 3;
      const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
      for (int q = 0; q < 4; q++) {
        // A TF32 product (11 × 11 significant bits) is exact in fp32; the sum is rounded after
        // each add, in k order.
        float acc = C[rows[q]][cols[q]];
        for (int k = 0; k < 8; k++) acc += A[rows[q]][k] * B[k][cols[q]];
        mmaOut[w][l][q] = acc;
      }
    }
    mmaGen[w] = warpBar[w].gen;
  }
  memcpy(d, mmaOut[w][lin & 31], sizeof(float) * 4);
}

void install_fault_handlers() {
  static std::atomic<bool> done{false};
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  if (done.load()) return;
  pthread_mutex_lock(&mu);
  if (!done.load()) {
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE}) {
      struct sigaction sa;
      memset(&sa, 0, sizeof sa);
      sa.sa_sigaction = on_fault;
      // SA_ONSTACK: run on the thread's alternate signal stack (the Go runtime gives every thread
      // one), which also keeps working when a fiber overflows its own stack.
      sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
      sigemptyset(&sa.sa_mask);
      sigaction(sig, &sa, &previous[sig]);
    }
    done.store(true);
  }
  pthread_mutex_unlock(&mu);
}

LaunchResult run_grid(const Kernel& k, void* const* params, Dim grid, Dim block) {
  LaunchResult res;
  const int n = (int)(block.x * block.y * block.z);
  if (n <= 0 || n > kMaxThreads) {
    res.code = 1;
    res.message = "block of " + std::to_string(n) + " threads";
    return res;
  }
  if (!ensure_stacks(n, res.message)) {
    res.code = 2;
    return res;
  }
  install_fault_handlers();
  running = &k;
  runningParams = params;
  nthreads = n;
  blockDim_ = {block.x, block.y, block.z};
  gridDim_ = {grid.x, grid.y, grid.z};
  for (int t = 0; t < n; t++) {
    fibers[t].linear = t;
    fibers[t].tid = {(unsigned)t % block.x, (unsigned)t / block.x % block.y, (unsigned)t / (block.x * block.y)};
  }
  // Volatile: read after a siglongjmp back into this frame.
  volatile unsigned bx = 0, by = 0, bz = 0;
  kernelThread = pthread_self();
  const int jumped = sigsetjmp(faultJmp, 1);
  if (jumped == 2) {
    // kernel_fail: an error the emulator detected (a malformed warp collective).
    running = nullptr;
    res.code = 719;
    char buf[400];
    const Fiber* f = cur >= 0 ? &fibers[cur] : nullptr;
    snprintf(buf, sizeof buf, "%s: %s, in block (%u,%u,%u) thread (%u,%u,%u)", k.name, failMsg, (unsigned)bx,
             (unsigned)by, (unsigned)bz, f ? f->tid.x : 0, f ? f->tid.y : 0, f ? f->tid.z : 0);
    res.message = buf;
    cur = -1;
    return res;
  }
  if (jumped != 0) {
    // A fault inside the kernel: every fiber of this block is abandoned (their stacks are reused
    // from scratch by the next launch).
    running = nullptr;
    res.faulted = true;
    res.faultAddr = (unsigned long long)(uintptr_t)faultAddr;
    res.code = faultSig == SIGFPE ? 719 : 700;
    char buf[320];
    const Fiber* f = cur >= 0 ? &fibers[cur] : nullptr;
    // A general-protection fault reports no address: a non-canonical pointer, or an aligned SSE
    // access (the 16-byte vector types) at an address that is not 16-byte aligned.
    const bool gp = faultSig == SIGSEGV && faultCode == SI_KERNEL;
    snprintf(buf, sizeof buf, "%s: %s at address %#llx in block (%u,%u,%u) thread (%u,%u,%u)", k.name,
             gp                   ? "SIGSEGV (general protection: a misaligned float4/uint4 access or a non-canonical pointer)"
             : faultSig == SIGSEGV ? "SIGSEGV"
             : faultSig == SIGBUS  ? "SIGBUS"
                                   : "SIGFPE (integer division by zero?)",
             res.faultAddr, (unsigned)bx, (unsigned)by, (unsigned)bz, f ? f->tid.x : 0, f ? f->tid.y : 0, f ? f->tid.z : 0);
    res.message = buf;
    cur = -1;
    return res;
  }
  inKernel.store(true);
  for (bz = 0; bz < grid.z; bz++) {
    for (by = 0; by < grid.y; by++) {
      for (bx = 0; bx < grid.x; bx++) {
        blockIdx_ = {bx, by, bz};
        blockBar = Barrier{};
        for (auto& w : warpBar) w = Barrier{};
        for (auto& g : mmaGen) g = -1;
        for (int t = 0; t < n; t++) mmaCalls[t] = 0;
        for (int t = 0; t < n; t++) {
          fibers[t].done = false;
          fibers[t].waitOn = nullptr;
          start_fiber(fibers[t]);
        }
        int live = n;
        while (live > 0) {
          int resumed = 0;
          for (int t = 0; t < n; t++) {
            Fiber& f = fibers[t];
            if (f.done || (f.waitOn && f.waitOn->gen == f.waitGen)) continue;
            resume(t);
            resumed++;
            if (f.done) live--;
          }
          if (resumed == 0) {
            inKernel.store(false);
            running = nullptr;
            int atBlock = 0, first = -1;
            for (int t = 0; t < n; t++) {
              if (fibers[t].done) continue;
              if (fibers[t].waitOn == &blockBar) atBlock++;
              if (first < 0) first = t;
            }
            char buf[320];
            snprintf(buf, sizeof buf,
                     "%s: deadlock in block (%u,%u,%u): %d of %d threads finished; %d wait at __syncthreads, "
                     "%d at a warp barrier (first stuck: thread %d); a barrier in divergent code or after an early return",
                     k.name, (unsigned)bx, (unsigned)by, (unsigned)bz, n - live, n, atBlock, live - atBlock, first);
            res.code = 719;
            res.message = buf;
            return res;
          }
        }
      }
    }
  }
  inKernel.store(false);
  running = nullptr;
  return res;
}

}  // namespace emu
