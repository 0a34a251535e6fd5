package launch

import (
	"strings"
	"testing"
	"time"
)

func TestGPU(t *testing.T) {
	for _, c := range []struct {
		local, count, want int
		err                string
	}{
		{0, 8, 0, ""}, {5, 8, 5, ""}, {3, 1, 0, ""}, {8, 8, 0, "local rank 8 on its machine, which has 8 GPUs"},
	} {
		w := &World{Rank: 10 + c.local, LocalRank: c.local}
		got, err := w.GPU(c.count)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("local rank %d of %d GPUs: %v, want an error containing %q", c.local, c.count, err, c.err)
			}
		} else if err != nil || got != c.want {
			t.Errorf("local rank %d of %d GPUs: %d %v, want %d", c.local, c.count, got, err, c.want)
		}
	}
}

// TestJoinErrors: the refusals that need neither MPI nor NCCL, each naming the setting.
func TestJoinErrors(t *testing.T) {
	for _, v := range []string{"RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"} {
		t.Setenv(v, "")
	}
	if _, err := Join("gloo", "--dist gloo", time.Second); err == nil || !strings.Contains(err.Error(), `unknown engine "gloo"`) {
		t.Errorf("unknown engine: %v", err)
	}
	t.Setenv("DLF_LIBNCCL", "/nonexistent/libnccl.so.2")
	if _, err := Join("nccl", "--dist nccl", time.Second); err == nil || !strings.Contains(err.Error(), "--dist nccl: ") || !strings.Contains(err.Error(), "/nonexistent/libnccl.so.2") {
		t.Errorf("no NCCL: %v", err)
	}
	t.Setenv("RANK", "0")
	t.Setenv("WORLD_SIZE", "2")
	t.Setenv("MASTER_ADDR", "127.0.0.1")
	t.Setenv("MASTER_PORT", "29400")
	if _, err := Join("mpi", "--dist mpi", time.Second); err == nil || !strings.Contains(err.Error(), "mpirun did not start this process") {
		t.Errorf("MPI under torchrun: %v", err)
	}
}
