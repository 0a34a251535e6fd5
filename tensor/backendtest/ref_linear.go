package backendtest

import (
	"math"

	"dlf/tensor"
)

// refGemm computes c = alpha·op(a)·op(b) + beta·c for nb batches with a triple loop. a holds
// [m,k] (or [k,m] when transA), b holds [k,n] (or [n,k] when transB), c holds [m,n]; c0 is only
// read when beta ≠ 0. The scale of an element is |alpha|·Σ_p|a·b| + |beta·c|.
func refGemm(transA, transB bool, nb, m, n, k int, alpha float64, a, b []float64, beta float64, c0 []float64) (want, scale []float64) {
	want = make([]float64, nb*m*n)
	scale = make([]float64, nb*m*n)
	// Gather op(A) as rows [m][k] and op(B) as columns [n][k] by their definitions, so that the
	// inner loop runs over contiguous memory.
	rows := make([]float64, m*k)
	cols := make([]float64, n*k)
	for bi := 0; bi < nb; bi++ {
		ab, bb := a[bi*m*k:], b[bi*k*n:]
		for i := 0; i < m; i++ {
			for p := 0; p < k; p++ {
				if transA {
					rows[i*k+p] = ab[p*m+i] // A stored [k, m]
				} else {
					rows[i*k+p] = ab[i*k+p]
				}
			}
		}
		for j := 0; j < n; j++ {
			for p := 0; p < k; p++ {
				if transB {
					cols[j*k+p] = bb[j*k+p] // B stored [n, k]
				} else {
					cols[j*k+p] = bb[p*n+j]
				}
			}
		}
		for i := 0; i < m; i++ {
			ar := rows[i*k : (i+1)*k]
			for j := 0; j < n; j++ {
				bc := cols[j*k : (j+1)*k]
				var s, sa float64
				for p, av := range ar {
					t := av * bc[p]
					s += t
					sa += math.Abs(t)
				}
				o := bi*m*n + i*n + j
				want[o] = alpha * s
				scale[o] = math.Abs(alpha) * sa
				if beta != 0 {
					want[o] += beta * c0[o]
					scale[o] += math.Abs(beta * c0[o])
				}
			}
		}
	}
	return want, scale
}

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

// refSqueeze2 follows dlf-spec §2.2 literally: view [N,H,W,C] as [N, H/2, 2, W/2, 2, C] and
// transpose to [N, H/2, W/2, C, 2, 2], so output channel c·4 + dy·2 + dx holds x[n, 2i+dy, 2j+dx, c].
func refSqueeze2(s []int, x []float64) []float64 {
	n, h, w, c := s[0], s[1], s[2], s[3]
	out := make([]float64, len(x))
	for b := 0; b < n; b++ {
		for i := 0; i < h/2; i++ {
			for dy := 0; dy < 2; dy++ {
				for j := 0; j < w/2; j++ {
					for dx := 0; dx < 2; dx++ {
						for ch := 0; ch < c; ch++ {
							src := ((b*h+2*i+dy)*w+2*j+dx)*c + ch
							dst := ((b*(h/2)+i)*(w/2)+j)*(4*c) + ch*4 + dy*2 + dx
							out[dst] = x[src]
						}
					}
				}
			}
		}
	}
	return out
}

// refUnsqueeze2 is the inverse map: src [N,H,W,4C] to [N,2H,2W,C].
func refUnsqueeze2(s []int, x []float64) []float64 {
	n, h, w, c4 := s[0], s[1], s[2], s[3]
	c := c4 / 4
	out := make([]float64, len(x))
	for b := 0; b < n; b++ {
		for i := 0; i < h; i++ {
			for j := 0; j < w; j++ {
				for ch := 0; ch < c; ch++ {
					for dy := 0; dy < 2; dy++ {
						for dx := 0; dx < 2; dx++ {
							src := ((b*h+i)*w+j)*c4 + ch*4 + dy*2 + dx
							dst := ((b*2*h+2*i+dy)*(2*w)+2*j+dx)*c + ch
							out[dst] = x[src]
						}
					}
				}
			}
		}
	}
	return out
}

// refUniform is element i of a Philox uniform fill: word i%4 of block i/4 (tensor.PhiloxBlock).
func refUniform(n int, seed, offset uint64) []float64 {
	out := make([]float64, n)
	var blk [4]uint32
	for i := range out {
		if i%4 == 0 {
			blk = tensor.PhiloxBlock(seed, offset, uint64(i/4))
		}
		out[i] = tensor.PhiloxUniform(blk[i%4])
	}
	return out
}

// refNormal is element i of a Philox normal fill: value i%4 of the Box–Muller pairs of block i/4.
func refNormal(n int, seed, offset uint64) []float64 {
	out := make([]float64, n)
	var v [4]float64
	for i := range out {
		if i%4 == 0 {
			v = tensor.PhiloxNormal(tensor.PhiloxBlock(seed, offset, uint64(i/4)))
		}
		out[i] = v[i%4]
	}
	return out
}
