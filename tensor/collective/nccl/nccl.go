// Package nccl binds NVIDIA's NCCL for dlf without cgo: libnccl.so.2 is loaded at run time with
// purego, as tensor/cuda/cu loads libcuda, so a binary built with CGO_ENABLED=0 uses NCCL where it is
// installed and runs everywhere else as long as it does not ask for it.
//
// It provides what data-parallel training on GPUs needs: a communicator made from a unique id
// (Library.UniqueID on rank 0, carried to the other ranks by any side channel — MPI or the TCP
// rendezvous of tensor/collective/rendezvous — then Library.InitRank on every rank), in-place or
// out-of-place all-reduce and broadcast of device buffers on a CUDA stream, the asynchronous error,
// and abort. Group wraps a communicator as a collective.Group for the small host-side collectives
// (losses, flags, parameters at start).
//
// ABI facts (nccl.h.in, NCCL v2.30.7; ../shared/reference/graphs-tf32-mpi-nccl.md §4): every
// function returns ncclResult_t (int32, 0 success); ncclComm_t is an opaque pointer;
// ncclUniqueId is a 128-byte struct passed to ncclCommInitRank by value, which purego ≥ 0.11
// marshals from a Go struct of the same layout (UniqueID); cudaStream_t is the driver's CUstream.
package nccl

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/ebitengine/purego"

	"dlf/tensor/cuda/cu"
)

// DefaultLibrary is NCCL 2's soname (src/Makefile: libnccl.so.$(NCCL_MAJOR)); LibraryEnv overrides
// the path (e.g. the libnccl.so.2 of a pip wheel, or the emulator scripts/ncclemu builds).
const (
	DefaultLibrary = "libnccl.so.2"
	LibraryEnv     = "DLF_LIBNCCL"
)

// ErrNoLibrary reports that NCCL could not be loaded.
var ErrNoLibrary = errors.New("nccl: NCCL is not available")

// IDBytes is NCCL_UNIQUE_ID_BYTES.
const IDBytes = 128

// UniqueID is ncclUniqueId: 128 opaque bytes made by rank 0 and handed to every rank.
type UniqueID struct{ Internal [IDBytes]byte }

// DataType is ncclDataType_t.
type DataType int32

// The data types dlf moves (nccl.h.in).
const (
	Uint8   DataType = 1
	Int32   DataType = 2
	Float32 DataType = 7
	Float64 DataType = 8
)

// Op is ncclRedOp_t.
type Op int32

// The reductions (nccl.h.in). dlf averages as Sum followed by its own scaling, so that the result
// has the same bits as its other all-reduce paths.
const (
	Sum Op = 0
	Max Op = 2
	Min Op = 3
)

// Result codes (nccl.h.in).
const (
	resultSuccess      = 0
	resultRemoteError  = 6
	resultInProgress   = 7
	minSupportedMajor  = 2
	minSupportedMinor  = 4 // ncclCommAbort and ncclCommGetAsyncError appeared in 2.4
	versionCodeDivisor = 10000
)

// Error is a failed NCCL call: the function, the ncclResult_t, NCCL's text for it and, when the
// library provides it, the communicator's last error message.
type Error struct {
	Func string
	Code int32
	Text string
	Last string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("nccl: %s: %s (ncclResult_t %d)", e.Func, e.Text, e.Code)
	if e.Last != "" {
		s += ": " + e.Last
	}
	return s
}

// Remote reports whether the error is ncclRemoteError: a peer process exited or the network failed.
func (e *Error) Remote() bool { return e.Code == resultRemoteError }

// Library is a loaded NCCL.
type Library struct {
	path    string
	version int

	getVersion   func(*int32) int32
	getErrorStr  func(int32) string
	getLastError func(uintptr) string // nil before NCCL 2.13
	getUniqueID  func(*UniqueID) int32
	commInitRank func(*uintptr, int32, UniqueID, int32) int32
	commDestroy  func(uintptr) int32
	commAbort    func(uintptr) int32
	commAsyncErr func(uintptr, *int32) int32
	allReduce    func(uintptr, uintptr, uintptr, int32, int32, uintptr, uintptr) int32
	broadcast    func(uintptr, uintptr, uintptr, int32, int32, uintptr, uintptr) int32
	groupStart   func() int32
	groupEnd     func() int32
	commUserRank func(uintptr, *int32) int32
	commCount    func(uintptr, *int32) int32
}

var (
	loadMu sync.Mutex
	loaded = map[string]*Library{}
)

// Load opens NCCL ($DLF_LIBNCCL, else libnccl.so.2) once per path and resolves every entry point,
// naming the first that is missing.
func Load() (*Library, error) {
	path := os.Getenv(LibraryEnv)
	if path == "" {
		path = DefaultLibrary
	}
	return LoadPath(path)
}

// LoadPath is Load from an explicit path.
func LoadPath(path string) (*Library, error) {
	loadMu.Lock()
	defer loadMu.Unlock()
	if l := loaded[path]; l != nil {
		return l, nil
	}
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("%w: dlopen %s: %v; install NCCL 2 (NVIDIA's libnccl2 package, or the nvidia-nccl-cu12 Python wheel's nvidia/nccl/lib/libnccl.so.2) or set %s to libnccl.so.2's path",
			ErrNoLibrary, path, err, LibraryEnv)
	}
	l := &Library{path: path}
	for _, s := range []struct {
		name     string
		fn       any
		optional bool
	}{
		{"ncclGetVersion", &l.getVersion, false}, {"ncclGetErrorString", &l.getErrorStr, false},
		{"ncclGetLastError", &l.getLastError, true}, {"ncclGetUniqueId", &l.getUniqueID, false},
		{"ncclCommInitRank", &l.commInitRank, false}, {"ncclCommDestroy", &l.commDestroy, false},
		{"ncclCommAbort", &l.commAbort, false}, {"ncclCommGetAsyncError", &l.commAsyncErr, false},
		{"ncclAllReduce", &l.allReduce, false}, {"ncclBroadcast", &l.broadcast, false},
		{"ncclGroupStart", &l.groupStart, false}, {"ncclGroupEnd", &l.groupEnd, false},
		{"ncclCommUserRank", &l.commUserRank, false}, {"ncclCommCount", &l.commCount, false},
	} {
		a, err := purego.Dlsym(h, s.name)
		if err != nil || a == 0 {
			if s.optional {
				continue
			}
			_ = purego.Dlclose(h)
			return nil, fmt.Errorf("%w: %s has no symbol %s (is it NCCL %d.%d or newer?): %v", ErrNoLibrary, path, s.name, minSupportedMajor, minSupportedMinor, err)
		}
		purego.RegisterFunc(s.fn, a)
	}
	var v int32
	if r := l.getVersion(&v); r != resultSuccess {
		_ = purego.Dlclose(h)
		return nil, fmt.Errorf("%w: %s: ncclGetVersion returned %d", ErrNoLibrary, path, r)
	}
	l.version = int(v)
	if major, minor := l.Version(); major < minSupportedMajor || (major == minSupportedMajor && minor < minSupportedMinor) {
		_ = purego.Dlclose(h)
		return nil, fmt.Errorf("%w: %s is NCCL %s; dlf needs %d.%d or newer", ErrNoLibrary, path, l.VersionString(), minSupportedMajor, minSupportedMinor)
	}
	loaded[path] = l
	return l, nil
}

// Path is the file the library was loaded from.
func (l *Library) Path() string { return l.path }

// Version returns NCCL's major and minor version. NCCL_VERSION_CODE is X*10000 + Y*100 + Z since
// 2.9 (X*1000 + Y*100 + Z before; nccl.h.in's NCCL_VERSION macro).
func (l *Library) Version() (major, minor int) {
	v := l.version
	if v < versionCodeDivisor { // the pre-2.9 encoding
		return v / 1000, v % 1000 / 100
	}
	return v / versionCodeDivisor, v % versionCodeDivisor / 100
}

// VersionString is the version as "major.minor.patch".
func (l *Library) VersionString() string {
	major, minor := l.Version()
	return fmt.Sprintf("%d.%d.%d", major, minor, l.version%100)
}

// err turns a non-zero result into an *Error, with the communicator's last error when known.
func (l *Library) err(fn string, r int32, comm uintptr) error {
	if r == resultSuccess {
		return nil
	}
	e := &Error{Func: fn, Code: r, Text: l.getErrorStr(r)}
	if l.getLastError != nil {
		e.Last = l.getLastError(comm)
	}
	return e
}

// UniqueID makes a new communicator id (rank 0 calls it and hands the id to the others).
func (l *Library) UniqueID() (UniqueID, error) {
	var id UniqueID
	return id, l.err("ncclGetUniqueId", l.getUniqueID(&id), 0)
}

// Comm is an NCCL communicator: this process's rank of Size ranks.
type Comm struct {
	l          *Library
	c          uintptr
	rank, size int

	mu      sync.Mutex
	aborted bool
}

// InitRank joins the communicator of id as rank of size ranks; it blocks until every rank has
// joined. NCCL binds the communicator to the CUDA device whose context is current on the calling
// OS thread, so call it inside that device's cu.Device.Do.
func (l *Library) InitRank(id UniqueID, size, rank int) (*Comm, error) {
	if size < 1 || rank < 0 || rank >= size {
		return nil, fmt.Errorf("nccl: rank %d of %d", rank, size)
	}
	var c uintptr
	if err := l.err("ncclCommInitRank", l.commInitRank(&c, int32(size), id, int32(rank)), 0); err != nil {
		return nil, err
	}
	var gotRank, gotSize int32
	if err := l.err("ncclCommUserRank", l.commUserRank(c, &gotRank), c); err != nil {
		return nil, err
	}
	if err := l.err("ncclCommCount", l.commCount(c, &gotSize), c); err != nil {
		return nil, err
	}
	if int(gotRank) != rank || int(gotSize) != size {
		_ = l.commAbort(c)
		return nil, fmt.Errorf("nccl: the communicator says rank %d of %d, asked for %d of %d", gotRank, gotSize, rank, size)
	}
	return &Comm{l: l, c: c, rank: rank, size: size}, nil
}

// Rank is this process's rank.
func (c *Comm) Rank() int { return c.rank }

// Size is the number of ranks.
func (c *Comm) Size() int { return c.size }

// Library is the library the communicator belongs to.
func (c *Comm) Library() *Library { return c.l }

func (c *Comm) live(fn string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted || c.c == 0 {
		return fmt.Errorf("nccl: %s on a communicator that was aborted or destroyed", fn)
	}
	return nil
}

// AllReduce reduces count elements of type dt at send across the ranks into recv (send == recv is
// in place), queued on stream s: it returns once queued; the result is there when s reaches it.
func (c *Comm) AllReduce(send, recv cu.DevicePtr, count int, dt DataType, op Op, s cu.Stream) error {
	if err := c.live("ncclAllReduce"); err != nil {
		return err
	}
	if count < 0 {
		return fmt.Errorf("nccl: all-reduce of %d elements", count)
	}
	return c.l.err("ncclAllReduce", c.l.allReduce(uintptr(send), uintptr(recv), uintptr(count), int32(dt), int32(op), c.c, uintptr(s)), c.c)
}

// Broadcast copies count elements at root's send into every rank's recv, queued on stream s.
func (c *Comm) Broadcast(send, recv cu.DevicePtr, count int, dt DataType, root int, s cu.Stream) error {
	if err := c.live("ncclBroadcast"); err != nil {
		return err
	}
	if root < 0 || root >= c.size {
		return fmt.Errorf("nccl: broadcast from rank %d of %d", root, c.size)
	}
	return c.l.err("ncclBroadcast", c.l.broadcast(uintptr(send), uintptr(recv), uintptr(count), int32(dt), int32(root), c.c, uintptr(s)), c.c)
}

// AsyncError returns the communicator's asynchronous error (a failed collective, a lost peer), nil
// while there is none. Safe from any goroutine.
func (c *Comm) AsyncError() error {
	c.mu.Lock()
	h := c.c
	c.mu.Unlock()
	if h == 0 {
		return nil
	}
	var r int32
	if err := c.l.err("ncclCommGetAsyncError", c.l.commAsyncErr(h, &r), h); err != nil {
		return err
	}
	if r == resultSuccess || r == resultInProgress {
		return nil
	}
	return c.l.err("asynchronous error", r, h)
}

// Abort stops the communicator's outstanding collectives and releases it; it may be called from
// any goroutine while another is blocked in or waiting for a collective (that is what ends a hung
// collective). The communicator cannot be used afterwards.
func (c *Comm) Abort() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted || c.c == 0 {
		return nil
	}
	c.aborted = true
	return c.l.err("ncclCommAbort", c.l.commAbort(c.c), 0)
}

// Destroy releases the communicator after its collectives have completed (synchronise their
// streams first). After Abort it does nothing.
func (c *Comm) Destroy() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted || c.c == 0 {
		return nil
	}
	h := c.c
	c.c = 0
	return c.l.err("ncclCommDestroy", c.l.commDestroy(h), 0)
}

// GroupStart and GroupEnd bracket collectives issued for several communicators of one process
// (ncclGroupStart/ncclGroupEnd), so that NCCL launches them together instead of deadlocking.
func (l *Library) GroupStart() error { return l.err("ncclGroupStart", l.groupStart(), 0) }

// GroupEnd ends a GroupStart bracket.
func (l *Library) GroupEnd() error { return l.err("ncclGroupEnd", l.groupEnd(), 0) }
