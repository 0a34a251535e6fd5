package cpu

import (
	"dlf/tensor"
)

// Squeeze2 maps src [N,H,W,C] to dst [N,H/2,W/2,4C]; output channel c·4+dy·2+dx holds
// src[n, 2i+dy, 2j+dx, c] (Glow's order, dlf-spec §2.2).
func (b *Backend) Squeeze2(dst, src *tensor.Tensor) {
	if b.dead() {
		return
	}
	n, h, w, c := src.Shape().NHWC()
	if is32(dst) {
		squeeze(b, data[float32](dst), data[float32](src), n, h, w, c, false)
	} else {
		squeeze(b, data[float64](dst), data[float64](src), n, h, w, c, false)
	}
}

// Unsqueeze2 maps src [N,H,W,4C] back to dst [N,2H,2W,C], inverting Squeeze2.
func (b *Backend) Unsqueeze2(dst, src *tensor.Tensor) {
	if b.dead() {
		return
	}
	n, h, w, c := dst.Shape().NHWC()
	if is32(dst) {
		squeeze(b, data[float32](src), data[float32](dst), n, h, w, c, true)
	} else {
		squeeze(b, data[float64](src), data[float64](dst), n, h, w, c, true)
	}
}

// squeeze moves elements between the unsqueezed tensor u [N,H,W,C] and the squeezed tensor
// s [N,H/2,W/2,4C]: u → s when inverse is false, s → u when it is true. Work is split over the
// output rows (n, i) of the squeezed tensor; each covers two input rows.
func squeeze[T float](b *Backend, s, u []T, n, h, w, c int, inverse bool) {
	h2, w2, c4 := h/2, w/2, 4*c
	b.parallel(n*h2, w*2*c, func(lo, hi int) {
		for row := lo; row < hi; row++ {
			nn, i := row/h2, row%h2
			for dy := 0; dy < 2; dy++ {
				ur := u[((nn*h+2*i+dy)*w)*c:][:w*c]
				sr := s[(nn*h2+i)*w2*c4:][:w2*c4]
				for j := 0; j < w2; j++ {
					for dx := 0; dx < 2; dx++ {
						up := ur[(2*j+dx)*c:][:c]
						sp := sr[j*c4+dy*2+dx:]
						if inverse {
							for ch := range up {
								up[ch] = sp[ch*4]
							}
						} else {
							for ch, v := range up {
								sp[ch*4] = v
							}
						}
					}
				}
			}
		}
	})
}
