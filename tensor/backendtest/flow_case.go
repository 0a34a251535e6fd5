package backendtest

import (
	"fmt"

	"dlf/tensor"
)

// gaussVariants are all 8 combinations of interleaved/halves × bounded/unbounded × batch broadcast.
func gaussVariants() []tensor.GaussianParams {
	var out []tensor.GaussianParams
	for _, il := range []bool{true, false} {
		for _, bd := range []bool{true, false} {
			for _, bb := range []bool{false, true} {
				out = append(out, tensor.GaussianParams{Interleaved: il, Bounded: bd, BatchBroadcast: bb})
			}
		}
	}
	return out
}

func gaussName(g tensor.GaussianParams) string {
	n := "halves"
	if g.Interleaved {
		n = "interleaved"
	}
	if g.Bounded {
		n += "_bounded"
	} else {
		n += "_unbounded"
	}
	if g.BatchBroadcast {
		n += "_bcast"
	}
	return n
}

// gaussDraw draws p (μ and r unsaturated: |r| ≤ 2 through tanh, |log σ| ≤ 1 unbounded), α and β for
// z of shape sh; alpha and beta are nil when unbounded (they are not used then).
func gaussDraw(e *env, g tensor.GaussianParams, sh []int) (gaussCase, *tensor.Tensor, *tensor.Tensor, *tensor.Tensor) {
	n, h, w, c := sh[0], sh[1], sh[2], sh[3]
	if g.BatchBroadcast {
		n = 1
	}
	ps := []int{n, h, w, 2 * c}
	pv := make([]float64, numel(ps))
	rmax := 1.0
	if g.Bounded {
		rmax = 2
	}
	for i := range pv {
		if (g.Interleaved && i%2 == 1) || (!g.Interleaved && i%(2*c) >= c) {
			pv[i] = e.scalar(0.02, rmax)
		} else {
			pv[i] = e.scalar(0.1, 1.5)
		}
	}
	q := gaussCase{g: g, shape: sh, p: pv}
	var alpha, beta *tensor.Tensor
	if g.Bounded {
		q.alpha, q.beta = e.scalar(0.3, 1.5), e.scalar(0.05, 1)
		alpha, beta = e.tensor([]float64{q.alpha}, 1), e.tensor([]float64{q.beta}, 1)
	}
	return q, e.tensor(pv, ps...), alpha, beta
}

// runGaussian covers GaussianLogProb (with and without eps), GaussianLogProbBackward and
// GaussianSample, plus the eps → sample round trip, in all 8 parameter layouts, against the formulas
// and, in float64, central differences.
func runGaussian(s *suite, t tb) {
	s.op(t, "GaussianLogProb", func(t tb, dt tensor.DType) {
		for _, sh := range actShapes {
			for _, g := range gaussVariants() {
				for _, withEps := range []bool{true, false} {
					name := shapeName(sh) + "_" + gaussName(g)
					if !withEps {
						name += "_noeps"
					}
					s.leaf(t, dt, name, func(e *env) {
						q, p, alpha, beta := gaussDraw(e, g, sh)
						e.describe("%+v alpha=%g beta=%g eps=%v", g, q.alpha, q.beta, withEps)
						n := sh[0]
						zv := e.signed(numel(sh), 0.1, 2)
						lp0 := e.signed(n, 1, 100)
						lp := e.tensor(lp0, n)
						var eps *tensor.Tensor
						if withEps {
							eps = e.poisoned(sh...)
						}
						wlp, weps := q.logProb(zv, lp0)
						tensor.GaussianLogProb(g, lp, eps, e.tensor(zv, sh...), p, alpha, beta)
						want, scale := split(wlp)
						e.expect("GaussianLogProb lp (accumulated)", lp, want, scale, e.tol.Reduction)
						if withEps {
							want, scale = split(weps)
							e.expect("GaussianLogProb eps", eps, want, scale, e.tol.Elementwise)
						}
					})
				}
			}
		}
	})
	s.op(t, "GaussianLogProbBackward", func(t tb, dt tensor.DType) {
		for _, sh := range actShapes {
			for _, g := range gaussVariants() {
				s.leaf(t, dt, shapeName(sh)+"_"+gaussName(g), func(e *env) {
					q, p, alpha, beta := gaussDraw(e, g, sh)
					e.describe("%+v alpha=%g beta=%g", g, q.alpha, q.beta)
					n := sh[0]
					zv, dlpv := e.signed(numel(sh), 0.1, 2), e.signed(n, 0.1, 2)
					dz, dp := e.poisoned(sh...), e.poisoned(p.Shape()...)
					var dalpha, dbeta *tensor.Tensor
					if g.Bounded {
						dalpha, dbeta = e.poisoned(1), e.poisoned(1)
					}
					wdz, wdp, wda, wdb := q.backward(zv, dlpv)
					tensor.GaussianLogProbBackward(g, dz, dp, dalpha, dbeta, e.tensor(zv, sh...), p, alpha, beta, e.tensor(dlpv, n))
					want, scale := split(wdz)
					e.expect("GaussianLogProbBackward dz", dz, want, scale, e.tol.Elementwise)
					want, scale = split(wdp)
					dpTol := e.tol.Elementwise
					if g.BatchBroadcast {
						dpTol = e.tol.Reduction // summed over the batch
					}
					e.expect("GaussianLogProbBackward dp", dp, want, scale, dpTol)
					if g.Bounded {
						e.expect("GaussianLogProbBackward dalpha", dalpha, []float64{wda.v}, []float64{wda.m}, e.tol.Reduction)
						e.expect("GaussianLogProbBackward dbeta", dbeta, []float64{wdb.v}, []float64{wdb.m}, e.tol.Reduction)
					}
				})
			}
		}
	})
	s.op(t, "GaussianSample", func(t tb, dt tensor.DType) {
		for _, sh := range actShapes {
			for _, g := range gaussVariants() {
				s.leaf(t, dt, shapeName(sh)+"_"+gaussName(g), func(e *env) {
					q, p, alpha, beta := gaussDraw(e, g, sh)
					e.describe("%+v alpha=%g beta=%g", g, q.alpha, q.beta)
					epsv := e.signed(numel(sh), 0.05, 2.5)
					z := e.poisoned(sh...)
					want, scale := split(q.sample(epsv))
					tensor.GaussianSample(g, z, e.tensor(epsv, sh...), p, alpha, beta)
					e.expect("GaussianSample z", z, want, scale, e.tol.Elementwise)
				})
				// Round trip: the eps that GaussianLogProb writes, sampled back, gives z again.
				s.leaf(t, dt, shapeName(sh)+"_"+gaussName(g)+"_roundtrip", func(e *env) {
					q, p, alpha, beta := gaussDraw(e, g, sh)
					e.describe("%+v alpha=%g beta=%g, GaussianSample(eps of GaussianLogProb(z))", g, q.alpha, q.beta)
					n, c := sh[0], sh[3]
					zv := e.signed(numel(sh), 0.1, 2)
					lp := e.tensor(e.signed(n, 1, 100), n)
					eps, z := e.poisoned(sh...), e.poisoned(sh...)
					tensor.GaussianLogProb(g, lp, eps, e.tensor(zv, sh...), p, alpha, beta)
					tensor.GaussianSample(g, z, eps, p, alpha, beta)
					_, weps := q.logProb(zv, make([]float64, n))
					rt := make([]ev, len(zv))
					for i := range rt {
						_, _, mu, ls, _ := q.at(i/c, i%c)
						rt[i] = mu.add(expE(ls).mul(weps[i]))
					}
					_, scale := split(rt)
					e.expect("z after the round trip", z, zv, scale, e.tol.Elementwise)
				})
			}
		}
	})
	s.op(t, "GaussianGradCheck", func(t tb, dt tensor.DType) {
		if dt != tensor.Float64 {
			return
		}
		for _, sh := range fdShapes {
			for _, g := range gaussVariants() {
				s.leaf(t, dt, shapeName(sh)+"_"+gaussName(g)+"_fd", func(e *env) { gaussFD(e, g, sh) })
			}
		}
	})
}

// gaussFD checks dz, dp, dalpha, dbeta against central differences of L = Σ dlp·lp with
// lp = GaussianLogProb(z, p, α, β).
func gaussFD(e *env, g tensor.GaussianParams, sh []int) {
	q, p, alpha, beta := gaussDraw(e, g, sh)
	e.describe("%+v alpha=%g beta=%g; central differences of GaussianLogProb", g, q.alpha, q.beta)
	n := sh[0]
	zv, dlpv := e.signed(numel(sh), 0.1, 2), e.signed(n, 0.1, 2)
	lp0 := e.signed(n, 1, 10)
	pv := q.p
	av, bv := []float64{q.alpha}, []float64{q.beta}
	forward := func() [][]float64 {
		var a, b *tensor.Tensor
		if g.Bounded {
			a, b = e.tensor(av, 1), e.tensor(bv, 1)
		}
		lp := e.tensor(lp0, n)
		tensor.GaussianLogProb(g, lp, nil, e.tensor(zv, sh...), e.tensor(pv, p.Shape()...), a, b)
		return [][]float64{e.get(lp)}
	}
	dz, dp := e.poisoned(sh...), e.poisoned(p.Shape()...)
	var dalpha, dbeta *tensor.Tensor
	if g.Bounded {
		dalpha, dbeta = e.poisoned(1), e.poisoned(1)
	}
	tensor.GaussianLogProbBackward(g, dz, dp, dalpha, dbeta, e.tensor(zv, sh...), p, alpha, beta, e.tensor(dlpv, n))
	inputs := []fdInput{{"z", sh, zv, e.get(dz)}, {"p", p.Shape(), pv, e.get(dp)}}
	if g.Bounded {
		inputs = append(inputs, fdInput{"alpha", []int{1}, av, e.get(dalpha)}, fdInput{"beta", []int{1}, bv, e.get(dbeta)})
	}
	lps, _ := q.logProb(zv, lp0)
	_, s0 := split(lps)
	e.fdCheck(inputs, [][]float64{dlpv}, [][]float64{s0}, forward)
}

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

// affineVariant is one AffineParams configuration with the layout of h.
type affineVariant struct {
	p tensor.AffineParams
	// hFlat gives a PerChannel h as [2C] instead of [1,1,1,2C] (both are accepted).
	hFlat bool
}

func (v affineVariant) name() string {
	n := "tanh"
	if v.p.Mode == tensor.ScaleSigmoid {
		n = "sigmoid"
	}
	if v.p.PerChannel {
		n += "_perchannel"
		if v.hFlat {
			n += "1d"
		}
	}
	return n
}

var affineVariants = []affineVariant{
	{p: tensor.AffineParams{Mode: tensor.ScaleTanh}},
	{p: tensor.AffineParams{Mode: tensor.ScaleTanh, PerChannel: true}},
	{p: tensor.AffineParams{Mode: tensor.ScaleTanh, PerChannel: true}, hFlat: true},
	{p: tensor.AffineParams{Mode: tensor.ScaleSigmoid}},
	{p: tensor.AffineParams{Mode: tensor.ScaleSigmoid, PerChannel: true}},
}

// affineDraw draws h (μ in [0.1, 2] by magnitude, raw scales r unsaturated), α and β for shape sh,
// and returns the reference case plus the tensors h, alpha, beta (alpha and beta are nil in the
// sigmoid mode, which ignores them).
func affineDraw(e *env, v affineVariant, sh []int) (affineCase, *tensor.Tensor, *tensor.Tensor, *tensor.Tensor) {
	c := sh[3]
	hs := []int{sh[0], sh[1], sh[2], 2 * c}
	if v.p.PerChannel {
		hs = []int{1, 1, 1, 2 * c}
		if v.hFlat {
			hs = []int{2 * c}
		}
	}
	hv := make([]float64, numel(hs))
	mu := e.signed(len(hv)/2, 0.1, 2)
	r := e.signed(len(hv)/2, 0.02, 2)
	for i := range mu {
		hv[2*i], hv[2*i+1] = mu[i], r[i]
	}
	ac := affineCase{p: v.p, shape: sh, h: hv}
	var alpha, beta *tensor.Tensor
	if v.p.Mode == tensor.ScaleTanh {
		ac.alpha, ac.beta = e.scalar(0.3, 1.5), e.scalar(0.1, 3)
		alpha, beta = e.tensor([]float64{ac.alpha}, 1), e.tensor([]float64{ac.beta}, 1)
	}
	return ac, e.tensor(hv, hs...), alpha, beta
}

// runAffine covers AffineForward, AffineInverse (and the round trip) and AffineBackward in both scale
// modes, per-position and PerChannel h, with and without ld/dld, against the formulas and, in
// float64, central differences.
func runAffine(s *suite, t tb) {
	s.op(t, "AffineForward", func(t tb, dt tensor.DType) {
		for _, sh := range actShapes {
			for _, v := range affineVariants {
				for _, withLD := range []bool{true, false} {
					if !withLD && v.hFlat {
						continue
					}
					name := shapeName(sh) + "_" + v.name()
					if withLD {
						name += "_ld"
					}
					s.leaf(t, dt, name, func(e *env) {
						ac, h, alpha, beta := affineDraw(e, v, sh)
						e.describe("%s alpha=%g beta=%g ld=%v", v.name(), ac.alpha, ac.beta, withLD)
						n := sh[0]
						xv := e.signed(numel(sh), 0.1, 2)
						var ld0 []float64
						var ld *tensor.Tensor
						if withLD {
							ld0 = e.signed(n, 1, 100)
							ld = e.tensor(ld0, n)
						}
						y := e.poisoned(sh...)
						wy, wld := ac.forward(xv, ld0)
						tensor.AffineForward(v.p, y, ld, e.tensor(xv, sh...), h, alpha, beta)
						want, scale := split(wy)
						e.expect("AffineForward y", y, want, scale, e.tol.Elementwise)
						if withLD {
							want, scale = split(wld)
							e.expect("AffineForward ld (accumulated)", ld, want, scale, e.tol.Reduction)
						}
					})
				}
			}
		}
	})
	s.op(t, "AffineInverse", func(t tb, dt tensor.DType) {
		for _, sh := range actShapes {
			for _, v := range affineVariants {
				for _, withLD := range []bool{true, false} {
					if !withLD && v.hFlat {
						continue
					}
					name := shapeName(sh) + "_" + v.name()
					if withLD {
						name += "_ld"
					}
					s.leaf(t, dt, name, func(e *env) {
						ac, h, alpha, beta := affineDraw(e, v, sh)
						e.describe("%s alpha=%g beta=%g ld=%v", v.name(), ac.alpha, ac.beta, withLD)
						n := sh[0]
						yv := e.signed(numel(sh), 0.1, 2)
						var ld0 []float64
						var ld *tensor.Tensor
						if withLD {
							ld0 = e.signed(n, 1, 100)
							ld = e.tensor(ld0, n)
						}
						x := e.poisoned(sh...)
						wx, wld := ac.inverse(yv, ld0)
						tensor.AffineInverse(v.p, x, ld, e.tensor(yv, sh...), h, alpha, beta)
						want, scale := split(wx)
						e.expect("AffineInverse x", x, want, scale, e.tol.Elementwise)
						if withLD {
							want, scale = split(wld)
							e.expect("AffineInverse ld (accumulated)", ld, want, scale, e.tol.Reduction)
						}
					})
				}
			}
			for _, v := range affineVariants {
				s.leaf(t, dt, shapeName(sh)+"_"+v.name()+"_roundtrip", func(e *env) {
					ac, h, alpha, beta := affineDraw(e, v, sh)
					e.describe("%s alpha=%g beta=%g, AffineInverse(AffineForward(x))", v.name(), ac.alpha, ac.beta)
					n, c := sh[0], sh[3]
					xv := e.signed(numel(sh), 0.1, 2)
					ld0 := e.signed(n, 1, 100)
					ld := e.tensor(ld0, n)
					y, x := e.poisoned(sh...), e.poisoned(sh...)
					tensor.AffineForward(v.p, y, ld, e.tensor(xv, sh...), h, alpha, beta)
					tensor.AffineInverse(v.p, x, ld, y, h, alpha, beta)
					fy, fld := ac.forward(xv, ld0)
					rt := make([]ev, len(fy))
					for i := range fy {
						_, _, mu, _, l, _ := ac.at(i/c, i%c)
						rt[i] = fy[i].mul(expE(l.neg())).sub(mu)
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
		}
	})
	s.op(t, "AffineBackward", func(t tb, dt tensor.DType) {
		for _, sh := range actShapes {
			for _, v := range affineVariants {
				for _, withLD := range []bool{true, false} {
					if !withLD && v.hFlat {
						continue
					}
					name := shapeName(sh) + "_" + v.name()
					if withLD {
						name += "_dld"
					}
					s.leaf(t, dt, name, func(e *env) {
						ac, h, alpha, beta := affineDraw(e, v, sh)
						e.describe("%s alpha=%g beta=%g dld=%v", v.name(), ac.alpha, ac.beta, withLD)
						affineBackwardLeaf(e, v, ac, h, alpha, beta, withLD)
					})
				}
			}
		}
	})
	s.op(t, "AffineGradCheck", func(t tb, dt tensor.DType) {
		if dt != tensor.Float64 {
			return
		}
		for _, sh := range fdShapes {
			for _, v := range affineVariants {
				s.leaf(t, dt, shapeName(sh)+"_"+v.name()+"_fd", func(e *env) { affineFD(e, v, sh) })
			}
		}
	})
}

func affineBackwardLeaf(e *env, v affineVariant, ac affineCase, h, alpha, beta *tensor.Tensor, withLD bool) {
	sh := ac.shape
	n := sh[0]
	dyv, yv := e.signed(numel(sh), 0.1, 2), e.signed(numel(sh), 0.1, 2)
	var dldv []float64
	var dld *tensor.Tensor
	if withLD {
		dldv = e.signed(n, 0.1, 2)
		dld = e.tensor(dldv, n)
	}
	dx, dh := e.poisoned(sh...), e.poisoned(h.Shape()...)
	var dalpha, dbeta *tensor.Tensor
	if v.p.Mode == tensor.ScaleTanh {
		dalpha, dbeta = e.poisoned(1), e.poisoned(1)
	}
	wdx, wdh, wda, wdb := ac.backward(dyv, yv, dldv)
	tensor.AffineBackward(v.p, dx, dh, dalpha, dbeta, e.tensor(dyv, sh...), e.tensor(yv, sh...), h, alpha, beta, dld)
	want, scale := split(wdx)
	e.expect("AffineBackward dx", dx, want, scale, e.tol.Elementwise)
	want, scale = split(wdh)
	dhTol := e.tol.Elementwise
	if v.p.PerChannel {
		dhTol = e.tol.Reduction // summed over every position
	}
	e.expect("AffineBackward dh", dh, want, scale, dhTol)
	if v.p.Mode == tensor.ScaleTanh {
		e.expect("AffineBackward dalpha", dalpha, []float64{wda.v}, []float64{wda.m}, e.tol.Reduction)
		e.expect("AffineBackward dbeta", dbeta, []float64{wdb.v}, []float64{wdb.m}, e.tol.Reduction)
	}
}

// affineFD checks dx, dh, dalpha, dbeta against central differences of
// L = Σ dy·y + Σ dld·ld with (y, ld) = AffineForward(x, h, α, β).
func affineFD(e *env, v affineVariant, sh []int) {
	ac, h, alpha, beta := affineDraw(e, v, sh)
	e.describe("%s alpha=%g beta=%g; central differences of AffineForward", v.name(), ac.alpha, ac.beta)
	n := sh[0]
	xv := e.signed(numel(sh), 0.1, 2)
	dyv, dldv := e.signed(numel(sh), 0.1, 2), e.signed(n, 0.1, 2)
	ld0 := e.signed(n, 1, 10)
	hv := ac.h
	av, bv := []float64{ac.alpha}, []float64{ac.beta}
	forward := func() [][]float64 {
		var a, b *tensor.Tensor
		if v.p.Mode == tensor.ScaleTanh {
			a, b = e.tensor(av, 1), e.tensor(bv, 1)
		}
		y := e.poisoned(sh...)
		ld := e.tensor(ld0, n)
		tensor.AffineForward(v.p, y, ld, e.tensor(xv, sh...), e.tensor(hv, h.Shape()...), a, b)
		return [][]float64{e.get(y), e.get(ld)}
	}
	y := e.tensor(forward()[0], sh...)
	dx, dh := e.poisoned(sh...), e.poisoned(h.Shape()...)
	var dalpha, dbeta *tensor.Tensor
	if v.p.Mode == tensor.ScaleTanh {
		dalpha, dbeta = e.poisoned(1), e.poisoned(1)
	}
	tensor.AffineBackward(v.p, dx, dh, dalpha, dbeta, e.tensor(dyv, sh...), y, h, alpha, beta, e.tensor(dldv, n))
	inputs := []fdInput{{"x", sh, xv, e.get(dx)}, {"h", h.Shape(), hv, e.get(dh)}}
	if v.p.Mode == tensor.ScaleTanh {
		inputs = append(inputs, fdInput{"alpha", []int{1}, av, e.get(dalpha)}, fdInput{"beta", []int{1}, bv, e.get(dbeta)})
	}
	ys, lds := ac.forward(xv, ld0)
	_, s0 := split(ys)
	_, s1 := split(lds)
	e.fdCheck(inputs, [][]float64{dyv, dldv}, [][]float64{s0, s1}, forward)
}
