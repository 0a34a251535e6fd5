// driver.cpp: a fake libcuda.so.1 for dlf's tests on machines without a GPU. It exports the driver
// API subset that tensor/cuda/cu binds (same symbol names, including the _v2 ones, same CUresult
// codes) and runs kernel launches on the CPU through fiber.cpp, using the kernels compiled from
// kernels/*.cu. Load it with DLF_LIBCUDA=/path/libcuda_emu.so (see tensor/cuda/cu/loader.go).
//
// The device it reports is shaped like an H100 (compute capability 9.0, 132 SMs, 1024 threads per
// block) so that the backend picks the same launch shapes (grid sizes, split-K) as on the target
// GPU; its memory is 8 GiB of host address space.
//
// Modeled: cuInit before use (CUDA_ERROR_NOT_INITIALIZED), a current context per OS thread and a
// reference-counted primary context (calls without a live current context fail with
// CUDA_ERROR_INVALID_CONTEXT; the last release resets it: allocations, modules, streams and events
// go, and so does a sticky error), handle validation (CUDA_ERROR_INVALID_HANDLE), launch-shape and
// launch-bounds limits, memory ranges of copies and memsets, out-of-memory, stream-ordered pools
// (as plain allocations), and sticky errors: once a kernel faults, every call that needs the
// context fails with the same code until the context is reset, as on a GPU.
//
// How a wild pointer becomes a sticky CUDA_ERROR_ILLEGAL_ADDRESS (700):
//   1. each allocation gets its own mmap, placed so that its (256-byte rounded) end touches a
//      PROT_NONE guard page, with another guard page in front;
//   2. at launch, every pointer parameter (the compiler tells which are pointers) must be null or
//      point into (or one past) a live allocation, device or pinned host; otherwise the kernel does
//      not run;
//   3. while it runs, an access outside mapped memory raises SIGSEGV, which fiber.cpp turns into a
//      failed launch;
//   4. either way the launch itself returns success, as an asynchronous launch does, and the
//      sticky code is reported by the next call (typically the synchronisation), with a message on
//      stderr naming the kernel, block, thread and address.
// Not caught: an overrun that stays inside the allocation's 256-byte rounding or the front page,
// or that lands in another allocation.
//
// Not modeled: asynchrony (every call completes before it returns; streams and events only order
// trivially and time the host), concurrency of streams, peer devices (one device, no peer access),
// JIT compilation (PTX is only read for its entry headers, ptx.cpp), register counts and occupancy
// (cuFuncGetAttribute reports 32 registers; the cuOccupancy* entry points are not exported, as in
// an old driver), memory bandwidth and timing.
//
// Counting mode: with DLF_EMU_SKIP_KERNELS=1 every launch is validated but not run, for measuring a
// step's host side (bin/driver bench --host) on models too large to emulate.
//
// Stream capture and graphs are modeled (see cuStreamBeginCapture_v2 at the end of this file).
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "runtime.h"

#define EMU_API extern "C" __attribute__((visibility("default")))

namespace {

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

enum : int {
  kSuccess = 0,
  kInvalidValue = 1,
  kOutOfMemory = 2,
  kNotInitialized = 3,
  kInvalidDevice = 101,
  kInvalidImage = 200,
  kInvalidContext = 201,
  kInvalidPTX = 218,
  kInvalidHandle = 400,
  kNotFound = 500,
  kNotReady = 600,
  kIllegalAddress = 700,
  kLaunchFailed = 719,
  kPeerAccessUnsupported = 217,
  kCaptureUnsupported = 900,
  kCaptureInvalidated = 901,
  kCaptureImplicit = 906,
  kCaptureWrongThread = 908,
  kIllegalState = 401,
};

constexpr unsigned long long kTotalMem = 8ull << 30;
constexpr size_t kPage = 4096;
constexpr size_t kAlign = 256;  // cuMemAlloc alignment guaranteed by CUDA

struct Alloc {
  void* map;      // the whole mapping, guard pages included
  size_t mapLen;
  size_t size;    // requested bytes
  size_t rounded; // size rounded up to kAlign: the accessible tail ends at a guard page
  bool host;      // pinned host memory (cuMemAllocHost)
};

struct Module {
  std::vector<emu::PtxEntry> entries;
  std::map<std::string, struct Function*> functions;
};

struct Function {
  const emu::Kernel* kernel;
  emu::PtxEntry entry;
  Module* module;
};

struct Stream { unsigned flags; };

// A captured operation: a kernel launch (its argument values copied at capture time, as the driver
// copies kernelParams into the graph node), a device-to-device copy or a memset.
struct Op {
  enum Kind { kLaunch, kCopy, kMemset8, kMemset32 } kind;
  struct Function* fn = nullptr;
  unsigned grid[3] = {0, 0, 0}, block[3] = {0, 0, 0};
  std::vector<unsigned char> args;  // the parameter values, back to back
  std::vector<size_t> offsets;      // where each parameter starts in args
  CUdeviceptr dst = 0, src = 0;
  size_t n = 0;
  unsigned value = 0;
};
struct Graph { std::vector<Op> ops; };
struct GraphExec { std::vector<Op> ops; };
// An active capture of one stream.
struct Capture {
  Graph* graph;
  int mode;
  pthread_t thread;
  bool invalid = false;
  std::string why;
};
struct Event {
  unsigned flags;
  bool recorded = false;
  double ms = 0;  // host time of the last record
};

// All state is behind one lock: dlf drives the device from one worker thread, but error-name
// lookups and a second Device can come from other threads.
std::mutex mu;
std::atomic<bool> initialized{false};  // read without the lock by the context-free calls
int primaryRefs = 0;
int sticky = 0;
unsigned long long used = 0;
std::map<CUdeviceptr, Alloc> allocs;  // by start address
std::set<Module*> modules;
std::set<Function*> functions;
std::set<Stream*> streams;
std::set<Event*> events;
std::map<Stream*, Capture> captures;  // the streams being captured
std::set<Graph*> graphs;
std::set<GraphExec*> execs;
int pool;                              // the default memory pool's handle is its address
thread_local void* current = nullptr;  // this OS thread's current context
const auto t0 = std::chrono::steady_clock::now();

// The primary context's handle: a fixed address, like the driver's (it survives resets).
char primaryCtx;

void report(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("emu: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

// find returns the allocation holding [p, p+n) (n = 0: p may be one past the end), or null.
const Alloc* find(CUdeviceptr p, size_t n, CUdeviceptr* base = nullptr) {
  auto it = allocs.upper_bound(p);
  if (it == allocs.begin()) return nullptr;
  --it;
  const CUdeviceptr b = it->first, e = b + it->second.size;
  if (p < b || p > e || n > e - p) return nullptr;
  if (base) *base = b;
  return &it->second;
}

// describe says where an address is relative to the allocations, for fault messages.
std::string describe(CUdeviceptr a) {
  char buf[160];
  auto it = allocs.upper_bound(a);
  if (it != allocs.begin()) {
    --it;
    const CUdeviceptr b = it->first, e = b + it->second.size;
    if (a < e) {
      snprintf(buf, sizeof buf, "inside the %zu-byte allocation at %#llx", it->second.size, b);
      return buf;
    }
    if (a < b + it->second.rounded + 2 * kPage) {
      snprintf(buf, sizeof buf, "%llu bytes past the end of the %zu-byte allocation at %#llx", a - e, it->second.size, b);
      return buf;
    }
  }
  return "in no allocation";
}

CUresult alloc(CUdeviceptr* out, size_t size, bool host) {
  if (!out || size == 0) return kInvalidValue;
  if (!host && (size > kTotalMem || used + size > kTotalMem)) return kOutOfMemory;
  const size_t rounded = (size + kAlign - 1) & ~(kAlign - 1);
  const size_t dataPages = (rounded + kPage - 1) / kPage;
  const size_t len = (dataPages + 2) * kPage;
  char* m = (char*)mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return kOutOfMemory;
  if (mprotect(m + kPage, dataPages * kPage, PROT_READ | PROT_WRITE) != 0) {
    munmap(m, len);
    return kOutOfMemory;
  }
  const CUdeviceptr start = (CUdeviceptr)(m + kPage + dataPages * kPage - rounded);
  allocs[start] = Alloc{m, len, size, rounded, host};
  if (!host) used += size;
  *out = start;
  return kSuccess;
}

CUresult release(CUdeviceptr p, bool host) {
  auto it = allocs.find(p);
  if (it == allocs.end() || it->second.host != host) return kInvalidValue;
  munmap(it->second.map, it->second.mapLen);
  if (!host) used -= it->second.size;
  allocs.erase(it);
  return kSuccess;
}

// reset is what the last primary-context release does: everything the context owned goes.
void reset() {
  for (auto& a : allocs) munmap(a.second.map, a.second.mapLen);
  allocs.clear();
  used = 0;
  for (Function* f : functions) delete f;
  functions.clear();
  for (Module* m : modules) delete m;
  modules.clear();
  for (Stream* s : streams) delete s;
  streams.clear();
  for (Event* e : events) delete e;
  events.clear();
  for (auto& c : captures) delete c.second.graph;
  captures.clear();
  for (Graph* gr : graphs) delete gr;
  graphs.clear();
  for (GraphExec* ex : execs) delete ex;
  execs.clear();
  sticky = 0;
}

// capturing returns the capture of stream s, or null.
Capture* capturing(void* s) {
  auto it = captures.find((Stream*)s);
  return it == captures.end() ? nullptr : &it->second;
}

// unsafe is called by calls that a capture forbids (allocation, frees, synchronisation, synchronous
// copies): with a capture active in Global or ThreadLocal mode (ThreadLocal: in this thread), it
// invalidates that capture and returns code, as the driver does; otherwise kSuccess.
CUresult unsafe(const char* fn, CUresult code) {
  CUresult r = kSuccess;
  for (auto& c : captures) {
    Capture& cp = c.second;
    if (cp.mode == 2 || (cp.mode == 1 && !pthread_equal(cp.thread, pthread_self()))) continue;
    if (!cp.invalid) {
      cp.invalid = true;
      cp.why = std::string(fn) + " during stream capture";
      report("%s: not permitted while a stream is capturing; the capture is invalidated", fn);
    }
    r = code;
  }
  return r;
}

// ctx_check is the prologue of every call that needs a current context.
CUresult ctx_check() {
  if (!initialized) return kNotInitialized;
  if (current != &primaryCtx || primaryRefs == 0) return kInvalidContext;
  return sticky;
}

bool stream_ok(void* s) { return s == nullptr || streams.count((Stream*)s) != 0; }

double now_ms() { return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(); }

// copy checks both device ranges (a null range is host memory) and copies n bytes.
CUresult copy(void* dst, bool dstDev, const void* src, bool srcDev, size_t n, const char* fn) {
  if (n == 0) return kSuccess;
  if ((dstDev && !find((CUdeviceptr)dst, n)) || (srcDev && !find((CUdeviceptr)src, n)) || !dst || !src) {
    report("%s: range [%p, +%zu) -> [%p, +%zu) is not inside one allocation", fn, src, n, dst, n);
    return kInvalidValue;
  }
  memmove(dst, src, n);
  return kSuccess;
}

struct ErrorText { int code; const char *name, *text; };
// cuda.h (CUDA 11.8) names; texts as the driver's cuGetErrorString.
const ErrorText kErrors[] = {
    {0, "CUDA_SUCCESS", "no error"},
    {1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {4, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {101, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {200, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {217, "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED", "peer access is not supported between these two devices"},
    {218, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
    {400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {401, "CUDA_ERROR_ILLEGAL_STATE", "the operation is not permitted in the current state"},
    {500, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {600, "CUDA_ERROR_NOT_READY", "device not ready"},
    {700, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
    {704, "CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED", "peer access is already enabled"},
    {719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {801, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {900, "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", "operation not permitted when stream is capturing"},
    {901, "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", "operation failed due to a previous error during capture"},
    {906, "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT", "operation would make the legacy stream depend on a capturing blocking stream"},
    {908, "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD", "attempt to terminate a thread-local capture sequence from another thread"},
    {999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

const ErrorText* error_text(int r) {
  for (const ErrorText& e : kErrors)
    if (e.code == r) return &e;
  return nullptr;
}

// Device attributes (CUdevice_attribute numbers) of an H100 SXM; unlisted ones read as 0.
int attribute(int attr) {
  switch (attr) {
    case 1: return 1024;        // max threads per block
    case 2: case 3: return 1024;  // max block dim x, y
    case 4: return 64;          // max block dim z
    case 5: return 2147483647;  // max grid dim x
    case 6: case 7: return 65535;
    case 8: return 49152;       // max shared memory per block
    case 9: return 65536;       // total constant memory
    case 10: return 32;         // warp size
    case 12: return 65536;      // registers per block
    case 13: return 1980000;    // clock rate, kHz
    case 16: return 132;        // multiprocessors
    case 36: return 2619000;    // memory clock rate, kHz
    case 37: return 5120;       // memory bus width, bits
    case 38: return 52428800;   // L2 cache bytes
    case 39: return 2048;       // max threads per multiprocessor
    case 41: return 1;          // unified addressing
    case 75: return 9;          // compute capability major
    case 76: return 0;          // minor
    case 81: return 233472;     // shared memory per multiprocessor
    case 82: return 65536;      // registers per multiprocessor
    case 97: return 232448;     // opt-in shared memory per block
    case 115: return 1;         // memory pools supported
    default: return 0;
  }
}

}  // namespace

EMU_API CUresult cuInit(unsigned flags) {
  if (flags != 0) return kInvalidValue;
  std::lock_guard<std::mutex> g(mu);
  initialized = true;
  emu::install_fault_handlers();
  return kSuccess;
}

EMU_API CUresult cuDriverGetVersion(int* v) {
  if (!v) return kInvalidValue;
  *v = 12020;
  return kSuccess;
}

EMU_API CUresult cuGetErrorName(CUresult r, const char** s) {
  if (!s) return kInvalidValue;
  const ErrorText* e = error_text(r);
  *s = e ? e->name : nullptr;
  return e ? kSuccess : kInvalidValue;
}

EMU_API CUresult cuGetErrorString(CUresult r, const char** s) {
  if (!s) return kInvalidValue;
  const ErrorText* e = error_text(r);
  *s = e ? e->text : nullptr;
  return e ? kSuccess : kInvalidValue;
}

EMU_API CUresult cuDeviceGetCount(int* n) {
  if (!initialized) return kNotInitialized;
  if (!n) return kInvalidValue;
  *n = 1;
  return kSuccess;
}

EMU_API CUresult cuDeviceGet(int* d, int ordinal) {
  if (!initialized) return kNotInitialized;
  if (!d) return kInvalidValue;
  if (ordinal != 0) return kInvalidDevice;
  *d = 0;
  return kSuccess;
}

EMU_API CUresult cuDeviceGetName(char* buf, int len, int dev) {
  if (!initialized) return kNotInitialized;
  if (dev != 0) return kInvalidDevice;
  if (!buf || len <= 0) return kInvalidValue;
  snprintf(buf, (size_t)len, "dlf CUDA emulator (CPU, H100-shaped)");
  return kSuccess;
}

EMU_API CUresult cuDeviceGetAttribute(int* v, int attr, int dev) {
  if (!initialized) return kNotInitialized;
  if (dev != 0) return kInvalidDevice;
  if (!v || attr <= 0 || attr >= 200) return kInvalidValue;
  *v = attribute(attr);
  return kSuccess;
}

EMU_API CUresult cuDeviceTotalMem_v2(size_t* n, int dev) {
  if (!initialized) return kNotInitialized;
  if (dev != 0) return kInvalidDevice;
  if (!n) return kInvalidValue;
  *n = kTotalMem;
  return kSuccess;
}

EMU_API CUresult cuDevicePrimaryCtxRetain(void** c, int dev) {
  std::lock_guard<std::mutex> g(mu);
  if (!initialized) return kNotInitialized;
  if (dev != 0) return kInvalidDevice;
  if (!c) return kInvalidValue;
  primaryRefs++;
  *c = &primaryCtx;
  return kSuccess;
}

EMU_API CUresult cuDevicePrimaryCtxRelease_v2(int dev) {
  std::lock_guard<std::mutex> g(mu);
  if (!initialized) return kNotInitialized;
  if (dev != 0) return kInvalidDevice;
  if (primaryRefs == 0) return kInvalidContext;  // released more often than retained
  if (--primaryRefs == 0) reset();
  return kSuccess;
}

EMU_API CUresult cuDevicePrimaryCtxSetFlags_v2(int dev, unsigned flags) {
  if (!initialized) return kNotInitialized;
  if (dev != 0) return kInvalidDevice;
  if (flags & ~0x1fu) return kInvalidValue;
  return kSuccess;
}

EMU_API CUresult cuCtxSetCurrent(void* c) {
  if (!initialized) return kNotInitialized;
  if (c != nullptr && c != &primaryCtx) return kInvalidContext;
  current = c;
  return kSuccess;
}

EMU_API CUresult cuCtxGetCurrent(void** c) {
  if (!initialized) return kNotInitialized;
  if (!c) return kInvalidValue;
  *c = current;
  return kSuccess;
}

EMU_API CUresult cuCtxSynchronize() {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  return unsafe("cuCtxSynchronize", kCaptureUnsupported);
}

EMU_API CUresult cuModuleLoadDataEx(void** out, const void* image, unsigned n, int* opts, void** vals) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!out || !image || (n > 0 && (!opts || !vals))) return kInvalidValue;
  std::vector<emu::PtxEntry> entries;
  std::string err;
  const bool ok = emu::parse_ptx((const char*)image, entries, err);
  std::string info = ok ? "emu: " + std::to_string(entries.size()) + " entries; kernels run as C++ compiled from their .cu sources" : "";
  // JIT log options (cuda.h CUjit_option): 3/4 info log buffer/size, 5/6 error log buffer/size.
  // A size slot holds the buffer size on entry and the bytes written on return.
  auto put = [&](int bufOpt, int sizeOpt, const std::string& text) {
    char* buf = nullptr;
    size_t* size = nullptr;
    for (unsigned i = 0; i < n; i++) {
      if (opts[i] == bufOpt) buf = (char*)vals[i];
      if (opts[i] == sizeOpt) size = (size_t*)&vals[i];
    }
    if (!size) return;
    if (!buf || *size == 0) {
      *size = 0;
      return;
    }
    const size_t w = text.size() < *size - 1 ? text.size() : *size - 1;
    memcpy(buf, text.data(), w);
    buf[w] = 0;
    *size = w;
  };
  put(3, 4, info);
  put(5, 6, ok ? "" : "emu: " + err);
  if (!ok) {
    report("cuModuleLoadDataEx: %s", err.c_str());
    return (unsigned char)((const char*)image)[0] == 0x7f ? kInvalidImage : kInvalidPTX;
  }
  Module* m = new Module{std::move(entries), {}};
  modules.insert(m);
  *out = m;
  return kSuccess;
}

EMU_API CUresult cuModuleGetFunction(void** out, void* mod, const char* name) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  Module* m = (Module*)mod;
  if (!out || !name) return kInvalidValue;
  if (!modules.count(m)) return kInvalidHandle;
  auto cached = m->functions.find(name);
  if (cached != m->functions.end()) {
    *out = cached->second;
    return kSuccess;
  }
  const emu::PtxEntry* entry = nullptr;
  for (const emu::PtxEntry& e : m->entries)
    if (e.name == name) entry = &e;
  if (!entry) return kNotFound;
  const emu::Kernel* k = nullptr;
  for (const emu::Kernel* const* p = emu::kernel_table; *p; p++)
    if (strcmp((*p)->name, name) == 0) k = *p;
  if (!k) {
    report("kernel %s is in the PTX but was not compiled into this emulator: it runs only the extern \"C\" "
         "__global__ kernels of the .cu sources it was built from; rebuild it (make cuda-emu)", name);
    return kNotFound;
  }
  bool same = (int)entry->paramSizes.size() == k->nparams;
  for (int i = 0; same && i < k->nparams; i++) same = entry->paramSizes[i] == k->sizes[i];
  if (!same) {
    std::string ptx, cpp;
    for (unsigned s : entry->paramSizes) ptx += " " + std::to_string(s);
    for (int i = 0; i < k->nparams; i++) cpp += " " + std::to_string(k->sizes[i]);
    report("kernel %s: the PTX declares parameters of sizes [%s ] but %s.cu compiles to [%s ]: the PTX is stale "
         "(make kernels) or the emulator was built from other sources (make cuda-emu)",
         name, ptx.c_str(), k->family, cpp.c_str());
    return kInvalidImage;
  }
  Function* f = new Function{k, *entry, m};
  functions.insert(f);
  m->functions[name] = f;
  *out = f;
  return kSuccess;
}

EMU_API CUresult cuModuleUnload(void* mod) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  Module* m = (Module*)mod;
  if (!modules.erase(m)) return kInvalidHandle;
  for (auto& f : m->functions) {
    functions.erase(f.second);
    delete f.second;
  }
  delete m;
  return kSuccess;
}

EMU_API CUresult cuFuncGetAttribute(int* v, int attr, void* fn) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  Function* f = (Function*)fn;
  if (!v) return kInvalidValue;
  if (!functions.count(f)) return kInvalidHandle;
  switch (attr) {
    case 0: *v = f->entry.maxThreads ? (int)f->entry.maxThreads : 1024; break;  // max threads per block
    case 1: *v = (int)f->entry.sharedBytes; break;                              // static shared bytes
    case 2: case 3: case 8: *v = 0; break;  // const, local (no spills known), max dynamic shared
    case 4: *v = 32; break;                 // registers: ptxas is not run; a plausible figure
    case 5: *v = 78; break;                 // PTX version of the committed PTX (7.8)
    case 6: *v = 90; break;                 // binary version: the reported sm_90
    case 9: *v = -1; break;                 // preferred carveout: none set
    default:
      if (attr < 0 || attr > 16) return kInvalidValue;
      *v = 0;
  }
  return kSuccess;
}

EMU_API CUresult cuFuncSetAttribute(void* fn, int attr, int value) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!functions.count((Function*)fn)) return kInvalidHandle;
  if (attr == 8 && (value < 0 || value > attribute(97))) return kInvalidValue;
  if (attr != 8 && attr != 9 && !(attr >= 10 && attr <= 16)) return kInvalidValue;
  return kSuccess;
}

CUresult run_launch(Function* f, void** params, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz);

EMU_API CUresult cuLaunchKernel(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                                unsigned shmem, void* stream, void** params, void** extra) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  Function* f = (Function*)fn;
  if (!functions.count(f)) return kInvalidHandle;
  if (!stream_ok(stream)) return kInvalidHandle;
  const emu::Kernel& k = *f->kernel;
  const unsigned long long threads = (unsigned long long)bx * by * bz;
  const unsigned limit = f->entry.maxThreads ? f->entry.maxThreads : 1024;
  if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0 || gx > 2147483647u || gy > 65535 || gz > 65535 ||
      bx > 1024 || by > 1024 || bz > 64 || threads > limit || shmem + f->entry.sharedBytes > (unsigned)attribute(97)) {
    report("%s: invalid launch: grid (%u,%u,%u), block (%u,%u,%u) (the kernel allows %u threads), %u B dynamic shared",
         k.name, gx, gy, gz, bx, by, bz, limit, shmem);
    return kInvalidValue;
  }
  if (extra) {
    report("%s: launch with the 'extra' argument buffer is not emulated; pass kernelParams", k.name);
    return kInvalidValue;
  }
  if (k.nparams > 0 && !params) return kInvalidValue;
  for (int i = 0; i < k.nparams; i++) {
    if (!params[i]) return kInvalidValue;
    if (!((k.ptrMask >> i) & 1)) continue;
    const CUdeviceptr p = *(const CUdeviceptr*)params[i];
    if (p != 0 && !find(p, 0)) {
      report("%s: pointer parameter %d = %#llx is %s: sticky CUDA_ERROR_ILLEGAL_ADDRESS", k.name, i, p, describe(p).c_str());
      sticky = kIllegalAddress;
      return kSuccess;  // asynchronous: the fault surfaces at the next call
    }
  }
  if (getenv("EMU_TRACE")) report("launch %s grid (%u,%u,%u) block (%u,%u,%u)", k.name, gx, gy, gz, bx, by, bz);
  // Counting mode (DLF_EMU_SKIP_KERNELS=1): the launch is checked as above but its body does not run,
  // so the host side of a large model's step (launches, synchronisations, allocations, Go time) can
  // be measured here in seconds; results in device memory are then meaningless.
  if (Capture* c = capturing(stream)) {
    if (c->invalid) return kCaptureInvalidated;
    Op op;
    op.kind = Op::kLaunch;
    op.fn = f;
    op.grid[0] = gx, op.grid[1] = gy, op.grid[2] = gz;
    op.block[0] = bx, op.block[1] = by, op.block[2] = bz;
    for (int i = 0; i < k.nparams; i++) {
      op.offsets.push_back(op.args.size());
      const unsigned char* v = (const unsigned char*)params[i];
      op.args.insert(op.args.end(), v, v + k.sizes[i]);
    }
    c->graph->ops.push_back(std::move(op));
    return kSuccess;
  }
  return run_launch(f, params, gx, gy, gz, bx, by, bz);
}

// run_launch runs a checked launch (or, in counting mode, does not).
CUresult run_launch(Function* f, void** params, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {
  const emu::Kernel& k = *f->kernel;
  static const bool skip = getenv("DLF_EMU_SKIP_KERNELS") && getenv("DLF_EMU_SKIP_KERNELS")[0] == '1';
  if (skip) return kSuccess;
  const emu::LaunchResult res = emu::run_grid(k, params, {gx, gy, gz}, {bx, by, bz});
  if (res.code != 0) {
    std::string msg = res.message;
    if (res.faulted && res.code == kIllegalAddress) msg += " (" + describe(res.faultAddr) + ")";
    if (res.code == kIllegalAddress || res.code == kLaunchFailed) {
      report("%s: sticky %s", msg.c_str(), error_text(res.code)->name);
      sticky = res.code;
      return kSuccess;
    }
    report("%s", msg.c_str());
    return res.code;
  }
  return kSuccess;
}

EMU_API CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t size) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (CUresult r = unsafe("cuMemAlloc", kCaptureUnsupported)) return r;
  return alloc(p, size, false);
}

EMU_API CUresult cuMemFree_v2(CUdeviceptr p) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (CUresult r = unsafe("cuMemFree", kCaptureUnsupported)) return r;
  return release(p, false);
}

EMU_API CUresult cuMemGetInfo_v2(size_t* free, size_t* total) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!free || !total) return kInvalidValue;
  *free = kTotalMem - used;
  *total = kTotalMem;
  return kSuccess;
}

EMU_API CUresult cuMemAllocHost_v2(void** p, size_t size) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!p) return kInvalidValue;
  return alloc((CUdeviceptr*)p, size, true);
}

EMU_API CUresult cuMemFreeHost(void* p) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  return release((CUdeviceptr)p, true);
}

EMU_API CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void* s, size_t n) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (CUresult r = unsafe("cuMemcpyHtoD", kCaptureImplicit)) return r;
  return copy((void*)d, true, s, false, n, "cuMemcpyHtoD");
}

EMU_API CUresult cuMemcpyDtoH_v2(void* d, CUdeviceptr s, size_t n) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (CUresult r = unsafe("cuMemcpyDtoH", kCaptureImplicit)) return r;
  return copy(d, false, (const void*)s, true, n, "cuMemcpyDtoH");
}

EMU_API CUresult cuMemcpyDtoD_v2(CUdeviceptr d, CUdeviceptr s, size_t n) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (CUresult r = unsafe("cuMemcpyDtoD", kCaptureImplicit)) return r;
  return copy((void*)d, true, (const void*)s, true, n, "cuMemcpyDtoD");
}

EMU_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* s, size_t n, void* st) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!stream_ok(st)) return kInvalidHandle;
  if (Capture* c = capturing(st)) {
    // Host memory in a graph is read or written at each launch; dlf's graphs keep host traffic out
    // (inputs are copied in before a launch), so the emulator refuses it instead of modeling it.
    c->invalid = true;
    c->why = "cuMemcpyHtoDAsync on the capturing stream";
    report("cuMemcpyHtoDAsync: host copies are not captured; the capture is invalidated");
    return kCaptureUnsupported;
  }
  return copy((void*)d, true, s, false, n, "cuMemcpyHtoDAsync");
}

EMU_API CUresult cuMemcpyDtoHAsync_v2(void* d, CUdeviceptr s, size_t n, void* st) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!stream_ok(st)) return kInvalidHandle;
  if (Capture* c = capturing(st)) {
    // Host memory in a graph is read or written at each launch; dlf's graphs keep host traffic out
    // (inputs are copied in before a launch), so the emulator refuses it instead of modeling it.
    c->invalid = true;
    c->why = "cuMemcpyDtoHAsync on the capturing stream";
    report("cuMemcpyDtoHAsync: host copies are not captured; the capture is invalidated");
    return kCaptureUnsupported;
  }
  return copy(d, false, (const void*)s, true, n, "cuMemcpyDtoHAsync");
}

EMU_API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, void* st) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!stream_ok(st)) return kInvalidHandle;
  if (Capture* c = capturing(st)) {
    if (c->invalid) return kCaptureInvalidated;
    if (n > 0 && (!find(d, n) || !find(s, n))) return kInvalidValue;
    Op op;
    op.kind = Op::kCopy, op.dst = d, op.src = s, op.n = n;
    c->graph->ops.push_back(op);
    return kSuccess;
  }
  return copy((void*)d, true, (const void*)s, true, n, "cuMemcpyDtoDAsync");
}

EMU_API CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, void* st) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!stream_ok(st)) return kInvalidHandle;
  if (n == 0) return kSuccess;
  if (!find(d, n)) return kInvalidValue;
  if (Capture* c = capturing(st)) {
    if (c->invalid) return kCaptureInvalidated;
    Op op;
    op.kind = Op::kMemset8, op.dst = d, op.n = n, op.value = v;
    c->graph->ops.push_back(op);
    return kSuccess;
  }
  memset((void*)d, v, n);
  return kSuccess;
}

EMU_API CUresult cuMemsetD32Async(CUdeviceptr d, unsigned v, size_t n, void* st) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!stream_ok(st)) return kInvalidHandle;
  if (n == 0) return kSuccess;
  if (d % 4 != 0 || n > (size_t)-1 / 4 || !find(d, 4 * n)) return kInvalidValue;
  if (Capture* c = capturing(st)) {
    if (c->invalid) return kCaptureInvalidated;
    Op op;
    op.kind = Op::kMemset32, op.dst = d, op.n = n, op.value = v;
    c->graph->ops.push_back(op);
    return kSuccess;
  }
  unsigned* q = (unsigned*)d;
  for (size_t i = 0; i < n; i++) q[i] = v;
  return kSuccess;
}

EMU_API CUresult cuStreamCreate(void** s, unsigned flags) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!s || flags > 1) return kInvalidValue;
  Stream* st = new Stream{flags};
  streams.insert(st);
  *s = st;
  return kSuccess;
}

EMU_API CUresult cuStreamDestroy_v2(void* s) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!streams.erase((Stream*)s)) return kInvalidHandle;
  delete (Stream*)s;
  return kSuccess;
}

EMU_API CUresult cuStreamSynchronize(void* s) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (CUresult r = unsafe("cuStreamSynchronize", kCaptureUnsupported)) return r;
  return stream_ok(s) ? kSuccess : kInvalidHandle;
}

EMU_API CUresult cuStreamQuery(void* s) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (CUresult r = unsafe("cuStreamQuery", kCaptureUnsupported)) return r;
  return stream_ok(s) ? kSuccess : kInvalidHandle;
}

EMU_API CUresult cuStreamWaitEvent(void* s, void* e, unsigned flags) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!stream_ok(s) || !events.count((Event*)e)) return kInvalidHandle;
  return flags == 0 ? kSuccess : kInvalidValue;
}

EMU_API CUresult cuEventCreate(void** e, unsigned flags) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!e || flags > 7) return kInvalidValue;
  Event* ev = new Event{flags};
  events.insert(ev);
  *e = ev;
  return kSuccess;
}

EMU_API CUresult cuEventRecord(void* e, void* s) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  Event* ev = (Event*)e;
  if (!events.count(ev) || !stream_ok(s)) return kInvalidHandle;
  ev->recorded = true;
  ev->ms = now_ms();
  return kSuccess;
}

EMU_API CUresult cuEventSynchronize(void* e) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (CUresult r = unsafe("cuEventSynchronize", kCaptureUnsupported)) return r;
  return events.count((Event*)e) ? kSuccess : kInvalidHandle;
}

EMU_API CUresult cuEventQuery(void* e) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  return events.count((Event*)e) ? kSuccess : kInvalidHandle;
}

EMU_API CUresult cuEventDestroy_v2(void* e) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!events.erase((Event*)e)) return kInvalidHandle;
  delete (Event*)e;
  return kSuccess;
}

EMU_API CUresult cuEventElapsedTime(float* ms, void* a, void* b) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  Event *ea = (Event*)a, *eb = (Event*)b;
  if (!ms) return kInvalidValue;
  if (!events.count(ea) || !events.count(eb) || (ea->flags & 2) || (eb->flags & 2)) return kInvalidHandle;
  if (!ea->recorded || !eb->recorded) return kNotReady;
  *ms = (float)(eb->ms - ea->ms);
  return kSuccess;
}

EMU_API CUresult cuDeviceCanAccessPeer(int* ok, int dev, int peer) {
  if (!initialized) return kNotInitialized;
  if (!ok) return kInvalidValue;
  if (dev != 0 || peer != 0) return kInvalidDevice;
  *ok = 0;  // one device: no peers
  return kSuccess;
}

EMU_API CUresult cuCtxEnablePeerAccess(void* peer, unsigned flags) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (flags != 0) return kInvalidValue;
  return peer == &primaryCtx ? kInvalidValue : kInvalidContext;  // a context is not its own peer
}

EMU_API CUresult cuCtxDisablePeerAccess(void* peer) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  return peer == &primaryCtx ? kPeerAccessUnsupported : kInvalidContext;
}

EMU_API CUresult cuMemcpyPeerAsync(CUdeviceptr d, void* dctx, CUdeviceptr s, void* sctx, size_t n, void* st) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (dctx != &primaryCtx || sctx != &primaryCtx) return kInvalidContext;
  if (!stream_ok(st)) return kInvalidHandle;
  return copy((void*)d, true, (const void*)s, true, n, "cuMemcpyPeerAsync");
}

// Stream-ordered allocation: every call completes at once, so a pool allocation is a plain one.
EMU_API CUresult cuDeviceGetDefaultMemPool(void** p, int dev) {
  if (!initialized) return kNotInitialized;
  if (dev != 0) return kInvalidDevice;
  if (!p) return kInvalidValue;
  *p = &pool;
  return kSuccess;
}

EMU_API CUresult cuMemPoolSetAttribute(void* p, int attr, void* value) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (p != &pool) return kInvalidHandle;
  if (!value || attr < 1 || attr > 8) return kInvalidValue;
  return kSuccess;
}

EMU_API CUresult cuMemPoolTrimTo(void* p, size_t) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  return p == &pool ? kSuccess : kInvalidHandle;
}

EMU_API CUresult cuMemPoolSetAccess(void* p, const int* desc, size_t count) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (p != &pool) return kInvalidHandle;
  // CUmemAccessDesc: {location type, location id, flags}; only this device (type 1, id 0) exists.
  for (size_t i = 0; i < count; i++)
    if (!desc || desc[3 * i] != 1 || desc[3 * i + 1] != 0 || (desc[3 * i + 2] != 0 && desc[3 * i + 2] != 3))
      return kInvalidValue;
  return kSuccess;
}

EMU_API CUresult cuMemAllocAsync(CUdeviceptr* p, size_t size, void* st) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!stream_ok(st)) return kInvalidHandle;
  if (capturing(st)) return kCaptureUnsupported;  // allocation nodes are not emulated
  return alloc(p, size, false);
}

EMU_API CUresult cuMemFreeAsync(CUdeviceptr p, void* st) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!stream_ok(st)) return kInvalidHandle;
  return release(p, false);
}

// Stream capture and graphs. A capture records the launches, device copies and memsets queued on
// its stream (nothing runs); the calls a capture forbids invalidate it (unsafe()); EndCapture hands
// the recorded operations over as a graph; a launch of its instantiation runs them in order on the
// launching thread, with the argument values of capture time. Captured pointer arguments are
// checked again at each launch, so a graph that names memory freed since capture faults like any
// wild pointer (sticky CUDA_ERROR_ILLEGAL_ADDRESS). Not modeled: memory-allocation nodes, host
// copies (refused during capture), graph update, child graphs and cross-stream capture joins.
EMU_API CUresult cuStreamBeginCapture_v2(void* s, int mode) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  // DLF_EMU_NO_GRAPHS=1 plays a driver that refuses capture (read at each call, so a test can set
  // it), for the fall-back paths.
  if (const char* v = getenv("DLF_EMU_NO_GRAPHS"); v && v[0] == '1') return 801;  // CUDA_ERROR_NOT_SUPPORTED
  if (s == nullptr || !stream_ok(s)) return kCaptureUnsupported;  // not on the legacy stream
  if (mode < 0 || mode > 2) return kInvalidValue;
  if (capturing(s)) return kCaptureUnsupported;
  Capture c{new Graph, mode, pthread_self(), false, std::string()};
  captures.emplace((Stream*)s, std::move(c));
  return kSuccess;
}

EMU_API CUresult cuStreamEndCapture(void* s, void** graph) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!graph) return kInvalidValue;
  *graph = nullptr;
  Capture* c = capturing(s);
  if (!c) return kIllegalState;
  if (c->mode != 2 && !pthread_equal(c->thread, pthread_self())) return kCaptureWrongThread;
  Graph* gr = c->graph;
  bool invalid = c->invalid;
  captures.erase((Stream*)s);
  if (invalid) {
    delete gr;
    return kCaptureInvalidated;
  }
  graphs.insert(gr);
  *graph = gr;
  return kSuccess;
}

EMU_API CUresult cuStreamIsCapturing(void* s, int* status) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!status || !stream_ok(s)) return kInvalidValue;
  Capture* c = capturing(s);
  *status = c == nullptr ? 0 : (c->invalid ? 2 : 1);
  return kSuccess;
}

EMU_API CUresult cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long flags) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!exec || !graphs.count((Graph*)graph)) return kInvalidValue;
  if (flags != 0) return kInvalidValue;  // AUTO_FREE_ON_LAUNCH etc. concern allocation nodes
  GraphExec* ex = new GraphExec{((Graph*)graph)->ops};
  execs.insert(ex);
  *exec = ex;
  return kSuccess;
}

EMU_API CUresult cuGraphLaunch(void* exec, void* s) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  GraphExec* ex = (GraphExec*)exec;
  if (!execs.count(ex) || !stream_ok(s)) return kInvalidHandle;
  if (capturing(s)) return kCaptureUnsupported;  // child graphs are not emulated
  // Counting mode runs no kernel, so a replay has nothing to do (the host's cost is the call).
  static const bool skip = getenv("DLF_EMU_SKIP_KERNELS") && getenv("DLF_EMU_SKIP_KERNELS")[0] == '1';
  if (skip) return kSuccess;
  for (Op& op : ex->ops) {
    switch (op.kind) {
      case Op::kLaunch: {
        const emu::Kernel& k = *op.fn->kernel;
        if (!functions.count(op.fn)) return kInvalidHandle;
        std::vector<void*> params(k.nparams);
        for (int i = 0; i < k.nparams; i++) {
          params[i] = op.args.data() + op.offsets[i];
          if (!((k.ptrMask >> i) & 1)) continue;
          const CUdeviceptr p = *(const CUdeviceptr*)params[i];
          if (p != 0 && !find(p, 0)) {
            report("%s (graph replay): pointer parameter %d = %#llx is %s: sticky CUDA_ERROR_ILLEGAL_ADDRESS", k.name, i, p,
                   describe(p).c_str());
            sticky = kIllegalAddress;
            return kSuccess;
          }
        }
        CUresult r = run_launch(op.fn, params.data(), op.grid[0], op.grid[1], op.grid[2], op.block[0], op.block[1], op.block[2]);
        if (r != kSuccess) return r;
        if (sticky) return kSuccess;
        break;
      }
      case Op::kCopy:
        if (CUresult r = copy((void*)op.dst, true, (const void*)op.src, true, op.n, "cuMemcpyDtoDAsync (graph replay)")) return r;
        break;
      case Op::kMemset8:
        if (!find(op.dst, op.n)) return kInvalidValue;
        memset((void*)op.dst, (int)op.value, op.n);
        break;
      case Op::kMemset32: {
        if (!find(op.dst, 4 * op.n)) return kInvalidValue;
        unsigned* q = (unsigned*)op.dst;
        for (size_t i = 0; i < op.n; i++) q[i] = op.value;
        break;
      }
    }
  }
  return kSuccess;
}

EMU_API CUresult cuGraphExecDestroy(void* exec) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!execs.erase((GraphExec*)exec)) return kInvalidHandle;
  delete (GraphExec*)exec;
  return kSuccess;
}

EMU_API CUresult cuGraphDestroy(void* graph) {
  std::lock_guard<std::mutex> g(mu);
  if (CUresult r = ctx_check()) return r;
  if (!graphs.erase((Graph*)graph)) return kInvalidHandle;
  delete (Graph*)graph;
  return kSuccess;
}
