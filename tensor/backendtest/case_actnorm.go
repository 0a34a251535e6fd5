package backendtest

import (
	"fmt"

	"dlf/tensor"
)

// actNormScales are the scale arguments: 1 (Glow's flow actnorm with logs stored as is) and 3
// (the hyper-network actnorm that multiplies logs by 3, dlf-spec §1.6).
var actNormScales = []float64{1, 3}

func actNormName(sh []int, s float64, ld bool) string {
	n := fmt.Sprintf("%s_s%g", shapeName(sh), s)
	if ld {
		n += "_ld"
	}
	return n
}

// actNormInputs draws bias and logs; logs stay small so that exp(s·logs) is within e^±1.5.
func actNormInputs(e *env, c int) (bias, logs []float64) {
	return e.signed(c, 0.1, 1), e.signed(c, 0.02, 0.5)
}

// runActNorm covers ActNormForward, ActNormInverse (and their round trip) and ActNormBackward, with
// and without the logdet vector, against the formulas and, in float64, central differences.
func runActNorm(s *suite, t tb) {
	s.op(t, "ActNormForward", func(t tb, dt tensor.DType) {
		for _, sh := range actShapes {
			for _, sc := range actNormScales {
				for _, withLD := range []bool{true, false} {
					s.leaf(t, dt, actNormName(sh, sc, withLD), func(e *env) {
						e.describe("scale=%g ld=%v", sc, withLD)
						n, c := sh[0], sh[3]
						xv := e.signed(numel(sh), 0.1, 2)
						bv, lv := actNormInputs(e, c)
						var ld0 []float64
						var ld *tensor.Tensor
						if withLD {
							ld0 = e.signed(n, 1, 100)
							ld = e.tensor(ld0, n)
						}
						y := e.poisoned(sh...)
						wy, wld := refActNormForward(sh, xv, bv, lv, sc, ld0)
						tensor.ActNormForward(y, ld, e.tensor(xv, sh...), e.tensor(bv, c), e.tensor(lv, c), sc)
						want, scale := split(wy)
						e.expect("ActNormForward y", y, want, scale, e.tol.Elementwise)
						if withLD {
							want, scale = split(wld)
							e.expect("ActNormForward ld (accumulated)", ld, want, scale, e.tol.Reduction)
						}
					})
				}
			}
		}
	})
	s.op(t, "ActNormInverse", func(t tb, dt tensor.DType) {
		for _, sh := range actShapes {
			for _, sc := range actNormScales {
				for _, withLD := range []bool{true, false} {
					s.leaf(t, dt, actNormName(sh, sc, withLD), func(e *env) {
						e.describe("scale=%g ld=%v", sc, withLD)
						n, c := sh[0], sh[3]
						yv := e.signed(numel(sh), 0.1, 2)
						bv, lv := actNormInputs(e, c)
						var ld0 []float64
						var ld *tensor.Tensor
						if withLD {
							ld0 = e.signed(n, 1, 100)
							ld = e.tensor(ld0, n)
						}
						x := e.poisoned(sh...)
						wx, wld := refActNormInverse(sh, yv, bv, lv, sc, ld0)
						tensor.ActNormInverse(x, ld, e.tensor(yv, sh...), e.tensor(bv, c), e.tensor(lv, c), sc)
						want, scale := split(wx)
						e.expect("ActNormInverse x", x, want, scale, e.tol.Elementwise)
						if withLD {
							want, scale = split(wld)
							e.expect("ActNormInverse ld (accumulated)", ld, want, scale, e.tol.Reduction)
						}
					})
				}
			}
			// Round trip: inverse(forward(x)) = x and the logdet returns to its start.
			s.leaf(t, dt, shapeName(sh)+"_roundtrip", func(e *env) {
				const sc = 3.0
				e.describe("scale=%g, ActNormInverse(ActNormForward(x))", sc)
				n, c := sh[0], sh[3]
				xv := e.signed(numel(sh), 0.1, 2)
				bv, lv := actNormInputs(e, c)
				ld0 := e.signed(n, 1, 100)
				ld := e.tensor(ld0, n)
				b, l := e.tensor(bv, c), e.tensor(lv, c)
				y, x := e.poisoned(sh...), e.poisoned(sh...)
				tensor.ActNormForward(y, ld, e.tensor(xv, sh...), b, l, sc)
				tensor.ActNormInverse(x, ld, y, b, l, sc)
				// Scale of the composition: the forward's running bound fed through the inverse.
				fy, fld := refActNormForward(sh, xv, bv, lv, sc, ld0)
				rt := make([]ev, len(fy))
				for i := range fy {
					ch := i % c
					rt[i] = fy[i].mul(expE(in(lv[ch]).scale(-sc))).sub(in(bv[ch]))
				}
				_, scale := split(rt)
				e.expect("x after the round trip", x, xv, scale, e.tol.Elementwise)
				ldScale := make([]float64, n)
				for i := range ldScale {
					ldScale[i] = 2 * fld[i].m
				}
				e.expect("ld after the round trip", ld, ld0, ldScale, e.tol.Reduction)
			})
		}
	})
	s.op(t, "ActNormBackward", func(t tb, dt tensor.DType) {
		for _, sh := range actShapes {
			for _, sc := range actNormScales {
				for _, withLD := range []bool{true, false} {
					s.leaf(t, dt, actNormName(sh, sc, withLD), func(e *env) {
						e.describe("scale=%g dld=%v", sc, withLD)
						n, c := sh[0], sh[3]
						dyv, yv := e.signed(numel(sh), 0.1, 2), e.signed(numel(sh), 0.1, 2)
						_, lv := actNormInputs(e, c)
						var dldv []float64
						var dld *tensor.Tensor
						if withLD {
							dldv = e.signed(n, 0.1, 2)
							dld = e.tensor(dldv, n)
						}
						dx, dbias, dlogs := e.poisoned(sh...), e.poisoned(c), e.poisoned(c)
						wdx, wdb, wdl := refActNormBackward(sh, dyv, yv, lv, dldv, sc)
						tensor.ActNormBackward(dx, dbias, dlogs, e.tensor(dyv, sh...), e.tensor(yv, sh...), e.tensor(lv, c), dld, sc)
						want, scale := split(wdx)
						e.expect("ActNormBackward dx", dx, want, scale, e.tol.Elementwise)
						want, scale = split(wdb)
						e.expect("ActNormBackward dbias", dbias, want, scale, e.tol.Reduction)
						want, scale = split(wdl)
						e.expect("ActNormBackward dlogs", dlogs, want, scale, e.tol.Reduction)
					})
				}
			}
		}
	})
	s.op(t, "ActNormGradCheck", func(t tb, dt tensor.DType) {
		if dt != tensor.Float64 {
			return
		}
		for _, sh := range fdShapes {
			for _, withLD := range []bool{true, false} {
				s.leaf(t, dt, actNormName(sh, 3, withLD)+"_fd", func(e *env) {
					const sc = 3.0
					e.describe("scale=%g dld=%v; central differences of ActNormForward", sc, withLD)
					n, c := sh[0], sh[3]
					xv := e.signed(numel(sh), 0.1, 2)
					bv, lv := actNormInputs(e, c)
					dyv := e.signed(numel(sh), 0.1, 2)
					ld0 := e.signed(n, 1, 10)
					var dldv []float64
					var dld *tensor.Tensor
					w := [][]float64{dyv}
					if withLD {
						dldv = e.signed(n, 0.1, 2)
						dld = e.tensor(dldv, n)
						w = append(w, dldv)
					}
					forward := func() [][]float64 {
						y := e.poisoned(sh...)
						ld := e.tensor(ld0, n)
						tensor.ActNormForward(y, ld, e.tensor(xv, sh...), e.tensor(bv, c), e.tensor(lv, c), sc)
						return [][]float64{e.get(y), e.get(ld)}
					}
					y := e.tensor(forward()[0], sh...)
					dx, dbias, dlogs := e.poisoned(sh...), e.poisoned(c), e.poisoned(c)
					tensor.ActNormBackward(dx, dbias, dlogs, e.tensor(dyv, sh...), y, e.tensor(lv, c), dld, sc)
					ys, lds := refActNormForward(sh, xv, bv, lv, sc, ld0)
					_, s0 := split(ys)
					_, s1 := split(lds)
					e.fdCheck([]fdInput{
						{"x", sh, xv, e.get(dx)},
						{"bias", []int{c}, bv, e.get(dbias)},
						{"logs", []int{c}, lv, e.get(dlogs)},
					}, w, [][]float64{s0, s1}, forward)
				})
			}
		}
	})
}
