package backendtest

import (
	"fmt"
	"math"

	"dlf/tensor"
)

// runRNG covers RandUniform and RandNormal: values against tensor.PhiloxBlock (uniforms bit for bit,
// normals within Tolerances.Normal relative), the returned next offset, determinism for the same
// (seed, offset), and different output for a different offset or seed. Offsets near 2³² check that
// the counter carries into its high word; seeds with high bits set check that both key words are used.
func runRNG(s *suite, t tb) {
	shapes := [][]int{{1}, {3}, {4}, {5}, {7}, {2, 3, 3, 5}, {2, 16, 16, 12}, {100003}}
	type key struct {
		name         string
		seed, offset func(e *env) uint64
	}
	keys := []key{
		{"random", func(e *env) uint64 { return e.rng.Uint64() }, func(e *env) uint64 { return e.rng.Uint64() >> 20 }},
		{"smallseed", func(e *env) uint64 { return uint64(1 + e.rng.IntN(1000)) }, func(e *env) uint64 { return 0 }},
		{"carry", func(e *env) uint64 { return 0xfedcba9876543210 }, func(e *env) uint64 { return 1<<32 - 2 }},
	}
	fills := []struct {
		name string
		fill func(dst *tensor.Tensor, seed, offset uint64) uint64
		ref  func(n int, seed, offset uint64) []float64
	}{
		{"RandUniform", tensor.RandUniform, refUniform},
		{"RandNormal", tensor.RandNormal, refNormal},
	}
	for _, f := range fills {
		s.op(t, f.name, func(t tb, dt tensor.DType) {
			for _, sh := range shapes {
				for _, k := range keys {
					s.leaf(t, dt, shapeName(sh)+"_"+k.name, func(e *env) {
						seed, off := k.seed(e), k.offset(e)
						e.describe("seed %#x offset %#x", seed, off)
						n := numel(sh)
						x := e.poisoned(sh...)
						next := f.fill(x, seed, off)
						if want := off + uint64((n+3)/4); next != want {
							e.t.Errorf("%s: returned next offset %d, want %d", e.where(), next, want)
						}
						got := e.get(x)
						want := e.roundAll(f.ref(n, seed, off))
						if f.name == "RandUniform" {
							e.expectExact("RandUniform", x.Shape(), got, want)
							for i, v := range got {
								if !(v >= 0 && v < 1) {
									e.fatalf("uniform %g at %s outside [0, 1)", v, index(x.Shape(), i))
								}
							}
						} else {
							scale := make([]float64, n)
							for i, w := range want {
								scale[i] = math.Max(math.Abs(w), 1e-30)
							}
							e.expectValues("RandNormal", x.Shape(), got, want, scale, e.tol.Normal)
						}
						// Same (seed, offset) again: identical output.
						y := e.poisoned(sh...)
						f.fill(y, seed, off)
						e.expectExact(fmt.Sprintf("%s repeated with the same (seed, offset)", f.name), y.Shape(), e.get(y), got)
						if n < 4 {
							return
						}
						// Another offset or seed: different output (equal words have probability 2⁻³²).
						for _, alt := range [][2]uint64{{seed, off + 1}, {seed ^ 1, off}, {seed ^ 1<<40, off}} {
							z := e.poisoned(sh...)
							f.fill(z, alt[0], alt[1])
							same := 0
							for i, v := range e.get(z) {
								if v == got[i] {
									same++
								}
							}
							if same > n/2 {
								e.t.Errorf("%s: fill with (seed %#x, offset %#x) equals the one with (seed %#x, offset %#x) in %d of %d elements%s",
									e.where(), alt[0], alt[1], seed, off, same, n, e.seedHint())
							}
						}
					})
				}
			}
		})
	}
}
