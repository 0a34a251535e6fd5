package mpi

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
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

// childEnv marks the processes mpirun starts for TestUnderMpirun.
const childEnv = "DLF_MPI_TEST_CHILD"

// TestUnderMpirun starts this test binary under `mpirun -np 3` (skipped without mpirun) and checks,
// in every rank: rank and size, a mean all-reduce against the float64 mean of every rank's data
// (which each rank regenerates from the ranks' seeds) with all ranks bit-identical, a float64 sum,
// a call split into several MPI calls, broadcast and barrier.
func TestUnderMpirun(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		if err := childChecks(); err != nil {
			fmt.Println("FAIL:", err)
			os.Exit(1)
		}
		return
	}
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("skipping: no mpirun (Debian: apt-get install openmpi-bin libopenmpi3)")
	}
	args := []string{"-np", "3", "--oversubscribe"}
	if os.Geteuid() == 0 {
		args = append(args, "--allow-run-as-root")
	}
	args = append(args, "-x", childEnv+"=1", os.Args[0], "-test.run", "^TestUnderMpirun$", "-test.v")
	cmd := exec.Command(mpirun, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1", "OMPI_MCA_btl=self,vader,tcp", "OMPI_MCA_btl_vader_single_copy_mechanism=none")
	done := time.AfterFunc(120*time.Second, func() { cmd.Process.Kill() })
	defer done.Stop()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mpirun: %v\n%s", err, out)
	}
	for r := 0; r < 3; r++ {
		if want := fmt.Sprintf("rank %d of 3: ok", r); !strings.Contains(string(out), want) {
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
	fmt.Printf("rank %d of 3: ok\n", c.Rank())
	return nil
}
