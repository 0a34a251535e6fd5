package conv

import "dlf/tensor/cpu/gemm"

// The tap-expanded lowering, for convolutions with few output channels and many input channels
// (a flow's hyper-network output convolution, 128 → 4–8 channels, and the backward-data pass of
// its input convolution, which is the forward convolution 128 → 2–4): instead of an im2col
// matrix of K²·Cin' columns per pixel — a K²-fold copy of the input that costs more than the
// product itself when Cout is small — one GEMM multiplies the input as it lies, rows × Cin, by the
// weight rearranged to Cin × K²·Cout:
//
//	Z[pixel][tap·Cout + co] = Σ_ci x[pixel][ci] · w[tap][ci][co]
//
// and each output is the sum of K² shifted entries of Z: y[o][co] = Σ_tap Z[o + offset(tap)][tap,
// co], where a tap that falls into the padding contributes the edge channel's weight instead
// (w[tap][Cin][co] with EdgeBias, else 0). The weight gradient is the same product transposed,
// dw[tap][ci][co] = Σ_pixel x[pixel][ci] · dy[pixel − offset(tap)][co]. The GEMM's n = K²·Cout
// (36 or 72 at K = 3) also fills the vector lanes that an n = Cout = 4 product leaves empty.
// Measured in docs/perf.md ("CPU hot path", issue 15).

// Bounds of the tap-expanded lowering: the expanded width K²·Cout at most maxTapCols (Cout ≤ 8 at
// K = 3, ≤ 3 at K = 5), and at least minTapCin input channels (with fewer the GEMM's depth is too
// shallow to pay for writing Z, and im2col copies little).
const (
	maxTapCols = 96
	minTapCin  = 16
)

// tapLowering is false in tests that force the im2col path on shapes the tap lowering would take.
var tapLowering = true

// useTaps reports whether p takes the tap-expanded lowering.
func (p Params) useTaps() bool {
	return tapLowering && p.K > 1 && p.Cout*p.K*p.K <= maxTapCols && p.Cin >= minTapCin
}

// tapWeight rearranges w [K,K,Cin',Cout] into wr [Cin][K²·Cout] (the GEMM's B) and, with
// EdgeBias, edge [K²][Cout] (the edge channel's weights).
func tapWeight[T Float](p Params, w []T) (wr, edge *[]T) {
	taps, cin, cinW, cout := p.K*p.K, p.Cin, p.CinW(), p.Cout
	nz := taps * cout
	wr = getScratch[T](cin * nz)
	for t := 0; t < taps; t++ {
		for ci := 0; ci < cin; ci++ {
			copy((*wr)[ci*nz+t*cout:ci*nz+(t+1)*cout], w[(t*cinW+ci)*cout:(t*cinW+ci+1)*cout])
		}
	}
	edge = getScratch[T](taps * cout)
	clear((*edge)[:taps*cout])
	if p.EdgeBias {
		for t := 0; t < taps; t++ {
			copy((*edge)[t*cout:(t+1)*cout], w[(t*cinW+cin)*cout:(t*cinW+cin+1)*cout])
		}
	}
	return wr, edge
}

// halo is how many pixel rows before and after an output pixel its taps reach in the flattened
// [N·H·W] order: pad image rows and pad pixels.
func (p Params) halo() int {
	pad := (p.K - 1) / 2
	return pad*p.W + pad
}

// forwardTaps is forward (y = conv(x, w) + bias + beta·y) by the tap-expanded lowering.
func forwardTaps[T Float](p Params, x, w, bias, y []T, beta T) {
	rows, cin, cout, k := p.Rows(), p.Cin, p.Cout, p.K
	pad, nz, halo := (k-1)/2, k*k*cout, p.halo()
	wr, edge := tapWeight(p, w)
	pb := getPacked[T]()
	pb.Pack(gemm.Options{}, false, cin, nz, (*wr)[:cin*nz], nz)
	putScratch(wr)
	ew := (*edge)[:k*k*cout]
	// tapOff[t] is where tap t of a pixel inside the padding border finds its Z entry, relative to
	// the pixel's own Z row.
	tapOff := make([]int, 0, k*k)
	for kh := 0; kh < k; kh++ {
		for kw := 0; kw < k; kw++ {
			tapOff = append(tapOff, ((kh-pad)*p.W+kw-pad)*nz+(kh*k+kw)*cout)
		}
	}
	block := max(tapBlockRows(nz, sizeOf[T]()), 2*halo)
	parallelRows(rows, p.threads(), 2*cin*nz, func(r0, r1 int) {
		z := getScratch[T]((min(block, r1-r0) + 2*halo) * nz)
		var accBuf [maxTapCols]T
		acc := accBuf[:cout]
		for b0 := r0; b0 < r1; b0 += block {
			b1 := min(r1, b0+block)
			// Z for every input pixel a tap of an output in [b0, b1) can reach.
			zs, ze := max(0, b0-halo), min(rows, b1+halo)
			zb := (*z)[:(ze-zs)*nz]
			gemm.GemmPacked(single, false, ze-zs, 1, x[zs*cin:ze*cin], cin, pb, 0, zb, nz)
			hw := p.H * p.W
			for o := b0; o < b1; o++ {
				n, oh, ow := o/hw, (o/p.W)%p.H, o%p.W
				for co := range acc {
					acc[co] = 0
				}
				if oh >= pad && oh < p.H-pad && ow >= pad && ow < p.W-pad {
					// Inside: every tap reads Z, at a fixed offset from the pixel's own row.
					zo := (o - zs) * nz
					for _, off := range tapOff {
						for co, v := range zb[zo+off : zo+off+cout] {
							acc[co] += v
						}
					}
				} else {
					for kh := 0; kh < k; kh++ {
						ih := oh + kh - pad
						for kw := 0; kw < k; kw++ {
							iw, t := ow+kw-pad, kh*k+kw
							if ih < 0 || ih >= p.H || iw < 0 || iw >= p.W {
								for co, v := range ew[t*cout : (t+1)*cout] {
									acc[co] += v
								}
								continue
							}
							zr := ((n*p.H+ih)*p.W + iw - zs) * nz
							for co, v := range zb[zr+t*cout : zr+(t+1)*cout] {
								acc[co] += v
							}
						}
					}
				}
				out := y[o*cout : (o+1)*cout]
				for co, v := range acc {
					if len(bias) > 0 {
						v += bias[co]
					}
					if beta != 0 {
						v += beta * out[co]
					}
					out[co] = v
				}
			}
		}
		putScratch(z)
	})
	putPacked(pb)
	putScratch(edge)
}

// backwardWeightsTaps is BackwardWeights by the tap-expanded lowering: per block of input pixels,
// D[pixel][tap·Cout + co] = dy[pixel − offset(tap)][co] (0 where that output does not exist), then
// dwr[ci][tap·Cout + co] += Σ_pixel x[pixel][ci] · D[pixel][tap·Cout + co]; the edge channel's row
// sums dy over the outputs whose tap falls into the padding.
func backwardWeightsTaps[T Float](p Params, x, dy, dw []T, accumulate bool) {
	rows, cin, cinW, cout, k := p.Rows(), p.Cin, p.CinW(), p.Cout, p.K
	pad, taps := (k-1)/2, k*k
	nz := taps * cout
	block := tapBlockRows(nz, sizeOf[T]())
	workers := max(1, min(p.threads(), ceilDiv(rows, 8), rows*2*cin*nz/minWorkerFlops))
	type partial struct{ wr, edge *[]T }
	parts := make([]partial, workers)
	parallelFixed(workers, func(t int) {
		r0, r1 := rows*t/workers, rows*(t+1)/workers
		wrp, edgep := getScratch[T](cin*nz), getScratch[T](taps*cout)
		wr, edge := (*wrp)[:cin*nz], (*edgep)[:taps*cout]
		clear(wr)
		clear(edge)
		d := getScratch[T](min(block, r1-r0) * nz)
		hw := p.H * p.W
		for b0 := r0; b0 < r1; b0 += block {
			b1 := min(r1, b0+block)
			for i := b0; i < b1; i++ {
				n, ih, iw := i/hw, (i/p.W)%p.H, i%p.W
				drow := (*d)[(i-b0)*nz : (i-b0+1)*nz]
				for kh := 0; kh < k; kh++ {
					oh := ih - kh + pad
					for kw := 0; kw < k; kw++ {
						ow, tt := iw-kw+pad, kh*k+kw
						dst := drow[tt*cout : (tt+1)*cout]
						if oh < 0 || oh >= p.H || ow < 0 || ow >= p.W {
							clear(dst)
							continue
						}
						copy(dst, dy[((n*p.H+oh)*p.W+ow)*cout:])
					}
				}
			}
			gemm.Gemm(single, true, false, cin, nz, b1-b0, 1, x[b0*cin:b1*cin], cin, (*d)[:(b1-b0)*nz], nz, 1, wr, nz)
		}
		putScratch(d)
		if p.EdgeBias {
			// Outputs in [r0, r1) whose taps reach the padding: only border pixels.
			for o := r0; o < r1; o++ {
				oh, ow := (o/p.W)%p.H, o%p.W
				if oh >= pad && oh < p.H-pad && ow >= pad && ow < p.W-pad {
					continue
				}
				g := dy[o*cout : (o+1)*cout]
				for kh := 0; kh < k; kh++ {
					ih := oh + kh - pad
					for kw := 0; kw < k; kw++ {
						iw := ow + kw - pad
						if ih >= 0 && ih < p.H && iw >= 0 && iw < p.W {
							continue
						}
						e := edge[(kh*k+kw)*cout : (kh*k+kw+1)*cout]
						for co, v := range g {
							e[co] += v
						}
					}
				}
			}
		}
		parts[t] = partial{wrp, edgep}
	})
	// Sum the partials in a fixed order and scatter into dw [tap][ci'][co].
	for tt := 0; tt < taps; tt++ {
		for ci := 0; ci < cinW; ci++ {
			dst := dw[(tt*cinW+ci)*cout : (tt*cinW+ci+1)*cout]
			for co := range dst {
				var s T
				for _, pt := range parts {
					if ci < cin {
						s += (*pt.wr)[ci*nz+tt*cout+co]
					} else {
						s += (*pt.edge)[tt*cout+co]
					}
				}
				if accumulate {
					s += dst[co]
				}
				dst[co] = s
			}
		}
	}
	for _, pt := range parts {
		putScratch(pt.wr)
		putScratch(pt.edge)
	}
}

// tapBlockRows is how many pixels' Z (or D) rows of nz elements fit in colBudget, at least
// minBlockRows.
func tapBlockRows(nz, size int) int {
	return max(colBudget/(nz*size), minBlockRows)
}
