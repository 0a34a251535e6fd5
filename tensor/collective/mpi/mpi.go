// Package mpi binds Open MPI for dlf without cgo: libmpi.so.40 is loaded at run time with purego,
// as tensor/cuda/cu loads libcuda, so a binary built with CGO_ENABLED=0 runs under mpirun on any
// machine that has Open MPI, and runs everywhere else as long as it does not ask for MPI.
//
// It provides what data-parallel training needs from a process group: rank and size of
// MPI_COMM_WORLD, barrier, broadcast and an in-place all-reduce (sum or mean) of float32 or float64
// buffers. Open MPI's handles are addresses of exported globals (MPI_COMM_WORLD is
// &ompi_mpi_comm_world, MPI_FLOAT &ompi_mpi_float, MPI_SUM &ompi_mpi_op_sum; MPI_IN_PLACE is
// (void*)1 — Open MPI 4.1 mpi.h), so this binding is Open MPI's, not MPICH's, whose handles are
// integers. MPI is initialised with MPI_THREAD_SERIALIZED and every call is made under one mutex, so
// any goroutine may call, one at a time.
package mpi

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"

	"dlf/tensor/collective"
)

// DefaultLibrary is Open MPI 4.x's soname (libtool version 70:x:30 gives .so.40); Debian's
// libopenmpi3 installs it. LibraryEnv overrides the path.
const (
	DefaultLibrary = "libmpi.so.40"
	LibraryEnv     = "DLF_LIBMPI"
)

// ErrNoLibrary reports that the MPI library could not be loaded.
var ErrNoLibrary = errors.New("mpi: Open MPI is not available")

// mpiThreadSerialized is MPI_THREAD_SERIALIZED (mpi.h: SINGLE 0, FUNNELED 1, SERIALIZED 2,
// MULTIPLE 3).
const mpiThreadSerialized = 2

// inPlace is MPI_IN_PLACE in Open MPI.
const inPlace = 1

// maxCount is the largest element count of one MPI call: counts are C ints.
const maxCount = math.MaxInt32

// lib is the loaded library: function and handle addresses.
type lib struct {
	path string
	// Functions.
	initThread, initialized, finalized, finalize, commRank, commSize, barrier, allreduce, bcast, abort uintptr
	// Handles (addresses of Open MPI's predefined objects).
	commWorld, byte, float, double, opSum uintptr
}

// load opens path and resolves every symbol, naming the first that is missing.
func load(path string) (*lib, error) {
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("%w: dlopen %s: %v; install Open MPI (Debian: apt-get install openmpi-bin libopenmpi3) or set %s to libmpi.so.40's path",
			ErrNoLibrary, path, err, LibraryEnv)
	}
	l := &lib{path: path}
	for _, s := range []struct {
		name string
		addr *uintptr
	}{
		{"MPI_Init_thread", &l.initThread}, {"MPI_Initialized", &l.initialized}, {"MPI_Finalized", &l.finalized},
		{"MPI_Finalize", &l.finalize}, {"MPI_Comm_rank", &l.commRank}, {"MPI_Comm_size", &l.commSize},
		{"MPI_Barrier", &l.barrier}, {"MPI_Allreduce", &l.allreduce}, {"MPI_Bcast", &l.bcast}, {"MPI_Abort", &l.abort},
		{"ompi_mpi_comm_world", &l.commWorld}, {"ompi_mpi_byte", &l.byte}, {"ompi_mpi_float", &l.float}, {"ompi_mpi_double", &l.double},
		{"ompi_mpi_op_sum", &l.opSum},
	} {
		a, err := purego.Dlsym(h, s.name)
		if err != nil || a == 0 {
			_ = purego.Dlclose(h)
			return nil, fmt.Errorf("%w: %s has no symbol %s (is it Open MPI 4.x? MPICH and others use another ABI): %v", ErrNoLibrary, path, s.name, err)
		}
		*s.addr = a
	}
	return l, nil
}

// call invokes an MPI function and turns a non-zero return (MPI_SUCCESS is 0) into an error.
func (l *lib) call(name string, fn uintptr, args ...uintptr) error {
	r, _, _ := purego.SyscallN(fn, args...)
	if int32(r) != 0 {
		return fmt.Errorf("mpi: %s returned error code %d", name, int32(r))
	}
	return nil
}

// Comm is MPI_COMM_WORLD of an initialised MPI.
type Comm struct {
	mu         sync.Mutex
	l          *lib
	rank, size int
	// chunk is the largest count of one call (maxCount; tests lower it to exercise splitting).
	chunk int
	done  bool
}

// Init loads Open MPI ($DLF_LIBMPI or libmpi.so.40), initialises it (once per process) and returns
// MPI_COMM_WORLD. Under mpirun the ranks find each other; run alone it is a world of one.
func Init() (*Comm, error) {
	path := os.Getenv(LibraryEnv)
	if path == "" {
		path = DefaultLibrary
	}
	l, err := load(path)
	if err != nil {
		return nil, err
	}
	c := &Comm{l: l, chunk: maxCount}
	var flag int32
	if err := l.call("MPI_Initialized", l.initialized, uintptr(unsafe.Pointer(&flag))); err != nil {
		return nil, err
	}
	if flag == 0 {
		var provided int32
		if err := l.call("MPI_Init_thread", l.initThread, 0, 0, mpiThreadSerialized, uintptr(unsafe.Pointer(&provided))); err != nil {
			return nil, err
		}
		if provided < mpiThreadSerialized {
			return nil, fmt.Errorf("mpi: %s provides thread level %d, dlf needs MPI_THREAD_SERIALIZED (2)", path, provided)
		}
	}
	var rank, size int32
	if err := l.call("MPI_Comm_rank", l.commRank, l.commWorld, uintptr(unsafe.Pointer(&rank))); err != nil {
		return nil, err
	}
	if err := l.call("MPI_Comm_size", l.commSize, l.commWorld, uintptr(unsafe.Pointer(&size))); err != nil {
		return nil, err
	}
	c.rank, c.size = int(rank), int(size)
	return c, nil
}

// Rank is this process's rank in MPI_COMM_WORLD.
func (c *Comm) Rank() int { return c.rank }

// Size is the number of ranks.
func (c *Comm) Size() int { return c.size }

// LocalRank is this process's rank among the ranks on its machine (mpirun's
// OMPI_COMM_WORLD_LOCAL_RANK), which picks its GPU; without that variable, the world rank.
func (c *Comm) LocalRank() int { return envInt("OMPI_COMM_WORLD_LOCAL_RANK", c.rank) }

// LocalSize is the number of ranks on this machine (OMPI_COMM_WORLD_LOCAL_SIZE), else the world size.
func (c *Comm) LocalSize() int { return envInt("OMPI_COMM_WORLD_LOCAL_SIZE", c.size) }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

// Library is the path the library was loaded from.
func (c *Comm) Library() string { return c.l.path }

// Barrier returns when every rank has entered it.
func (c *Comm) Barrier() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.l.call("MPI_Barrier", c.l.barrier, c.l.commWorld)
}

// Float is the element types the collectives move.
type Float interface{ ~float32 | ~float64 }

// datatype returns the MPI datatype of T.
func datatype[T Float](l *lib) uintptr {
	var z T
	if unsafe.Sizeof(z) == 4 {
		return l.float
	}
	return l.double
}

// AllReduce replaces buf on every rank by the element-wise sum over the ranks, or by the mean when
// mean is set (the sum scaled by 1/size afterwards, so all ranks hold the same bits). Every rank
// must call it with a buffer of the same length.
func AllReduce[T Float](c *Comm, buf []T, mean bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	dt := datatype[T](c.l)
	for lo := 0; lo < len(buf); lo += c.chunk {
		part := buf[lo:min(len(buf), lo+c.chunk)]
		err := c.l.call("MPI_Allreduce", c.l.allreduce, inPlace, uintptr(unsafe.Pointer(&part[0])), uintptr(len(part)), dt, c.l.opSum, c.l.commWorld)
		runtime.KeepAlive(part)
		if err != nil {
			return err
		}
	}
	if mean && c.size > 1 {
		s := T(1 / float64(c.size))
		for i := range buf {
			buf[i] *= s
		}
	}
	return nil
}

// Broadcast copies root's buf to every rank's buf (same length everywhere).
func Broadcast[T Float](c *Comm, buf []T, root int) error {
	return bcast(c, buf, datatype[T](c.l), root)
}

// bcast is MPI_Bcast of buf, in int-sized pieces, with the datatype dt of T.
func bcast[T any](c *Comm, buf []T, dt uintptr, root int) error {
	if root < 0 || root >= c.size {
		return fmt.Errorf("mpi: broadcast from rank %d of %d", root, c.size)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for lo := 0; lo < len(buf); lo += c.chunk {
		part := buf[lo:min(len(buf), lo+c.chunk)]
		err := c.l.call("MPI_Bcast", c.l.bcast, uintptr(unsafe.Pointer(&part[0])), uintptr(len(part)), dt, uintptr(root), c.l.commWorld)
		runtime.KeepAlive(part)
		if err != nil {
			return err
		}
	}
	return nil
}

// AllReduceFloat64 is AllReduce of float64 values with a collective.Op (Sum or Avg): mpi.Comm is a
// collective.Group.
func (c *Comm) AllReduceFloat64(buf []float64, op collective.Op) error {
	if op != collective.Sum && op != collective.Avg {
		return fmt.Errorf("mpi: all-reduce op %v: want Sum or Avg", op)
	}
	if len(buf) == 0 {
		return nil
	}
	return AllReduce(c, buf, op == collective.Avg)
}

// BroadcastFloat32 is Broadcast of float32 values.
func (c *Comm) BroadcastFloat32(buf []float32, root int) error {
	if len(buf) == 0 {
		return nil
	}
	return Broadcast(c, buf, root)
}

// BroadcastBytes copies root's bytes to every rank (MPI_BYTE).
func (c *Comm) BroadcastBytes(buf []byte, root int) error { return bcast(c, buf, c.l.byte, root) }

// Abort ends the whole job: MPI_Abort(MPI_COMM_WORLD, 1), after printing reason on stderr; Open MPI's
// launcher then stops every rank. It does not take the call mutex, so a watchdog can call it while
// another goroutine is blocked in a collective (MPI_THREAD_SERIALIZED does not allow that call, but
// the process is ending: Open MPI's abort path tears the job down without touching the blocked
// call's state). It does not return.
func (c *Comm) Abort(reason error) {
	if reason != nil {
		fmt.Fprintf(os.Stderr, "rank %d: %v; aborting the MPI job\n", c.rank, reason)
	}
	_, _, _ = purego.SyscallN(c.l.abort, c.l.commWorld, 1)
	os.Exit(1) // MPI_Abort does not return; this is in case a library's does
}

var _ collective.Group = (*Comm)(nil)

// Finalize shuts MPI down; the Comm must not be used afterwards. Every rank must call it.
func (c *Comm) Finalize() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil
	}
	c.done = true
	var flag int32
	if err := c.l.call("MPI_Finalized", c.l.finalized, uintptr(unsafe.Pointer(&flag))); err != nil || flag != 0 {
		return err
	}
	return c.l.call("MPI_Finalize", c.l.finalize)
}
