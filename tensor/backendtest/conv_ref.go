package backendtest

import (
	"math"

	"dlf/tensor"
)

// convGeom is the geometry of one convolution case.
type convGeom struct {
	n, h, w, cin, cout int
	p                  tensor.ConvParams
}

// cinW is the weight's input-channel count (one more with the edge channel).
func (g convGeom) cinW() int {
	if g.p.EdgeBias {
		return g.cin + 1
	}
	return g.cin
}

// padded builds the explicitly padded input [N, H+2P, W+2P, Cin'] of dlf-spec §1.6: zeros around
// the image and, with EdgeBias, an extra last channel that is 1 on the padded border and 0 inside.
func (g convGeom) padded(x []float64) []float64 {
	pad := g.p.Pad()
	hp, wp, cp := g.h+2*pad, g.w+2*pad, g.cinW()
	out := make([]float64, g.n*hp*wp*cp)
	for n := 0; n < g.n; n++ {
		for i := 0; i < hp; i++ {
			for j := 0; j < wp; j++ {
				base := ((n*hp+i)*wp + j) * cp
				inside := i >= pad && i < pad+g.h && j >= pad && j < pad+g.w
				if inside {
					src := ((n*g.h+i-pad)*g.w + j - pad) * g.cin
					copy(out[base:base+g.cin], x[src:src+g.cin])
				}
				if g.p.EdgeBias && !inside {
					out[base+g.cin] = 1
				}
			}
		}
	}
	return out
}

// refConv2D is a VALID convolution of the padded input with HWIO weights, plus bias: each output
// element is the dot product of the K×K×Cin' input patch under it with that output channel's
// filter (both gathered contiguously first, so the inner loop is a plain dot product).
func refConv2D(g convGeom, x, w, bias []float64) (want, scale []float64) {
	pad := g.p.Pad()
	k := g.p.K
	hp, wp, cp := g.h+2*pad, g.w+2*pad, g.cinW()
	xp := g.padded(x)
	kk := k * k * cp
	filt := make([]float64, g.cout*kk) // filt[co][ki][kj][ci] = w[ki][kj][ci][co]
	for q := 0; q < kk; q++ {
		for co := 0; co < g.cout; co++ {
			filt[co*kk+q] = w[q*g.cout+co]
		}
	}
	patch := make([]float64, kk)
	want = make([]float64, g.n*g.h*g.w*g.cout)
	scale = make([]float64, len(want))
	for n := 0; n < g.n; n++ {
		for oi := 0; oi < g.h; oi++ {
			for oj := 0; oj < g.w; oj++ {
				for ki := 0; ki < k; ki++ {
					for kj := 0; kj < k; kj++ {
						src := ((n*hp+oi+ki)*wp + oj + kj) * cp
						copy(patch[(ki*k+kj)*cp:(ki*k+kj+1)*cp], xp[src:src+cp])
					}
				}
				for co := 0; co < g.cout; co++ {
					f := filt[co*kk : (co+1)*kk]
					var s, sa float64
					for q, pv := range patch {
						t := pv * f[q]
						s += t
						sa += math.Abs(t)
					}
					if bias != nil {
						s += bias[co]
						sa += math.Abs(bias[co])
					}
					o := ((n*g.h+oi)*g.w+oj)*g.cout + co
					want[o], scale[o] = s, sa
				}
			}
		}
	}
	return want, scale
}

// refConv2DBackwardData scatters every dy element through the kernel into a padded input gradient,
// then crops the border and drops the edge channel (which is a constant, not an input).
func refConv2DBackwardData(g convGeom, dy, w []float64) (want, scale []float64) {
	pad := g.p.Pad()
	k := g.p.K
	hp, wp, cp := g.h+2*pad, g.w+2*pad, g.cinW()
	wt := make([]float64, len(w)) // wt[ki][kj][co][ci] = w[ki][kj][ci][co]
	for q := 0; q < k*k; q++ {
		for ci := 0; ci < cp; ci++ {
			for co := 0; co < g.cout; co++ {
				wt[(q*g.cout+co)*cp+ci] = w[(q*cp+ci)*g.cout+co]
			}
		}
	}
	dxp := make([]float64, g.n*hp*wp*cp)
	dxa := make([]float64, len(dxp))
	for n := 0; n < g.n; n++ {
		for oi := 0; oi < g.h; oi++ {
			for oj := 0; oj < g.w; oj++ {
				for co := 0; co < g.cout; co++ {
					d := dy[((n*g.h+oi)*g.w+oj)*g.cout+co]
					for ki := 0; ki < k; ki++ {
						for kj := 0; kj < k; kj++ {
							wr := wt[((ki*k+kj)*g.cout+co)*cp : ((ki*k+kj)*g.cout+co+1)*cp]
							o := ((n*hp+oi+ki)*wp + oj + kj) * cp
							dr, da := dxp[o:o+cp], dxa[o:o+cp]
							for ci, wv := range wr {
								t := d * wv
								dr[ci] += t
								da[ci] += math.Abs(t)
							}
						}
					}
				}
			}
		}
	}
	want = make([]float64, g.n*g.h*g.w*g.cin)
	scale = make([]float64, len(want))
	for n := 0; n < g.n; n++ {
		for i := 0; i < g.h; i++ {
			for j := 0; j < g.w; j++ {
				for ci := 0; ci < g.cin; ci++ {
					src := ((n*hp+i+pad)*wp+j+pad)*cp + ci
					dst := ((n*g.h+i)*g.w+j)*g.cin + ci
					want[dst], scale[dst] = dxp[src], dxa[src]
				}
			}
		}
	}
	return want, scale
}

// refConv2DBackwardWeights correlates the padded input (with its edge channel) with dy: for every
// kernel offset, the sum over output positions of the outer product of the input row under that
// offset and the dy row.
func refConv2DBackwardWeights(g convGeom, x, dy []float64) (want, scale []float64) {
	pad := g.p.Pad()
	k := g.p.K
	hp, wp, cp := g.h+2*pad, g.w+2*pad, g.cinW()
	xp := g.padded(x)
	want = make([]float64, k*k*cp*g.cout)
	scale = make([]float64, len(want))
	for ki := 0; ki < k; ki++ {
		for kj := 0; kj < k; kj++ {
			base := (ki*k + kj) * cp * g.cout
			for n := 0; n < g.n; n++ {
				for oi := 0; oi < g.h; oi++ {
					for oj := 0; oj < g.w; oj++ {
						xr := xp[((n*hp+oi+ki)*wp+oj+kj)*cp:][:cp]
						gr := dy[((n*g.h+oi)*g.w+oj)*g.cout:][:g.cout]
						for ci, xv := range xr {
							if xv == 0 {
								continue // exact zero terms (padding) add nothing to either sum
							}
							wr := want[base+ci*g.cout:][:g.cout]
							sr := scale[base+ci*g.cout:][:g.cout]
							for co, gv := range gr {
								t := xv * gv
								wr[co] += t
								sr[co] += math.Abs(t)
							}
						}
					}
				}
			}
		}
	}
	return want, scale
}
