package cpu

import (
	"math"

	"dlf/tensor"
)

// Fill sets every element of dst to v.
func (b *Backend) Fill(dst *tensor.Tensor, v float64) {
	if b.dead() {
		return
	}
	if is32(dst) {
		fill(b, data[float32](dst), float32(v))
	} else {
		fill(b, data[float64](dst), v)
	}
}

// Copy copies src into dst (same element count and dtype).
func (b *Backend) Copy(dst, src *tensor.Tensor) {
	if b.dead() {
		return
	}
	if is32(dst) {
		copyPar(b, data[float32](dst), data[float32](src))
	} else {
		copyPar(b, data[float64](dst), data[float64](src))
	}
}

// CopyChannels copies channels [srcOff, srcOff+c) of each row of src into [dstOff, dstOff+c) of dst.
func (b *Backend) CopyChannels(dst *tensor.Tensor, dstOff int, src *tensor.Tensor, srcOff, c int) {
	if b.dead() {
		return
	}
	rows, dc := dst.Shape().Rows()
	_, sc := src.Shape().Rows()
	if is32(dst) {
		copyChannels(b, data[float32](dst), dc, dstOff, data[float32](src), sc, srcOff, rows, c)
	} else {
		copyChannels(b, data[float64](dst), dc, dstOff, data[float64](src), sc, srcOff, rows, c)
	}
}

func fill[T float](b *Backend, d []T, v T) {
	b.parallel(len(d), 1, func(lo, hi int) { fillRange(d[lo:hi], v) })
}

// fillRange sets s to v. Zero is a memclr; other values are written into a short prefix that is
// then doubled with copy, so the bulk of the work is the runtime's vectorised memmove instead of
// one scalar store per element (about 3× faster).
func fillRange[T float](s []T, v T) {
	if v == 0 && !math.Signbit(float64(v)) {
		clear(s)
		return
	}
	const prefix = 64
	n := min(len(s), prefix)
	for i := range s[:n] {
		s[i] = v
	}
	for n < len(s) {
		n += copy(s[n:], s[:n])
	}
}

// copyPar is copy() split across goroutines: one core's memmove does not saturate the memory bus.
func copyPar[T float](b *Backend, d, s []T) {
	b.parallel(len(d), 1, func(lo, hi int) { copy(d[lo:hi], s[lo:hi]) })
}

func copyChannels[T float](b *Backend, d []T, dc, dOff int, s []T, sc, sOff, rows, c int) {
	if c == 0 {
		return
	}
	b.parallel(rows, c, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			copy(d[r*dc+dOff:r*dc+dOff+c], s[r*sc+sOff:r*sc+sOff+c])
		}
	})
}
