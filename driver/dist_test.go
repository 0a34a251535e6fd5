package main

import (
	"strings"
	"testing"
)

// TestDistMode: --dist auto under each launcher (NCCL absent here, so CUDA under a launcher falls
// back to mpi; with NCCL present it is nccl, which the emulator tests of train cover).
func TestDistMode(t *testing.T) {
	t.Setenv("DLF_LIBNCCL", "/nonexistent/libnccl.so.2")
	for _, c := range []struct {
		env     map[string]string
		v, kind string
		want    string
	}{
		{nil, "auto", "cpu", "inproc"},
		{nil, "mpi", "cpu", "mpi"},
		{map[string]string{"OMPI_COMM_WORLD_SIZE": "2"}, "auto", "cpu", "mpi"},
		{map[string]string{"OMPI_COMM_WORLD_SIZE": "2"}, "auto", "cuda", "mpi"},
		{map[string]string{"OMPI_COMM_WORLD_SIZE": "2"}, "inproc", "cpu", "inproc"},
		{map[string]string{"WORLD_SIZE": "4"}, "auto", "cuda", "mpi"},
		{map[string]string{"WORLD_SIZE": "1"}, "auto", "cuda", "inproc"},
		{map[string]string{"SLURM_NTASKS": "1"}, "auto", "cpu", "inproc"},
		{map[string]string{"SLURM_NTASKS": "8"}, "auto", "cpu", "mpi"},
	} {
		for _, v := range []string{"OMPI_COMM_WORLD_SIZE", "WORLD_SIZE", "SLURM_NTASKS"} {
			t.Setenv(v, c.env[v])
		}
		if got := distMode(c.v, c.kind); got != c.want {
			t.Errorf("--dist %s, --device %s, %v: %s, want %s", c.v, c.kind, c.env, got, c.want)
		}
	}
}

// TestHostBenchFlags: bench --host refuses a run too short to count and an unknown preset, naming
// the flag.
func TestHostBenchFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--host", "--steps", "1"}, "--steps 1"},
		{[]string{"bench", "--host", "--print_every", "0"}, "--print_every 0"},
		{[]string{"bench", "--host", "--presets", "nosuch"}, "--presets"},
	} {
		if _, err := runApp(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %s", c.args, err, c.want)
		}
	}
}
