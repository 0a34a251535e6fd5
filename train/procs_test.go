package train

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// mpiChildEnv marks the processes mpirun starts for TestProcessesMatchInProcess: "results|steps".
const mpiChildEnv = "DLF_TRAIN_MPI_CHILD"

// mpiChild trains the DDP test job with one process per rank and exits.
func mpiChild(spec string) {
	res, steps, _ := strings.Cut(spec, "|")
	n, _ := strconv.Atoi(steps)
	job := ddpJob(&testing.T{}, res, n)
	job.Dist, job.Ranks = "mpi", 0
	run, err := New(job, Hooks{Log: os.Stdout})
	if err == nil {
		_, err = run.Train(context.Background())
		run.Close()
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestProcessesMatchInProcess trains the two-rank Glow job twice: as two processes under
// `mpirun -np 2` (Open MPI; skipped without mpirun) and as two in-process replicas. The losses of
// every step, the final checkpoint (parameters, optimizer moments) and best.safetensors must be
// identical; then both runs resume for two more steps, with the same check.
func TestProcessesMatchInProcess(t *testing.T) {
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("skipping: no mpirun (Debian: apt-get install openmpi-bin libopenmpi3)")
	}
	mnist(t, 32, 16)
	exe := childBinary(t)
	ref, res := filepath.Join(t.TempDir(), "inproc"), filepath.Join(t.TempDir(), "mpi")
	for _, steps := range []int{6, 8} { // an epoch is 6 steps: the first run ends at an epoch end
		trainReplicas(t, ddpJob(t, ref, steps))
		args := []string{"-np", "2", "--oversubscribe"}
		if os.Geteuid() == 0 {
			args = append(args, "--allow-run-as-root")
		}
		args = append(args, "-x", mpiChildEnv, "-x", "DLF_TEST_MNIST", exe, "-test.run=^$")
		cmd := exec.Command(mpirun, args...)
		cmd.Env = append(os.Environ(), mpiChildEnv+"="+res+"|"+strconv.Itoa(steps), "DLF_TEST_MNIST="+mnistDir)
		watchdog := time.AfterFunc(120*time.Second, func() { cmd.Process.Kill() })
		out, err := cmd.CombinedOutput()
		watchdog.Stop()
		if err != nil {
			t.Fatalf("mpirun (%d steps): %v\n%s", steps, err, out)
		}
		if want := fmt.Sprintf("--max_steps %d reached at step %d", steps, steps); strings.Count(string(out), want) != 1 {
			t.Fatalf("want one report (rank 0's) containing %q:\n%s", want, out)
		}
		for _, f := range []string{filepath.Join("checkpoints", fmt.Sprintf("step-%09d.safetensors", steps)), "best.safetensors"} {
			got, want := tensorBytes(t, filepath.Join(res, f)), tensorBytes(t, filepath.Join(ref, f))
			for name, w := range want {
				if !slices.Equal(got[name], w) {
					t.Fatalf("after %d steps, %s: tensor %s differs between processes and in-process replicas", steps, f, name)
				}
			}
		}
		for _, f := range []string{"steps.csv", "train.csv", "test.csv"} {
			if g, w := csvRows(t, filepath.Join(res, f)), csvRows(t, filepath.Join(ref, f)); !slices.Equal(g, w) {
				t.Errorf("after %d steps, %s:\n%v\nwant\n%v", steps, f, g, w)
			}
		}
	}
}
