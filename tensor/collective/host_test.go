package collective

import (
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// newRand returns a generator with a fresh seed (or DLF_SEED to replay one), logged on failure.
func newRand(t testing.TB) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DLF_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (rerun with DLF_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// testSizes are element counts that divide by N, do not, and are smaller than N.
var testSizes = []int{1, 2, 3, 5, 12, 97, 1000, 4099, 70001}

// randBufs returns one buffer of n nonzero values per rank.
func randBufs[T Float](r *rand.Rand, ranks, n int) [][]T {
	out := make([][]T, ranks)
	for k := range out {
		out[k] = make([]T, n)
		for i := range out[k] {
			v := 0.1 + r.Float64()*10
			if r.IntN(2) == 0 {
				v = -v
			}
			out[k][i] = T(v)
		}
	}
	return out
}

// reference returns the float64 sum (or mean) over ranks and Σ|x| for the error bound.
func reference[T Float](bufs [][]T, op Op) (want, mag []float64) {
	n := len(bufs[0])
	want, mag = make([]float64, n), make([]float64, n)
	for _, b := range bufs {
		for i, v := range b {
			want[i] += float64(v)
			mag[i] += math.Abs(float64(v))
		}
	}
	if op == Avg {
		for i := range want {
			want[i] /= float64(len(bufs))
			mag[i] /= float64(len(bufs))
		}
	}
	return want, mag
}

// checkAllReduce compares every rank's result with the float64 reference: each element is at most
// N roundings of the element type away (N−1 adds and the Avg scale), so |got − want| ≤ N·ε·Σ|x|,
// plus the reference's own float64 rounding (another N·2⁻⁵³·Σ|x|, which matters only for float64
// data); and all ranks must hold bit-identical values.
func checkAllReduce[T Float](t *testing.T, got [][]T, want, mag []float64, eps float64) {
	t.Helper()
	ranks := len(got)
	for r := range got {
		for i, v := range got[r] {
			if err := math.Abs(float64(v) - want[i]); !(err <= float64(ranks)*(eps+0x1p-53)*mag[i]) {
				t.Fatalf("rank %d element %d of %d: got %g, want %g (error %g)", r, i, len(want), v, want[i], err)
			}
			if got[r][i] != got[0][i] {
				t.Fatalf("rank %d element %d: %g differs from rank 0's %g: replicas would drift", r, i, got[r][i], got[0][i])
			}
		}
	}
}

// runHost runs one all-reduce with a goroutine per rank.
func runHost[T Float](t *testing.T, g *HostRing[T], bufs [][]T, op Op) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(bufs))
	for r := range bufs {
		wg.Go(func() { errs[r] = g.AllReduce(r, bufs[r], op) })
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

func testHost[T Float](t *testing.T, eps float64) {
	r := newRand(t)
	for _, ranks := range []int{1, 2, 3, 4} {
		for _, sliceElems := range []int{3, 1000, 0} {
			g, err := NewHostRing[T](ranks, Options{SliceElems: sliceElems, Depth: 1 + r.IntN(3)})
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range testSizes {
				if sliceElems == 3 && n > 5000 {
					continue // tens of thousands of hand-offs prove nothing more
				}
				for _, op := range []Op{Sum, Avg} {
					bufs := randBufs[T](r, ranks, n)
					want, mag := reference(bufs, op)
					runHost(t, g, bufs, op)
					checkAllReduce(t, bufs, want, mag, eps)
				}
			}
		}
	}
}

func TestHostAllReduceFloat32(t *testing.T) { testHost[float32](t, 0x1p-24) }
func TestHostAllReduceFloat64(t *testing.T) { testHost[float64](t, 0x1p-53) }

// TestHostAllReduceMismatch checks that ranks passing different lengths get an error on every rank
// instead of a deadlock.
func TestHostAllReduceMismatch(t *testing.T) {
	g, _ := NewHostRing[float32](3, Options{})
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for r := range 3 {
		wg.Go(func() { errs[r] = g.AllReduce(r, make([]float32, 10+r/2), Sum) })
	}
	wg.Wait()
	for r, err := range errs {
		if err == nil {
			t.Fatalf("rank %d: no error for mismatched lengths", r)
		}
	}
	if err := g.AllReduce(5, nil, Sum); err == nil {
		t.Fatal("rank 5 of 3 accepted")
	}
	if _, err := NewHostRing[float32](0, Options{}); err == nil {
		t.Fatal("a ring of 0 ranks accepted")
	}
}

// TestPlanCoversEverything checks the split: chunks and slices tile [0, n) exactly once.
func TestPlanCoversEverything(t *testing.T) {
	for _, ranks := range []int{1, 2, 3, 4, 7} {
		for _, n := range append([]int{0}, testSizes...) {
			for _, se := range []int{1, 4, 100} {
				p := newPlan(n, ranks, se)
				hit := make([]int, n)
				for c := range ranks {
					for k := range p.slices {
						s := p.slice(c, k)
						if s.len() > p.maxSlice() || s.len() > se && se >= 1 {
							t.Fatalf("n=%d ranks=%d slice %d/%d of chunk %d has %d elements (max %d, granule %d)", n, ranks, k, p.slices, c, s.len(), p.maxSlice(), se)
						}
						for i := s.lo; i < s.hi; i++ {
							hit[i]++
						}
					}
				}
				for i, h := range hit {
					if h != 1 {
						t.Fatalf("n=%d ranks=%d: element %d covered %d times", n, ranks, i, h)
					}
				}
			}
		}
	}
}
