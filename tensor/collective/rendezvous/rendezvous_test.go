package rendezvous

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

func clearLaunchEnv(t *testing.T) {
	for _, v := range []string{"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS",
		"SLURM_LOCALID", "SLURM_NTASKS_PER_NODE", "MASTER_ADDR", "MASTER_PORT"} {
		t.Setenv(v, "")
	}
}

func TestFromEnv(t *testing.T) {
	clearLaunchEnv(t)
	if _, ok, err := FromEnv(); ok || err != nil {
		t.Fatalf("no launcher variables: ok %v, err %v", ok, err)
	}
	t.Setenv("RANK", "3")
	t.Setenv("WORLD_SIZE", "4")
	t.Setenv("LOCAL_RANK", "1")
	t.Setenv("LOCAL_WORLD_SIZE", "2")
	if _, _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "MASTER_ADDR and MASTER_PORT") {
		t.Errorf("torchrun variables without MASTER_ADDR: %v", err)
	}
	t.Setenv("MASTER_ADDR", "node7")
	t.Setenv("MASTER_PORT", "29500")
	e, ok, err := FromEnv()
	if want := (Env{Rank: 3, Size: 4, LocalRank: 1, LocalSize: 2, Addr: "node7:29500", From: "RANK/WORLD_SIZE"}); !ok || err != nil || e != want {
		t.Errorf("torchrun: %+v %v %v, want %+v", e, ok, err, want)
	}
	t.Setenv("RANK", "4")
	if _, _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "rank 4 of a world of 4") {
		t.Errorf("RANK out of range: %v", err)
	}
	t.Setenv("RANK", "x")
	if _, _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), `RANK="x"`) {
		t.Errorf("malformed RANK: %v", err)
	}
	t.Setenv("RANK", "1")
	t.Setenv("MASTER_PORT", "99999")
	if _, _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "MASTER_PORT") {
		t.Errorf("bad port: %v", err)
	}
	clearLaunchEnv(t)
	t.Setenv("SLURM_PROCID", "5")
	t.Setenv("SLURM_NTASKS", "8")
	t.Setenv("SLURM_LOCALID", "1")
	t.Setenv("SLURM_NTASKS_PER_NODE", "4")
	t.Setenv("MASTER_ADDR", "10.0.0.1")
	t.Setenv("MASTER_PORT", "1234")
	e, ok, err = FromEnv()
	if want := (Env{Rank: 5, Size: 8, LocalRank: 1, LocalSize: 4, Addr: "10.0.0.1:1234", From: "SLURM_PROCID/SLURM_NTASKS"}); !ok || err != nil || e != want {
		t.Errorf("slurm: %+v %v %v, want %+v", e, ok, err, want)
	}
}

// joinAll joins n ranks in goroutines, rank 0 handing out payload.
func joinAll(t *testing.T, n int, payload []byte) []*Session {
	t.Helper()
	addr := "127.0.0.1:" + freePort(t)
	ss := make([]*Session, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() {
			var p []byte
			if r == 0 {
				p = payload
			}
			ss[r], errs[r] = Join(context.Background(), Env{Rank: r, Size: n, LocalRank: r, LocalSize: n, Addr: addr}, p, 10*time.Second)
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return ss
}

func TestJoinAndClose(t *testing.T) {
	payload := bytes.Repeat([]byte{7, 0, 255}, 43)[:128]
	ss := joinAll(t, 4, payload)
	for r, s := range ss {
		if !bytes.Equal(s.Payload(), payload) {
			t.Errorf("rank %d got payload %x", r, s.Payload())
		}
	}
	for r := len(ss) - 1; r >= 0; r-- {
		if err := ss[r].Close(); err != nil && r != 0 {
			t.Errorf("rank %d close: %v", r, err)
		}
	}
	for r, s := range ss {
		if g := s.LostRanks(); len(g) != 0 {
			t.Errorf("rank %d saw ranks %v lost after an orderly close", r, g)
		}
	}
}

// TestLostRank: rank 2's connection ends without a goodbye (as when its process is killed); rank 0
// and rank 1 both learn that rank 2 is lost, and the message names it.
func TestLostRank(t *testing.T) {
	ss := joinAll(t, 3, []byte("id"))
	ss[2].shut() // no bye: what the kernel does for a killed process
	for _, r := range []int{0, 1} {
		select {
		case got := <-ss[r].Lost():
			if got != 2 {
				t.Errorf("rank %d: lost rank %d, want 2", r, got)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("rank %d never learned that rank 2 was lost", r)
		}
		if d := ss[r].Describe(); !strings.Contains(d, "rank 2 lost") {
			t.Errorf("rank %d: %q", r, d)
		}
	}
	ss[1].Close()
	ss[0].Close()
	// Rank 0 lost, seen from rank 1.
	ss = joinAll(t, 2, []byte("id"))
	ss[0].shut()
	select {
	case got := <-ss[1].Lost():
		if got != 0 {
			t.Errorf("lost rank %d, want 0", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("rank 1 never learned that rank 0 was lost")
	}
	ss[1].Close()
}

func TestJoinRefusals(t *testing.T) {
	addr := "127.0.0.1:" + freePort(t)
	// A world-size mismatch is refused, naming both sizes; the timeout then names the missing rank.
	var wg sync.WaitGroup
	var err0, err1 error
	wg.Go(func() {
		_, err0 = Join(context.Background(), Env{Rank: 0, Size: 2, LocalSize: 2, Addr: addr}, []byte("id"), 2*time.Second)
	})
	wg.Go(func() {
		_, err1 = Join(context.Background(), Env{Rank: 1, Size: 3, LocalRank: 1, LocalSize: 3, Addr: addr}, nil, 2*time.Second)
	})
	wg.Wait()
	if err1 == nil || !strings.Contains(err1.Error(), "rank 1 says the world has 3 ranks, rank 0 says 2") {
		t.Errorf("size mismatch: %v", err1)
	}
	if err0 == nil || !strings.Contains(err0.Error(), "rank(s) [1] did not join") {
		t.Errorf("rank 0 without its peer: %v", err0)
	}
	// Nobody listening: the error names the address and the variables.
	_, err := Join(context.Background(), Env{Rank: 1, Size: 2, LocalRank: 1, LocalSize: 2, Addr: "127.0.0.1:" + freePort(t)}, nil, 500*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "could not reach rank 0") || !strings.Contains(err.Error(), "MASTER_ADDR:MASTER_PORT") {
		t.Errorf("no rank 0: %v", err)
	}
}
