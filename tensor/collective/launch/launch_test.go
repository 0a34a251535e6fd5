package launch

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"dlf/tensor/collective/mpi/mpitest"
	"dlf/tensor/collective/nccl/nccltest"
)

func TestDeviceOrdinal(t *testing.T) {
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

// childEnv marks the processes the id-exchange tests start: "mpi" or "env".
const childEnv = "DLF_LAUNCH_TEST_CHILD"

// TestMain runs a child's side of the id-exchange tests: join, print the id, and (on the NCCL
// emulator, which needs no GPU) build the communicator from it, which fails unless the 128 bytes
// arrived intact and were passed by value correctly.
func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		if err := child(); err != nil {
			fmt.Println("FAIL:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func child() error {
	w, err := Join("nccl", "--dist nccl", 30*time.Second)
	if err != nil {
		return err
	}
	defer w.Close()
	if nccltest.Emulated(w.NCCL) {
		c, err := w.NCCL.InitRank(w.ID, w.Size, w.Rank)
		if err != nil {
			return err
		}
		defer c.Destroy()
	}
	fmt.Printf("rank %d of %d (%s): id %x\n", w.Rank, w.Size, w.How, w.ID.Internal[:])
	return nil
}

// sameID checks that every rank printed the same non-zero id.
func sameID(t *testing.T, out string, how string) {
	t.Helper()
	ids := map[string]bool{}
	for r := range 2 {
		re := regexp.MustCompile(fmt.Sprintf(`rank %d of 2 \(([^)]*)\): id ([0-9a-f]+)`, r))
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("rank %d did not report its id:\n%s", r, out)
		}
		if !strings.Contains(m[1], how) {
			t.Errorf("rank %d met the others through %q, want %q", r, m[1], how)
		}
		ids[m[2]] = true
		if strings.Trim(m[2], "0") == "" {
			t.Errorf("rank %d has an all-zero id", r)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("the ranks hold different ids:\n%s", out)
	}
}

// TestIDOverMPI: under mpirun, rank 0's NCCL unique id reaches every rank over MPI (no GPU needed).
func TestIDOverMPI(t *testing.T) {
	nccltest.Library(t)
	out := mpitest.RunSelf(t, 2, "^TestIDOverMPI$", childEnv+"=mpi")
	sameID(t, out, "bootstrapped over Open MPI")
}

// TestIDOverRendezvous: two processes started as torchrun starts them; the id goes through the TCP
// rendezvous at MASTER_ADDR:MASTER_PORT (no GPU needed).
func TestIDOverRendezvous(t *testing.T) {
	nccltest.Library(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	var outs [2]bytes.Buffer
	var cmds [2]*exec.Cmd
	for r := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=env", "OMPI_COMM_WORLD_SIZE=", fmt.Sprintf("RANK=%d", r), "WORLD_SIZE=2",
			fmt.Sprintf("LOCAL_RANK=%d", r), "LOCAL_WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT="+port)
		cmd.Stdout, cmd.Stderr = &outs[r], &outs[r]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[r] = cmd
	}
	for r, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("rank %d: %v\n%s", r, err, outs[r].String())
		}
	}
	sameID(t, outs[0].String()+outs[1].String(), "rendezvous at 127.0.0.1:"+port+" from RANK/WORLD_SIZE")
}
