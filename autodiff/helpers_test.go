package autodiff

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"dlf/tensor"
	"dlf/tensor/cpu"
)

// newRand returns a generator with a fresh seed (or DLF_SEED to replay one), logged on failure.
func newRand(t testing.TB) (*rand.Rand, uint64) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DLF_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (rerun with DLF_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)), seed
}

// backend is the CPU backend with poisoned allocations, so a gradient element a backward forgot to
// write shows up as NaN.
func backend() tensor.Backend { return cpu.New(cpu.WithPoison(true)) }

// gen draws one input element.
type gen func(r *rand.Rand) float64

// signed draws from ±[0.1, 1]: random, never zero, never close to a kink at 0.
func signed(r *rand.Rand) float64 {
	u := 0.1 + 0.9*r.Float64()
	if r.IntN(2) == 0 {
		return -u
	}
	return u
}

// positive draws from [0.5, 1.5], for logs and divisors.
func positive(r *rand.Rand) float64 { return 0.5 + r.Float64() }

// normal draws standard normals.
func normal(r *rand.Rand) float64 { return r.NormFloat64() }

// randTensor makes a tensor of the given dtype and shape filled by g.
func randTensor(be tensor.Backend, dt tensor.DType, r *rand.Rand, g gen, shape ...int) *tensor.Tensor {
	n := tensor.Shape(shape).Numel()
	d := make([]float64, n)
	for i := range d {
		d[i] = g(r)
	}
	t := tensor.New(be, dt, shape...)
	t.Upload(d)
	return t
}
