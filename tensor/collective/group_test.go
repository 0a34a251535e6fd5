package collective_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"dlf/tensor/collective"
)

// TestLocalGroup: three goroutine members; sums in rank order (compared with the sum computed here
// in the same order, so bit-exact), means, broadcasts, and an Abort that ends a blocked barrier.
func TestLocalGroup(t *testing.T) {
	const n = 3
	g, err := collective.LocalGroup(n)
	if err != nil {
		t.Fatal(err)
	}
	data := make([][]float64, n)
	want := make([]float64, 5)
	for r := range n {
		rng := rand.New(rand.NewPCG(uint64(r), 1))
		data[r] = make([]float64, len(want))
		for i := range want {
			data[r][i] = rng.NormFloat64()
			want[i] += data[r][i]
		}
	}
	errs := make(chan error, n)
	for r := range n {
		go func() {
			errs <- func() error {
				m := g[r]
				if m.Rank() != r || m.Size() != n {
					return fmt.Errorf("member %d says rank %d of %d", r, m.Rank(), m.Size())
				}
				v := append([]float64(nil), data[r]...)
				if err := m.AllReduceFloat64(v, collective.Sum); err != nil {
					return err
				}
				for i := range v {
					if v[i] != want[i] {
						return fmt.Errorf("rank %d: sum[%d] %v, want %v", r, i, v[i], want[i])
					}
				}
				mean := append([]float64(nil), data[r]...)
				if err := m.AllReduceFloat64(mean, collective.Avg); err != nil {
					return err
				}
				if mean[0] != want[0]*(1/float64(n)) {
					return fmt.Errorf("rank %d: mean %v", r, mean[0])
				}
				b := []byte{byte(r), byte(r)}
				if err := m.BroadcastBytes(b, 2); err != nil {
					return err
				}
				f := []float32{float32(r)}
				if err := m.BroadcastFloat32(f, 1); err != nil {
					return err
				}
				if b[0] != 2 || b[1] != 2 || f[0] != 1 {
					return fmt.Errorf("rank %d: broadcasts gave %v %v", r, b, f)
				}
				return m.Barrier()
			}()
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Only rank 0 enters the barrier; an Abort from elsewhere ends it with the reason.
	reason := errors.New("watchdog says stop")
	time.AfterFunc(50*time.Millisecond, func() { g[1].Abort(reason) })
	if err := g[0].Barrier(); !errors.Is(err, reason) {
		t.Fatalf("barrier after Abort: %v", err)
	}
	if err := g[2].AllReduceFloat64([]float64{1}, collective.Sum); !errors.Is(err, reason) {
		t.Fatalf("collective after Abort: %v", err)
	}
}
