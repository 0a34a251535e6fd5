package mpi

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"dlf/tensor"
	"dlf/tensor/collective"
	"dlf/tensor/collective/mpi/mpitest"
	"dlf/tensor/cpu"
)

// TestMissingLibrary checks the two ways loading fails: no such library, and a library that is not
// Open MPI (libc has no MPI_Init_thread). Both are one error naming the file and what to do.
func TestMissingLibrary(t *testing.T) {
	t.Setenv(LibraryEnv, "/nonexistent/libmpi.so.40")
	_, err := Init()
	if !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), "/nonexistent/libmpi.so.40") || !strings.Contains(err.Error(), "openmpi-bin libopenmpi3") {
		t.Errorf("a missing library: %v", err)
	}
	t.Setenv(LibraryEnv, "libc.so.6")
	if _, err := Init(); !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), "no symbol MPI_Init_thread") {
		t.Errorf("a library that is not Open MPI: %v", err)
	}
}

// childEnv marks the processes mpirun starts, and says which test they run ("2" or "3").
const childEnv = "DLF_MPI_TEST_CHILD"

// TestRingMatchesHostRing runs, under `mpirun -np 2`, the Reducer over MPI and the in-process
// HostRing reducer on the same two ranks' gradients and requires bit-identical averages: the
// property that keeps one-process-per-rank training equal to in-process replicas.
func TestRingMatchesHostRing(t *testing.T) {
	if os.Getenv(childEnv) == "2" {
		if err := ringChild(); err != nil {
			fmt.Println("FAIL:", err)
			os.Exit(1)
		}
		return
	}
	out := mpirunSelf(t, 2, "^TestRingMatchesHostRing$", "2")
	for r := 0; r < 2; r++ {
		if want := fmt.Sprintf("rank %d of 2: bit-identical", r); !strings.Contains(out, want) {
			t.Errorf("no %q in the output:\n%s", want, out)
		}
	}
}

func ringChild() error {
	c, err := Init()
	if err != nil {
		return err
	}
	defer c.Finalize()
	sizes := []int{5, 300, 7, 1000}
	data := func(r int) [][]float32 {
		out := make([][]float32, len(sizes))
		for i, n := range sizes {
			out[i] = rankData(100*r+i+1, n)
		}
		return out
	}
	be := cpu.New()
	got, err := reduceOver(NewRing[float32](c), c.Rank(), sizes, data(c.Rank()), be)
	if err != nil {
		return err
	}
	ring, err := collective.NewHostRing[float32](2, collective.Options{})
	if err != nil {
		return err
	}
	var want [2][][]float32
	errs := make(chan error, 2)
	for r := range 2 {
		go func() {
			var e error
			want[r], e = reduceOver(ring, r, sizes, data(r), cpu.New())
			errs <- e
		}()
	}
	for range 2 {
		if e := <-errs; e != nil {
			return e
		}
	}
	for i := range sizes {
		for j := range got[i] {
			if math.Float32bits(got[i][j]) != math.Float32bits(want[c.Rank()][i][j]) {
				return fmt.Errorf("parameter %d[%d]: MPI %v, HostRing %v", i, j, got[i][j], want[c.Rank()][i][j])
			}
		}
	}
	fmt.Printf("rank %d of 2: bit-identical\n", c.Rank())
	return nil
}

// mpirunSelf runs this test binary's test run under mpirun -np n with childEnv=mode.
func mpirunSelf(t *testing.T, n int, run, mode string) string {
	t.Helper()
	return mpitest.RunSelf(t, n, run, childEnv+"="+mode)
}

// TestUnderMpirun starts this test binary under `mpirun -np 3` (skipped without mpirun) and checks,
// in every rank: rank and size, a mean all-reduce against the float64 mean of every rank's data
// (which each rank regenerates from the ranks' seeds) with all ranks bit-identical, a float64 sum,
// a call split into several MPI calls, broadcast, barrier, and collective.Reducer over Ring.
func TestUnderMpirun(t *testing.T) {
	if os.Getenv(childEnv) == "3" {
		if err := childChecks(); err != nil {
			fmt.Println("FAIL:", err)
			os.Exit(1)
		}
		return
	}
	out := mpirunSelf(t, 3, "^TestUnderMpirun$", "3")
	for r := 0; r < 3; r++ {
		if want := fmt.Sprintf("rank %d of 3: ok", r); !strings.Contains(out, want) {
			t.Errorf("no %q in the output:\n%s", want, out)
		}
	}
}

// rankData is rank r's deterministic test data.
func rankData(r, n int) []float32 {
	g := rand.New(rand.NewPCG(uint64(r)+11, 5))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(2*g.Float64() - 1)
	}
	return v
}

func childChecks() error {
	c, err := Init()
	if err != nil {
		return err
	}
	defer c.Finalize()
	if c.Size() != 3 {
		return fmt.Errorf("size %d, want 3", c.Size())
	}
	const n = 1001
	c.chunk = 300 // four MPI calls per collective
	buf := rankData(c.Rank(), n)
	if err := AllReduce(c, buf, true); err != nil {
		return err
	}
	for i := range buf {
		want := 0.0
		for r := 0; r < 3; r++ {
			want += float64(rankData(r, n)[i])
		}
		want /= 3
		if math.Abs(float64(buf[i])-want) > 1e-6 {
			return fmt.Errorf("mean[%d] = %v, want %v", i, buf[i], want)
		}
	}
	ref := append([]float32(nil), buf...)
	if err := Broadcast(c, ref, 0); err != nil {
		return err
	}
	for i := range buf {
		if math.Float32bits(buf[i]) != math.Float32bits(ref[i]) {
			return fmt.Errorf("rank %d's mean differs from rank 0's at %d", c.Rank(), i)
		}
	}
	sum := []float64{float64(c.Rank()), 1}
	if err := AllReduce(c, sum, false); err != nil {
		return err
	}
	if sum[0] != 3 || sum[1] != 3 {
		return fmt.Errorf("float64 sum %v, want [3 3]", sum)
	}
	if err := Broadcast(c, buf, 5); err == nil {
		return fmt.Errorf("a broadcast from rank 5 of 3 was accepted")
	}
	if err := c.Barrier(); err != nil {
		return err
	}
	if err := reducerChecks(c); err != nil {
		return err
	}
	fmt.Printf("rank %d of 3: ok\n", c.Rank())
	return nil
}

// reducerChecks runs collective.Reducer over Ring with gradients of four parameters in three
// buckets, handed over in backward order, and requires exactly the averages that an in-process
// HostRing of the same ranks computes (rebuilt here from every rank's data) for ranks 0 and 1; with
// three ranks the sum order of the two algorithms may differ, so the check is the float64 mean.
func reducerChecks(c *Comm) error {
	sizes := []int{5, 300, 7, 1000}
	grads := func(r int) [][]float32 {
		out := make([][]float32, len(sizes))
		for i, n := range sizes {
			out[i] = rankData(100*r+i, n)
		}
		return out
	}
	be := cpu.New()
	got, err := reduceOver(NewRing[float32](c), c.Rank(), sizes, grads(c.Rank()), be)
	if err != nil {
		return err
	}
	for i, g := range got {
		for j, v := range g {
			want := 0.0
			for r := 0; r < c.Size(); r++ {
				want += float64(grads(r)[i][j])
			}
			want /= float64(c.Size())
			if math.Abs(float64(v)-want) > 1e-6 {
				return fmt.Errorf("reducer: parameter %d[%d] = %v, want %v", i, j, v, want)
			}
		}
	}
	return nil
}

// reduceOver averages one rank's gradients through a Reducer over t, handing them over in reverse
// parameter order as backward does, and returns the averages.
func reduceOver(t collective.Transport[float32], rank int, sizes []int, grads [][]float32, be tensor.Backend) ([][]float32, error) {
	red, err := collective.NewReducer(t, rank, sizes, 400)
	if err != nil {
		return nil, err
	}
	out := make([]*tensor.Tensor, len(sizes))
	for i := len(sizes) - 1; i >= 0; i-- {
		g := tensor.FromFloat32(be, grads[i], sizes[i])
		if err := red.Ready(i, g); err != nil {
			return nil, err
		}
		out[i] = tensor.New(be, tensor.Float32, sizes[i])
	}
	if err := red.Wait(out); err != nil {
		return nil, err
	}
	res := make([][]float32, len(out))
	for i, t := range out {
		res[i] = t.Float32s()
	}
	return res, nil
}
