package nccl

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"dlf/tensor/collective"
	"dlf/tensor/collective/mpi"
	"dlf/tensor/collective/mpi/mpitest"
	"dlf/tensor/cuda/cu"
)

// RequireEnv makes a missing NCCL fatal instead of a skip (make emu-test sets it, with DLF_LIBNCCL
// pointing at the emulator).
const RequireEnv = "REQUIRE_NCCL"

// library returns NCCL, or skips (fails under REQUIRE_NCCL=1) where there is none.
func library(t testing.TB) *Library {
	t.Helper()
	l, err := Load()
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("NCCL required (%s=1): %v", RequireEnv, err)
		}
		t.Skipf("no NCCL: %v", err)
	}
	return l
}

// openDevices opens a device per rank, each with its own worker thread (NCCL binds a communicator
// to the thread's current context, and ranks of one process block each other in ncclCommInitRank
// unless they run on different threads): device 0 n times on the NCCL emulator; device r for rank r
// with the real NCCL, which refuses two ranks of a communicator on one GPU, so the test is skipped
// where there are fewer GPUs than ranks.
func openDevices(t *testing.T, l *Library, n int) []*cu.Device {
	t.Helper()
	emulated := strings.Contains(l.Path(), "nccl_emu")
	if !emulated {
		if count, err := cu.DeviceCount(); err == nil && count < n {
			t.Skipf("%d ranks need %d GPUs with the real NCCL; this machine has %d", n, n, count)
		}
	}
	var devs []*cu.Device
	for r := range n {
		ord := r
		if emulated {
			ord = 0
		}
		d, err := cu.Open(ord)
		if err != nil {
			if os.Getenv("REQUIRE_GPU") == "1" {
				t.Fatalf("GPU required: %v", err)
			}
			t.Skipf("no GPU: %v", err)
		}
		t.Cleanup(func() { _ = d.Close() })
		devs = append(devs, d)
	}
	return devs
}

// TestMissingLibrary checks the two ways loading fails without a GPU: no such library, and a
// library that is not NCCL. Both are one error naming the file and what to do.
func TestMissingLibrary(t *testing.T) {
	_, err := LoadPath("/nonexistent/libnccl.so.2")
	if !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), "/nonexistent/libnccl.so.2") || !strings.Contains(err.Error(), LibraryEnv) {
		t.Errorf("a missing library: %v", err)
	}
	t.Setenv(LibraryEnv, "libc.so.6")
	if _, err := Load(); !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), "no symbol ncclGetVersion") {
		t.Errorf("a library that is not NCCL: %v", err)
	}
}

// TestUniqueIDLayout: ncclUniqueId is 128 bytes passed by value, so UniqueID must be exactly that.
func TestUniqueIDLayout(t *testing.T) {
	if s := unsafe.Sizeof(UniqueID{}); s != 128 {
		t.Fatalf("UniqueID is %d bytes, ncclUniqueId 128", s)
	}
}

// TestVersion checks the version decoding of both encodings.
func TestVersion(t *testing.T) {
	for _, c := range []struct {
		code int
		want string
	}{{22304, "2.23.4"}, {23007, "2.30.7"}, {2708, "2.7.8"}} {
		l := &Library{version: c.code}
		if got := l.VersionString(); got != c.want {
			t.Errorf("code %d: %s, want %s", c.code, got, c.want)
		}
	}
}

func randomF32(seed uint64, n int) []float32 {
	g := rand.New(rand.NewPCG(seed, 3))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(2*g.Float64() - 1)
	}
	return v
}

// ranks runs fn(rank, comm) for n ranks of one communicator, each on its own device worker.
func ranks(t *testing.T, l *Library, n int, fn func(r int, dev *cu.Device, c *Comm) error) {
	t.Helper()
	devs := openDevices(t, l, n)
	id, err := l.UniqueID()
	if err != nil {
		t.Fatal(err)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() {
			var c *Comm
			if errs[r] = devs[r].Do(func() error {
				var err error
				c, err = l.InitRank(id, n, r)
				return err
			}); errs[r] != nil {
				return
			}
			errs[r] = fn(r, devs[r], c)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// TestAllReduceAndBroadcast: two and three ranks in one process; device all-reduce of float32
// (more elements than one emulator slot, so it runs in pieces) and float64 against the sum computed
// here in rank order, all ranks bit-identical; broadcast; and the Group's host collectives.
func TestAllReduceAndBroadcast(t *testing.T) {
	l := library(t)
	for _, n := range []int{1, 2, 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			const count = 300_001
			want := make([]float32, count)
			for r := range n {
				v := randomF32(uint64(r+1), count)
				for i := range want {
					if r == 0 {
						want[i] = v[i]
					} else {
						want[i] += v[i]
					}
				}
			}
			ranks(t, l, n, func(r int, dev *cu.Device, c *Comm) error {
				if c.Rank() != r || c.Size() != n {
					return fmt.Errorf("comm says rank %d of %d", c.Rank(), c.Size())
				}
				got := randomF32(uint64(r+1), count)
				err := dev.Do(func() error {
					p, err := cu.MemAlloc(count * 4)
					if err != nil {
						return err
					}
					defer cu.MemFree(p)
					if err := cu.MemcpyHtoD(p, got); err != nil {
						return err
					}
					if err := c.AllReduce(p, p, count, Float32, Sum, 0); err != nil {
						return err
					}
					if err := cu.CtxSynchronize(); err != nil {
						return err
					}
					return cu.MemcpyDtoH(got, p)
				})
				if err != nil {
					return err
				}
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						return fmt.Errorf("rank %d: element %d is %v, want %v", r, i, got[i], want[i])
					}
				}
				g, err := NewGroup(c, dev)
				if err != nil {
					return err
				}
				defer g.Close()
				v := []float64{float64(r + 1), 0.5 * float64(r)}
				if err := g.AllReduceFloat64(v, collective.Avg); err != nil {
					return err
				}
				var s0, s1 float64
				for q := range n {
					s0 += float64(q + 1)
					s1 += 0.5 * float64(q)
				}
				if v[0] != s0*(1/float64(n)) || v[1] != s1*(1/float64(n)) {
					return fmt.Errorf("rank %d: mean %v, want [%v %v]", r, v, s0/float64(n), s1/float64(n))
				}
				b := []byte(fmt.Sprintf("from rank %d", r))
				if err := g.BroadcastBytes(b, n-1); err != nil {
					return err
				}
				if string(b) != fmt.Sprintf("from rank %d", n-1) {
					return fmt.Errorf("rank %d: broadcast gave %q", r, b)
				}
				f := randomF32(uint64(100+r), 77)
				if err := g.BroadcastFloat32(f, 0); err != nil {
					return err
				}
				if want := randomF32(100, 77); !equalBits(f, want) {
					return fmt.Errorf("rank %d: float32 broadcast differs from rank 0's", r)
				}
				return g.Barrier()
			})
		})
	}
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestAbortEndsBlockedCollective: rank 1 never joins rank 0's all-reduce; Abort from another
// goroutine (a watchdog) ends rank 0's wait with the abort's reason instead of a hang.
func TestAbortEndsBlockedCollective(t *testing.T) {
	l := library(t)
	reason := errors.New("watchdog: all-reduce did not complete within 100ms")
	ranks(t, l, 2, func(r int, dev *cu.Device, c *Comm) error {
		g, err := NewGroup(c, dev)
		if err != nil {
			return err
		}
		if r == 1 {
			// Rank 1 stays away until rank 0 is done, then leaves.
			time.Sleep(300 * time.Millisecond)
			_ = c.Abort()
			return nil
		}
		timer := time.AfterFunc(100*time.Millisecond, func() { g.Abort(reason) })
		defer timer.Stop()
		start := time.Now()
		err = g.AllReduceFloat64([]float64{1}, collective.Sum)
		if !errors.Is(err, reason) {
			return fmt.Errorf("blocked all-reduce after Abort: %v, want an error wrapping %q", err, reason)
		}
		if d := time.Since(start); d > 5*time.Second {
			return fmt.Errorf("the blocked all-reduce took %v to end after Abort", d)
		}
		if err := g.AllReduceFloat64([]float64{1}, collective.Sum); err == nil {
			return fmt.Errorf("a collective on an aborted communicator succeeded")
		}
		return nil
	})
}

// TestCorruptedUniqueID: the emulator checks the id it receives by value, so a marshalling error (or
// a corrupted exchange) is an error, not a hang. Only meaningful on the emulator.
func TestCorruptedUniqueID(t *testing.T) {
	l := library(t)
	if !strings.Contains(l.Path(), "nccl_emu") {
		t.Skip("the real NCCL would wait for peers of an unknown id")
	}
	devs := openDevices(t, l, 1)
	id, err := l.UniqueID()
	if err != nil {
		t.Fatal(err)
	}
	id.Internal[3] ^= 1
	err = devs[0].Do(func() error { _, err := l.InitRank(id, 1, 0); return err })
	var e *Error
	if !errors.As(err, &e) || e.Code != 4 || !strings.Contains(err.Error(), "unique id") {
		t.Fatalf("corrupted id: %v", err)
	}
}

// childEnv marks the processes mpirun starts.
const childEnv = "DLF_NCCL_TEST_CHILD"

// TestBootstrapOverMPI starts this test binary under `mpirun -np 2`: rank 0 makes the unique id,
// MPI broadcasts its 128 bytes, every rank joins the communicator on its GPU (the emulator here) and
// an all-reduce gives every rank the sum of both ranks' data.
func TestBootstrapOverMPI(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		if err := bootstrapChild(); err != nil {
			fmt.Println("FAIL:", err)
			os.Exit(1)
		}
		return
	}
	openDevices(t, library(t), 2)
	out := mpitest.RunSelf(t, 2, "^TestBootstrapOverMPI$", childEnv+"=1")
	for r := range 2 {
		if want := fmt.Sprintf("rank %d of 2: bootstrapped over MPI", r); !strings.Contains(out, want) {
			t.Errorf("no %q in the output:\n%s", want, out)
		}
	}
}

func bootstrapChild() error {
	m, err := mpi.Init()
	if err != nil {
		return err
	}
	defer m.Finalize()
	l, err := Load()
	if err != nil {
		return err
	}
	var id UniqueID
	if m.Rank() == 0 {
		if id, err = l.UniqueID(); err != nil {
			return err
		}
	}
	if err := m.BroadcastBytes(id.Internal[:], 0); err != nil {
		return err
	}
	dev, err := cu.Open(0)
	if err != nil {
		return err
	}
	defer dev.Close()
	var c *Comm
	if err := dev.Do(func() error { c, err = l.InitRank(id, m.Size(), m.Rank()); return err }); err != nil {
		return err
	}
	g, err := NewGroup(c, dev)
	if err != nil {
		return err
	}
	defer g.Close()
	v := []float64{float64(10 * (m.Rank() + 1))}
	if err := g.AllReduceFloat64(v, collective.Sum); err != nil {
		return err
	}
	if v[0] != 30 {
		return fmt.Errorf("rank %d: sum %v, want 30", m.Rank(), v[0])
	}
	fmt.Printf("rank %d of %d: bootstrapped over MPI (NCCL %s at %s)\n", m.Rank(), m.Size(), l.VersionString(), l.Path())
	return nil
}
