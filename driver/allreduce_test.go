package main

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"dlf/bench"
)

// TestBenchAllReduce runs bench --allreduce on the CPU ring and checks the table's arithmetic
// against nccl-tests' definitions (algbw = bytes/time, busbw = algbw·2(N−1)/N), the doubling sizes,
// and that every size's result matched the float64 mean on every rank.
func TestBenchAllReduce(t *testing.T) {
	for _, n := range []int{2, 3} {
		out := mustRun(t, "bench", "--allreduce", "--device", "cpu", "--num_gpus", strconv.Itoa(n),
			"--min_bytes", "4096", "--max_bytes", "65536", "--iters", "3", "--warmup", "1", "--json")
		var res bench.AllReduceResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("N=%d: output is not JSON: %v\n%s", n, err, out)
		}
		if res.Ranks != n || len(res.Rows) != 5 {
			t.Fatalf("N=%d: %d ranks, %d sizes; want %d ranks and 5 sizes (4K…64K)", n, res.Ranks, len(res.Rows), n)
		}
		for i, r := range res.Rows {
			if want := int64(4096) << i; r.Bytes != want || r.Elems != int(want/4) {
				t.Errorf("N=%d row %d: %d bytes, %d elems; want %d bytes", n, i, r.Bytes, r.Elems, want)
			}
			if r.Verify != "ok" {
				t.Errorf("N=%d %d bytes: %s", n, r.Bytes, r.Verify)
			}
			alg := float64(r.Bytes) / (r.UsMed * 1e-6) / 1e9
			if math.Abs(r.AlgBW-alg) > 1e-9*alg || !(r.AlgBW > 0) {
				t.Errorf("N=%d %d bytes: algbw %g, bytes/time gives %g", n, r.Bytes, r.AlgBW, alg)
			}
			bus := alg * 2 * float64(n-1) / float64(n)
			if math.Abs(r.BusBW-bus) > 1e-9*bus {
				t.Errorf("N=%d %d bytes: busbw %g, want algbw·2(N−1)/N = %g", n, r.Bytes, r.BusBW, bus)
			}
			if r.UsMin > r.UsMed {
				t.Errorf("N=%d %d bytes: min time %g above the median %g", n, r.Bytes, r.UsMin, r.UsMed)
			}
		}
	}
	if _, err := runApp(t, "bench", "--allreduce", "--device", "cpu", "--num_gpus", "1"); err == nil {
		t.Error("bench --allreduce --num_gpus 1 succeeded; an all-reduce needs two ranks")
	}
	for _, c := range []struct{ transport, want string }{
		{"host", "--transport host applies to --device cuda"},
		{"nvlink", `--transport "nvlink": want auto, host, mpi or nccl`},
	} {
		if _, err := runApp(t, "bench", "--allreduce", "--device", "cpu", "--transport", c.transport); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("bench --allreduce --transport %s on the CPU: %v, want an error containing %q", c.transport, err, c.want)
		}
	}
}

// TestBenchAllReduceMPI runs bench --allreduce --transport mpi in two processes under mpirun
// (skipped without it) and checks the report rank 0 prints: two ranks, every size checked against
// the float64 mean, nccl-tests' bus-bandwidth factor.
func TestBenchAllReduceMPI(t *testing.T) {
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("skipping: no mpirun (Debian: apt-get install openmpi-bin libopenmpi3)")
	}
	args := []string{"-np", "2", "--oversubscribe"}
	if os.Geteuid() == 0 {
		args = append(args, "--allow-run-as-root")
	}
	args = append(args, driverBinary(t), "bench", "--allreduce", "--transport", "mpi", "--min_bytes", "4096", "--max_bytes", "65536",
		"--iters", "3", "--warmup", "1", "--json")
	out, err := exec.Command(mpirun, args...).Output()
	if err != nil {
		t.Fatalf("mpirun: %v\n%s", err, out)
	}
	var res bench.AllReduceResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("output is not one JSON report (rank 0 alone prints): %v\n%s", err, out)
	}
	if res.Ranks != 2 || len(res.Rows) != 5 {
		t.Fatalf("%d ranks, %d sizes; want 2 and 5", res.Ranks, len(res.Rows))
	}
	for _, r := range res.Rows {
		if r.Verify != "ok" || !(r.BusBW > 0) || r.BusBW != r.AlgBW {
			t.Errorf("%d bytes: check %q, algbw %g, busbw %g (for N=2 they are equal)", r.Bytes, r.Verify, r.AlgBW, r.BusBW)
		}
	}
	if _, err := runApp(t, "bench", "--allreduce", "--transport", "mpi"); err == nil || !strings.Contains(err.Error(), "--transport mpi") {
		t.Errorf("--transport mpi outside mpirun: %v, want an error naming --transport mpi", err)
	}
}
