package backendtest

import (
	"dlf/tensor"
)

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
