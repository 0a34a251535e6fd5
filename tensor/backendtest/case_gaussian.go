package backendtest

import (
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
