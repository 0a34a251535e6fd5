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

// distChildEnv selects --dist for the processes of mpiChild ("mpi" when unset; "nccl" trains on
// CUDA, which the tests run on the emulators).
const distChildEnv = "DLF_TRAIN_DIST"

// mpiChild trains the DDP test job with one process per rank and exits.
func mpiChild(spec string) {
	res, steps, _ := strings.Cut(spec, "|")
	n, _ := strconv.Atoi(steps)
	job := ddpJob(&testing.T{}, res, n)
	job.Dist, job.Ranks = "mpi", 0
	if d := os.Getenv(distChildEnv); d != "" {
		job.Dist = d
	}
	if job.Dist == "nccl" {
		job.Device = "cuda"
	}
	if s := os.Getenv("DLF_TEST_COLLECTIVE_TIMEOUT"); s != "" {
		job.CollectiveTimeout, _ = time.ParseDuration(s)
	}
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
		out, err := mpirunChild(mpirun, exe, res, steps, "")
		if err != nil {
			t.Fatalf("mpirun (%d steps): %v\n%s", steps, err, out)
		}
		if want := fmt.Sprintf("--max_steps %d reached at step %d", steps, steps); strings.Count(out, want) != 1 {
			t.Fatalf("want one report (rank 0's) containing %q:\n%s", want, out)
		}
		sameAsInProcess(t, res, ref, steps)
	}
}

// mpirunChild runs the two-rank job under mpirun for steps steps, with DLF_FAULT when fault is
// set, and returns the combined output.
func mpirunChild(mpirun, exe, res string, steps int, fault string) (string, error) {
	args := []string{"-np", "2", "--oversubscribe"}
	if os.Geteuid() == 0 {
		args = append(args, "--allow-run-as-root")
	}
	args = append(args, "-x", mpiChildEnv, "-x", "DLF_TEST_MNIST", "-x", "DLF_FAULT", "-x", distChildEnv, "-x", "DLF_TEST_COLLECTIVE_TIMEOUT", exe, "-test.run=^$")
	cmd := exec.Command(mpirun, args...)
	cmd.Env = append(os.Environ(), mpiChildEnv+"="+res+"|"+strconv.Itoa(steps), "DLF_TEST_MNIST="+mnistDir, "DLF_FAULT="+fault)
	watchdog := time.AfterFunc(120*time.Second, func() { cmd.Process.Kill() })
	defer watchdog.Stop()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sameAsInProcess requires the step's checkpoint, best.safetensors and the CSV logs of a
// multi-process run to equal the in-process run's.
func sameAsInProcess(t *testing.T, res, ref string, steps int) {
	t.Helper()
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

// TestProcessKilled kills rank 1 with SIGKILL in the middle of step 8 of a 12-step two-process
// run: the job must end within the watchdog, with mpirun naming the lost rank; the newest checkpoint
// (step 6, the epoch end) must load, and a rerun must resume there and end bit-identical to an
// uninterrupted in-process run.
func TestProcessKilled(t *testing.T) {
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("skipping: no mpirun (Debian: apt-get install openmpi-bin libopenmpi3)")
	}
	mnist(t, 32, 16)
	exe := childBinary(t)
	ref, res := filepath.Join(t.TempDir(), "inproc"), filepath.Join(t.TempDir(), "mpi")
	trainReplicas(t, ddpJob(t, ref, 12))
	start := time.Now()
	out, err := mpirunChild(mpirun, exe, res, 12, "rank_step1:kill:8")
	if err == nil || !strings.Contains(out, "fault: kill at rank_step1") || !strings.Contains(out, "rank 1") {
		t.Fatalf("want the job to fail naming rank 1 after its kill: %v\n%s", err, out)
	}
	t.Logf("the job ended %.1fs after it started, rank 1 killed at step 8", time.Since(start).Seconds())
	if from := newestGood(res); from != 6 {
		t.Fatalf("newest checkpoint that loads is step %d, want 6", from)
	}
	out, err = mpirunChild(mpirun, exe, res, 12, "")
	if err != nil || !strings.Contains(out, "resuming at step 6,") {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	sameAsInProcess(t, res, ref, 12)
}

// TestProcessStuck freezes rank 1 (SIGSTOP) in the middle of step 8 of a two-process MPI run: it is
// alive, so mpirun sees nothing, and rank 0 blocks in the step's all-reduce. Rank 0's watchdog must
// abort the job after --collective_timeout (5 s here) with a message saying which step did not
// complete; MPI_Abort then has mpirun end every rank, the frozen one included. The newest checkpoint
// (step 6) still loads.
func TestProcessStuck(t *testing.T) {
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("skipping: no mpirun (Debian: apt-get install openmpi-bin libopenmpi3)")
	}
	mnist(t, 32, 16)
	exe := childBinary(t)
	res := filepath.Join(t.TempDir(), "mpi")
	t.Setenv("DLF_TEST_COLLECTIVE_TIMEOUT", "5s")
	start := time.Now()
	out, err := mpirunChild(mpirun, exe, res, 12, "rank_step1:stop:8")
	if err == nil || !strings.Contains(out, "fault: stop at rank_step1") ||
		!strings.Contains(out, "rank 0: the collectives of step 8 did not complete within 5s (--collective_timeout)") {
		t.Fatalf("want rank 0 to abort the job after its collective timeout: %v\n%s", err, out)
	}
	t.Logf("the job ended %.1fs after it started (rank 1 frozen at step 8, timeout 5s)", time.Since(start).Seconds())
	if from := newestGood(res); from != 6 {
		t.Fatalf("newest checkpoint that loads is step %d, want 6", from)
	}
}

// TestDistErrors checks the refusals that need no MPI: an unknown --dist, and --dist mpi without
// Open MPI (one error naming the flag, the library and how to install it); nothing is written.
func TestDistErrors(t *testing.T) {
	res := filepath.Join(t.TempDir(), "run")
	job := tinyJob(t, res, 32, 1)
	job.Dist = "slurm"
	if _, err := New(job, Hooks{}); err == nil || !strings.Contains(err.Error(), `--dist "slurm": want inproc, mpi or nccl`) {
		t.Errorf("--dist slurm: %v", err)
	}
	t.Setenv("DLF_LIBMPI", "/nonexistent/libmpi.so.40")
	job.Dist = "mpi"
	_, err := New(job, Hooks{})
	if err == nil || !strings.Contains(err.Error(), "--dist mpi") || !strings.Contains(err.Error(), "/nonexistent/libmpi.so.40") || !strings.Contains(err.Error(), "libopenmpi3") {
		t.Errorf("--dist mpi without Open MPI: %v", err)
	}
	if exists(res) {
		t.Errorf("a refused job created %s", res)
	}
	job.Dist = "nccl"
	if _, err := New(job, Hooks{}); err == nil || !strings.Contains(err.Error(), "--dist nccl") || !strings.Contains(err.Error(), "needs --device cuda") {
		t.Errorf("--dist nccl on the CPU: %v", err)
	}
	t.Setenv("DLF_LIBNCCL", "/nonexistent/libnccl.so.2")
	job.Device = "cuda"
	if _, err := New(job, Hooks{}); err == nil || !strings.Contains(err.Error(), "--dist nccl") || !strings.Contains(err.Error(), "/nonexistent/libnccl.so.2") || !strings.Contains(err.Error(), "DLF_LIBNCCL") {
		t.Errorf("--dist nccl without NCCL: %v", err)
	}
	// torchrun's variables, but MPI asked for: MPI needs mpirun.
	for k, v := range map[string]string{"OMPI_COMM_WORLD_SIZE": "", "RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"} {
		t.Setenv(k, v)
	}
	job.Device, job.Dist = "cpu", "mpi"
	if _, err := New(job, Hooks{}); err == nil || !strings.Contains(err.Error(), "mpirun did not start this process") {
		t.Errorf("--dist mpi under torchrun: %v", err)
	}
	t.Setenv("MASTER_ADDR", "")
	job.Device, job.Dist = "cuda", "nccl"
	t.Setenv("DLF_LIBNCCL", "/nonexistent/libnccl.so.2")
	if _, err := New(job, Hooks{}); err == nil || !strings.Contains(err.Error(), "MASTER_ADDR and MASTER_PORT are not") {
		t.Errorf("--dist nccl under torchrun without MASTER_ADDR: %v", err)
	}
	if exists(res) {
		t.Errorf("a refused job created %s", res)
	}
	for _, d := range []string{"", "inproc"} {
		o := DefaultOptions()
		o.Dist = d
		if err := o.Validate(); err != nil {
			t.Errorf("--dist %q: %v", d, err)
		}
	}
	o := DefaultOptions()
	o.CollectiveTimeout = 0
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--collective_timeout") {
		t.Errorf("--collective_timeout 0: %v", err)
	}
}
