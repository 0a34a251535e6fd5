// nccl.cpp: a fake libnccl.so.2 for dlf's tests on machines without a GPU, the companion of the
// CUDA driver emulator (scripts/cudaemu). It exports the NCCL 2.x entry points that
// tensor/collective/nccl binds, with NCCL's prototypes (so the C calling convention of every
// argument, the 128-byte ncclUniqueId passed by value included, is the real library's) and NCCL's
// result, data-type and reduction-op codes (nccl.h.in, v2.30.7). Load it with
// DLF_LIBNCCL=/path/libnccl_emu.so.
//
// What it models: communicators of several processes (or several threads of one process) on one
// machine, found through the unique id: ncclGetUniqueId makes a random id, and every rank that
// passes it to ncclCommInitRank maps the same POSIX shared-memory segment, named after the id, and
// waits there until all nranks ranks have joined (as NCCL's bootstrap does). Collectives are
// executed synchronously by the calling thread over that segment: each rank copies its input into
// its slot, a barrier, each rank reduces the slots in rank order (so with two ranks a sum is a + b on
// both, as on a ring), another barrier. Device pointers are plain addresses here: under the CUDA
// emulator device memory is host memory of the same process, and every CUDA call completes before
// it returns, so the input of a collective is final when the collective is called.
//
// Failures, as a program sees them from NCCL: a rank whose process has exited (or is a zombie)
// makes the collectives of the others fail with ncclRemoteError ("remote process exited or there
// was a network error"), which is both returned and left as the communicator's asynchronous
// error (ncclCommGetAsyncError); a rank that is alive but does not arrive (stopped, or stuck
// elsewhere) makes the others wait until their communicator is aborted with ncclCommAbort from
// another thread, which is how a watchdog ends a hung NCCL collective. ncclGetLastError names the
// rank that was found gone.
//
// Deviations from NCCL, on purpose: no asynchrony (streams are ignored; a collective is complete
// when it returns, and an error that NCCL reports asynchronously is also returned by the call);
// ncclAvg divides the sum by nranks (NCCL pre-multiplies floating-point inputs); one machine only.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#define EMU_API extern "C" __attribute__((visibility("default")))

namespace {

// nccl.h.in (v2.30.7): ncclResult_t, ncclDataType_t, ncclRedOp_t.
enum Result { ncclSuccess = 0, ncclUnhandledCudaError = 1, ncclSystemError = 2, ncclInternalError = 3,
              ncclInvalidArgument = 4, ncclInvalidUsage = 5, ncclRemoteError = 6, ncclInProgress = 7 };
enum DataType { ncclInt8 = 0, ncclUint8 = 1, ncclInt32 = 2, ncclUint32 = 3, ncclInt64 = 4, ncclUint64 = 5,
                ncclFloat16 = 6, ncclFloat32 = 7, ncclFloat64 = 8, ncclBfloat16 = 9 };
enum RedOp { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 };

// The version reported: 2.23.4 in NCCL_VERSION's encoding (X*10000 + Y*100 + Z).
constexpr int kVersion = 22304;

constexpr int kMaxRanks = 64;
constexpr size_t kSlotBytes = 1 << 20;  // per rank: the largest piece of one collective step
constexpr char kMagic[16] = "dlf-nccl-emu-id";

struct UniqueId {
  char internal[128];
};

// Header of the shared segment; the slots follow it, page-aligned.
struct Header {
  std::atomic<int32_t> nranks;  // 0 until the first rank sets it
  std::atomic<int32_t> joined;
  std::atomic<uint32_t> count;  // barrier arrivals of the current generation
  std::atomic<uint32_t> gen;    // barrier generation
  std::atomic<int32_t> pid[kMaxRanks];
};
constexpr size_t kHeaderBytes = (sizeof(Header) + 4095) / 4096 * 4096;

struct Comm {
  int rank = 0, nranks = 0;
  Header* hdr = nullptr;
  char* slots = nullptr;
  size_t bytes = 0;
  std::atomic<int> aborted{0};
  std::atomic<int> asyncErr{ncclSuccess};
  std::string lastError;
};

thread_local std::string gLastError;  // for calls without a communicator

Result fail(Comm* c, Result r, const std::string& msg) {
  if (c) c->lastError = msg; else gLastError = msg;
  if (getenv("NCCL_DEBUG")) fprintf(stderr, "ncclemu: %s\n", msg.c_str());
  return r;
}

std::string segName(const UniqueId& id) {
  static const char* hex = "0123456789abcdef";
  std::string s = "/dlf-ncclemu-";
  for (int i = 16; i < 32; i++) {
    unsigned char b = static_cast<unsigned char>(id.internal[i]);
    s += hex[b >> 4];
    s += hex[b & 15];
  }
  return s;
}

// gone reports whether process pid has exited: no such process, or a zombie awaiting its parent.
bool gone(int pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno == ESRCH) return true;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* f = fopen(path, "r");
  if (!f) return true;
  char buf[512];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char* p = strrchr(buf, ')');  // the state follows the command name in parentheses
  return p && p[1] == ' ' && p[2] == 'Z';
}

void pause_briefly(int spins) {
  if (spins < 2000) return;
  struct timespec ts = {0, 20000};  // 20 µs
  nanosleep(&ts, nullptr);
}

// check returns ncclSuccess while the communicator can go on waiting: not aborted, every peer
// alive. The caller records a lost peer as the asynchronous error (failed).
Result check(Comm* c) {
  if (c->aborted.load()) return fail(c, ncclInvalidUsage, "communicator aborted");
  if (c->asyncErr.load() != ncclSuccess) return static_cast<Result>(c->asyncErr.load());
  for (int r = 0; r < c->nranks; r++) {
    if (r == c->rank) continue;
    int pid = c->hdr->pid[r].load();
    if (gone(pid)) {
      char msg[160];
      snprintf(msg, sizeof msg, "remote process exited or there was a network error: rank %d (pid %d) has exited", r, pid);
      return fail(c, ncclRemoteError, msg);
    }
  }
  return ncclSuccess;
}

// failed records a lost peer as the communicator's asynchronous error and returns r.
Result failed(Comm* c, Result r) {
  if (r == ncclRemoteError) c->asyncErr.store(r);
  return r;
}

// barrier returns once every rank has arrived (a sense-reversing counter in the segment).
Result barrier(Comm* c) {
  Header* h = c->hdr;
  uint32_t g = h->gen.load();
  if (h->count.fetch_add(1) + 1 == static_cast<uint32_t>(c->nranks)) {
    h->count.store(0);
    h->gen.fetch_add(1);
    return ncclSuccess;
  }
  for (int spins = 0; h->gen.load() == g; spins++) {
    if (spins % 256 == 0) {
      Result r = check(c);
      // A peer that completed the barrier and then exited is not a failure of this one.
      if (r != ncclSuccess && h->gen.load() == g) return failed(c, r);
    }
    pause_briefly(spins);
  }
  return ncclSuccess;
}

size_t typeSize(int dt) {
  switch (dt) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
  }
  return 0;
}

template <typename T>
void reduceInto(T* acc, const T* in, size_t n, int op) {
  for (size_t i = 0; i < n; i++) {
    switch (op) {
      case ncclSum: case ncclAvg: acc[i] = acc[i] + in[i]; break;
      case ncclProd: acc[i] = acc[i] * in[i]; break;
      case ncclMax: acc[i] = in[i] > acc[i] ? in[i] : acc[i]; break;
      case ncclMin: acc[i] = in[i] < acc[i] ? in[i] : acc[i]; break;
    }
  }
}

template <typename T>
void reduceSlots(Comm* c, void* out, size_t off, size_t n, int op) {
  T* acc = reinterpret_cast<T*>(out) + off;
  memcpy(acc, c->slots, n * sizeof(T));
  for (int r = 1; r < c->nranks; r++) reduceInto(acc, reinterpret_cast<const T*>(c->slots + r * kSlotBytes), n, op);
  if (op == ncclAvg) {
    for (size_t i = 0; i < n; i++) acc[i] = static_cast<T>(acc[i] / static_cast<T>(c->nranks));
  }
}

Result validComm(Comm* c) {
  if (!c || !c->hdr) return fail(nullptr, ncclInvalidArgument, "invalid communicator");
  return ncclSuccess;
}

void unmap(Comm* c) {
  if (c->hdr) munmap(c->hdr, c->bytes);
  c->hdr = nullptr;
}

}  // namespace

typedef Comm* ncclComm_t;

EMU_API int ncclGetVersion(int* version) {
  if (!version) return fail(nullptr, ncclInvalidArgument, "ncclGetVersion: null pointer");
  *version = kVersion;
  return ncclSuccess;
}

EMU_API const char* ncclGetErrorString(int r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
  }
  return "unknown result code";
}

EMU_API const char* ncclGetLastError(ncclComm_t comm) {
  return comm ? comm->lastError.c_str() : gLastError.c_str();
}

EMU_API int ncclGetUniqueId(UniqueId* id) {
  if (!id) return fail(nullptr, ncclInvalidArgument, "ncclGetUniqueId: null pointer");
  memset(id, 0, sizeof *id);
  memcpy(id->internal, kMagic, sizeof kMagic);
  int fd = open("/dev/urandom", O_RDONLY);
  if (fd < 0 || read(fd, id->internal + 16, 16) != 16) {
    if (fd >= 0) close(fd);
    return fail(nullptr, ncclSystemError, "ncclGetUniqueId: cannot read /dev/urandom");
  }
  close(fd);
  return ncclSuccess;
}

EMU_API int ncclCommInitRank(ncclComm_t* out, int nranks, UniqueId id, int rank) {
  if (!out) return fail(nullptr, ncclInvalidArgument, "ncclCommInitRank: null communicator pointer");
  *out = nullptr;
  if (memcmp(id.internal, kMagic, sizeof kMagic) != 0)
    return fail(nullptr, ncclInvalidArgument, "ncclCommInitRank: the unique id was not made by ncclGetUniqueId (bytes changed in transit, or passed the wrong way)");
  if (nranks < 1 || nranks > kMaxRanks)
    return fail(nullptr, ncclInvalidArgument, "ncclCommInitRank: nranks " + std::to_string(nranks) + " out of range");
  if (rank < 0 || rank >= nranks)
    return fail(nullptr, ncclInvalidArgument, "ncclCommInitRank: rank " + std::to_string(rank) + " of " + std::to_string(nranks));
  std::string name = segName(id);
  int fd = shm_open(name.c_str(), O_CREAT | O_RDWR, 0600);
  if (fd < 0) return fail(nullptr, ncclSystemError, "ncclCommInitRank: shm_open " + name + ": " + strerror(errno));
  size_t bytes = kHeaderBytes + static_cast<size_t>(nranks) * kSlotBytes;
  struct stat st;
  if (fstat(fd, &st) != 0 || (static_cast<size_t>(st.st_size) < bytes && ftruncate(fd, bytes) != 0)) {
    close(fd);
    return fail(nullptr, ncclSystemError, "ncclCommInitRank: size " + name + ": " + strerror(errno));
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return fail(nullptr, ncclSystemError, "ncclCommInitRank: mmap " + name + ": " + strerror(errno));
  Comm* c = new Comm;
  c->rank = rank;
  c->nranks = nranks;
  c->hdr = static_cast<Header*>(p);
  c->slots = static_cast<char*>(p) + kHeaderBytes;
  c->bytes = bytes;
  int32_t zero = 0;
  if (!c->hdr->nranks.compare_exchange_strong(zero, nranks) && zero != nranks) {
    unmap(c);
    delete c;
    return fail(nullptr, ncclInvalidUsage, "ncclCommInitRank: this rank was given " + std::to_string(nranks) + " ranks, another " + std::to_string(zero));
  }
  int32_t none = 0;
  if (!c->hdr->pid[rank].compare_exchange_strong(none, static_cast<int32_t>(getpid()))) {
    unmap(c);
    delete c;
    return fail(nullptr, ncclInvalidUsage, "ncclCommInitRank: rank " + std::to_string(rank) + " joined twice");
  }
  c->hdr->joined.fetch_add(1);
  // Wait for every rank to join (NCCL's bootstrap also blocks here), at most 5 minutes.
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int spins = 0; c->hdr->joined.load() < nranks; spins++) {
    pause_briefly(spins + 2000);
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (t.tv_sec - t0.tv_sec > 300) {
      unmap(c);
      delete c;
      return fail(nullptr, ncclSystemError, "ncclCommInitRank: not every rank joined within 300 s");
    }
  }
  Result r = barrier(c);
  if (r != ncclSuccess) {
    std::string msg = c->lastError;
    unmap(c);
    delete c;
    return fail(nullptr, r, msg);
  }
  // Every rank has the segment mapped: its name can go, so nothing is left behind in /dev/shm.
  if (rank == 0) shm_unlink(name.c_str());
  *out = c;
  return ncclSuccess;
}

EMU_API int ncclCommCount(const ncclComm_t comm, int* count) {
  if (Result r = validComm(comm); r != ncclSuccess) return r;
  *count = comm->nranks;
  return ncclSuccess;
}

EMU_API int ncclCommUserRank(const ncclComm_t comm, int* rank) {
  if (Result r = validComm(comm); r != ncclSuccess) return r;
  *rank = comm->rank;
  return ncclSuccess;
}

EMU_API int ncclCommGetAsyncError(ncclComm_t comm, int* err) {
  if (Result r = validComm(comm); r != ncclSuccess) return r;
  *err = comm->asyncErr.load();
  return ncclSuccess;
}

// ncclCommAbort may be called from another thread while a collective waits: the waiting call sees
// the flag and fails. The mapping is kept (a waiting thread may still read it) and the Comm leaks,
// as a process that aborts a communicator is about to exit.
EMU_API int ncclCommAbort(ncclComm_t comm) {
  if (!comm) return ncclSuccess;
  comm->aborted.store(1);
  return ncclSuccess;
}

EMU_API int ncclCommFinalize(ncclComm_t comm) { return validComm(comm); }

EMU_API int ncclCommDestroy(ncclComm_t comm) {
  if (!comm) return ncclSuccess;
  unmap(comm);
  delete comm;
  return ncclSuccess;
}

EMU_API int ncclGroupStart() { return ncclSuccess; }
EMU_API int ncclGroupEnd() { return ncclSuccess; }

EMU_API int ncclAllReduce(const void* send, void* recv, size_t count, int dt, int op, ncclComm_t comm, void* stream) {
  if (Result r = validComm(comm); r != ncclSuccess) return r;
  size_t es = typeSize(dt);
  if (es == 0 || dt == ncclFloat16 || dt == ncclBfloat16) return fail(comm, ncclInvalidArgument, "ncclAllReduce: data type " + std::to_string(dt) + " not emulated");
  if (op < ncclSum || op > ncclAvg) return fail(comm, ncclInvalidArgument, "ncclAllReduce: reduction op " + std::to_string(op));
  if (count > 0 && (!send || !recv)) return fail(comm, ncclInvalidArgument, "ncclAllReduce: null buffer");
  if (Result r = check(comm); r != ncclSuccess) return failed(comm, r);
  size_t per = kSlotBytes / es;
  for (size_t off = 0; off < count; off += per) {
    size_t n = count - off < per ? count - off : per;
    memcpy(comm->slots + comm->rank * kSlotBytes, static_cast<const char*>(send) + off * es, n * es);
    if (Result r = barrier(comm); r != ncclSuccess) return r;
    switch (dt) {
      case ncclInt8: reduceSlots<int8_t>(comm, recv, off, n, op); break;
      case ncclUint8: reduceSlots<uint8_t>(comm, recv, off, n, op); break;
      case ncclInt32: reduceSlots<int32_t>(comm, recv, off, n, op); break;
      case ncclUint32: reduceSlots<uint32_t>(comm, recv, off, n, op); break;
      case ncclInt64: reduceSlots<int64_t>(comm, recv, off, n, op); break;
      case ncclUint64: reduceSlots<uint64_t>(comm, recv, off, n, op); break;
      case ncclFloat32: reduceSlots<float>(comm, recv, off, n, op); break;
      case ncclFloat64: reduceSlots<double>(comm, recv, off, n, op); break;
    }
    // The slots are reused by the next piece only after every rank has read them.
    if (Result r = barrier(comm); r != ncclSuccess) return r;
  }
  return ncclSuccess;
}

EMU_API int ncclBroadcast(const void* send, void* recv, size_t count, int dt, int root, ncclComm_t comm, void* stream) {
  if (Result r = validComm(comm); r != ncclSuccess) return r;
  size_t es = typeSize(dt);
  if (es == 0) return fail(comm, ncclInvalidArgument, "ncclBroadcast: data type " + std::to_string(dt));
  if (root < 0 || root >= comm->nranks) return fail(comm, ncclInvalidArgument, "ncclBroadcast: root " + std::to_string(root));
  if (Result r = check(comm); r != ncclSuccess) return failed(comm, r);
  size_t per = kSlotBytes / es;
  for (size_t off = 0; off < count; off += per) {
    size_t n = count - off < per ? count - off : per;
    if (comm->rank == root) memcpy(comm->slots + root * kSlotBytes, static_cast<const char*>(send) + off * es, n * es);
    if (Result r = barrier(comm); r != ncclSuccess) return r;
    memmove(static_cast<char*>(recv) + off * es, comm->slots + root * kSlotBytes, n * es);
    if (Result r = barrier(comm); r != ncclSuccess) return r;
  }
  return ncclSuccess;
}
