package train

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"dlf/tensor/collective/nccl/nccltest"
	"dlf/tensor/cuda/cu/gputest"
)

// ncclReference trains the two-rank Glow job in one process with two virtual CUDA ranks (the
// device ring), the run every NCCL run must equal bit for bit.
func ncclReference(t *testing.T, steps int) string {
	ref := filepath.Join(t.TempDir(), "inproc")
	job := ddpJob(t, ref, steps)
	job.Device, job.VirtualGPUs = "cuda", true
	trainReplicas(t, job)
	return ref
}

// TestGPUNCCLProcessesMatchInProcess: two processes under mpirun with --dist nccl (the unique id
// over MPI, gradients by nccl.Reducer, the per-step agreement through NCCL) against two in-process
// CUDA ranks: every step's loss, the checkpoints (parameters, Adamax moments) and best.safetensors
// identical, before and after a resume.
func TestGPUNCCLProcessesMatchInProcess(t *testing.T) {
	gputest.Device(t)
	nccltest.NeedGPUs(t, nccltest.Library(t), 2)
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("skipping: no mpirun (Debian: apt-get install openmpi-bin libopenmpi3)")
	}
	mnist(t, 32, 16)
	exe := childBinary(t)
	t.Setenv(distChildEnv, "nccl")
	res := filepath.Join(t.TempDir(), "nccl")
	for _, steps := range []int{6, 8} {
		ref := ncclReference(t, steps)
		out, err := mpirunChild(mpirun, exe, res, steps, "")
		if err != nil {
			t.Fatalf("mpirun --dist nccl (%d steps): %v\n%s", steps, err, out)
		}
		if !strings.Contains(out, "bootstrapped over Open MPI") {
			t.Fatalf("the job did not report NCCL over MPI:\n%s", out)
		}
		if steps == 8 && !strings.Contains(out, "resuming at step 6,") {
			t.Fatalf("second run did not resume at step 6:\n%s", out)
		}
		sameAsInProcessRun(t, res, ref, steps)
	}
}

// sameAsInProcessRun is sameAsInProcess for a reference trained separately for the same steps (the
// in-process run does not resume, so its logs have no resume rows to compare: only tensors and the
// loss column are compared).
func sameAsInProcessRun(t *testing.T, res, ref string, steps int) {
	t.Helper()
	for _, f := range []string{filepath.Join("checkpoints", fmt.Sprintf("step-%09d.safetensors", steps)), "best.safetensors"} {
		got, want := tensorBytes(t, filepath.Join(res, f)), tensorBytes(t, filepath.Join(ref, f))
		for name, w := range want {
			if string(got[name]) != string(w) {
				t.Fatalf("after %d steps, %s: tensor %s differs between NCCL processes and in-process CUDA ranks", steps, f, name)
			}
		}
	}
	g, w := csvColumn(t, filepath.Join(res, "steps.csv"), "loss"), csvColumn(t, filepath.Join(ref, "steps.csv"), "loss")
	if fmt.Sprint(g) != fmt.Sprint(w) {
		t.Errorf("after %d steps, losses %v, in-process %v", steps, g, w)
	}
}

// envLaunch starts the two-rank job as torchrun would: two processes with RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT, no mpirun. extra[r] adds variables to
// rank r. It returns the processes' outputs and errors once both have ended.
func envLaunch(t *testing.T, exe, res string, steps int, extra [2][]string, during func(procs [2]*exec.Cmd) (after0 func())) ([2]string, [2]error, time.Duration) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	var cmds [2]*exec.Cmd
	var outs [2]strings.Builder
	for r := range 2 {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), mpiChildEnv+"="+res+"|"+fmt.Sprint(steps), "DLF_TEST_MNIST="+mnistDir,
			distChildEnv+"=nccl", "OMPI_COMM_WORLD_SIZE=", fmt.Sprintf("RANK=%d", r), "WORLD_SIZE=2",
			fmt.Sprintf("LOCAL_RANK=%d", r), "LOCAL_WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT="+port)
		cmd.Env = append(cmd.Env, extra[r]...)
		cmd.Stdout, cmd.Stderr = &outs[r], &outs[r]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[r] = cmd
	}
	start := time.Now()
	kill := time.AfterFunc(180*time.Second, func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
		}
	})
	defer kill.Stop()
	var after0 func()
	if during != nil {
		after0 = during(cmds)
	}
	var errs [2]error
	var ended [2]time.Duration
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Go(func() {
			errs[r] = cmds[r].Wait()
			ended[r] = time.Since(start)
			if r == 0 && after0 != nil {
				after0()
			}
		})
	}
	wg.Wait()
	return [2]string{outs[0].String(), outs[1].String()}, errs, ended[0]
}

// TestGPUNCCLRankKilled: the job launched by environment variables (the TCP rendezvous carries the
// NCCL id). Rank 1 is SIGKILLed in the middle of step 8 of 12: rank 0 must stop on its own (no
// launcher kills it) with a message naming rank 1, well within the collective timeout; the newest
// checkpoint (step 6) loads, and a rerun resumes there and ends bit-identical to an uninterrupted
// in-process run.
func TestGPUNCCLRankKilled(t *testing.T) {
	gputest.Device(t)
	nccltest.NeedGPUs(t, nccltest.Library(t), 2)
	mnist(t, 32, 16)
	exe := childBinary(t)
	res := filepath.Join(t.TempDir(), "nccl")
	t.Setenv("DLF_TEST_COLLECTIVE_TIMEOUT", "10m")
	outs, errs, rank0 := envLaunch(t, exe, res, 12, [2][]string{nil, {"DLF_FAULT=rank_step1:kill:8"}}, nil)
	if errs[1] == nil || !strings.Contains(outs[1], "fault: kill at rank_step1") {
		t.Fatalf("rank 1 was not killed: %v\n%s", errs[1], outs[1])
	}
	if errs[0] == nil || !strings.Contains(outs[0], "rank 1 lost") {
		t.Fatalf("rank 0 did not stop naming rank 1: %v\n%s", errs[0], outs[0])
	}
	t.Logf("rank 0 ended %.1fs after the start (collective timeout 10m); its report:\n%s", rank0.Seconds(), lastLines(outs[0], 3))
	if from := newestGood(res); from != 6 {
		t.Fatalf("newest checkpoint that loads is step %d, want 6", from)
	}
	outs, errs, _ = envLaunch(t, exe, res, 12, [2][]string{}, nil)
	if errs[0] != nil || errs[1] != nil || !strings.Contains(outs[0], "resuming at step 6,") {
		t.Fatalf("resume: %v %v\n%s\n%s", errs[0], errs[1], outs[0], outs[1])
	}
	if !strings.Contains(outs[0], "rendezvous at 127.0.0.1:") {
		t.Errorf("rank 0 did not report the rendezvous:\n%s", outs[0])
	}
	sameAsInProcessRun(t, res, ncclReference(t, 12), 12)
}

// TestGPUNCCLRankStuck: rank 1 is stopped (SIGSTOP) once the run is under way, alive but silent: no
// launcher and no closed connection can tell, so rank 0's watchdog must abort its collectives after
// --collective_timeout (5 s here) and exit with a message saying so.
func TestGPUNCCLRankStuck(t *testing.T) {
	gputest.Device(t)
	nccltest.NeedGPUs(t, nccltest.Library(t), 2)
	mnist(t, 32, 16)
	exe := childBinary(t)
	res := filepath.Join(t.TempDir(), "nccl")
	t.Setenv("DLF_TEST_COLLECTIVE_TIMEOUT", "5s")
	outs, errs, _ := envLaunch(t, exe, res, 1000, [2][]string{}, func(cmds [2]*exec.Cmd) func() {
		// Wait until a few steps are logged, then freeze rank 1 until rank 0 has ended.
		for newestStep(filepath.Join(res, "steps.csv")) < 3 {
			time.Sleep(50 * time.Millisecond)
		}
		_ = cmds[1].Process.Signal(syscall.SIGSTOP)
		return func() { _ = cmds[1].Process.Signal(syscall.SIGCONT) }
	})
	if errs[0] == nil || !strings.Contains(outs[0], "did not complete within 5s (--collective_timeout)") {
		t.Fatalf("rank 0 did not time out: %v\n%s", errs[0], outs[0])
	}
	// Rank 1 wakes after rank 0 has ended; it stops on whichever it notices first, the lost rank 0
	// or its own timeout (its clock ran on while it was stopped).
	if errs[1] == nil || !strings.Contains(outs[1], "rank 0 lost") && !strings.Contains(outs[1], "did not complete within 5s") {
		t.Errorf("rank 1, resumed after rank 0 ended, did not stop with a reason: %v\n%s", errs[1], outs[1])
	}
}

// newestStep returns the number of data rows of steps.csv (0 while it does not exist).
func newestStep(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return max(0, strings.Count(string(b), "\n")-1)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// TestGPUNCCLWorldOfOne: --dist nccl with no launcher is a world of one, trained through the NCCL
// path (communicator, reducer, per-step agreement); it must equal a plain single-GPU run bit for bit.
func TestGPUNCCLWorldOfOne(t *testing.T) {
	gputest.Device(t)
	nccltest.Library(t)
	for _, v := range []string{"OMPI_COMM_WORLD_SIZE", "RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"} {
		t.Setenv(v, "")
	}
	var snaps [][]map[string][]uint32
	var losses [][]float64
	for _, dist := range []string{"inproc", "nccl"} {
		res := filepath.Join(t.TempDir(), dist)
		job := ddpJob(t, res, 4)
		job.Device, job.Dist, job.Ranks = "cuda", dist, 1
		snaps = append(snaps, trainReplicas(t, job))
		losses = append(losses, csvColumn(t, filepath.Join(res, "steps.csv"), "loss"))
	}
	if fmt.Sprint(losses[0]) != fmt.Sprint(losses[1]) || len(losses[0]) != 4 {
		t.Fatalf("losses: single GPU %v, NCCL world of one %v", losses[0], losses[1])
	}
	for name, v := range snaps[0][0] {
		if fmt.Sprint(v) != fmt.Sprint(snaps[1][0][name]) {
			t.Fatalf("parameter %s differs between the single-GPU run and the NCCL world of one", name)
		}
	}
}
