//go:build amd64 && !purego

package cpu

import "golang.org/x/sys/cpu"

// hasAVX2 gates the assembly loops (AVX2 for the vectors; the float conversions are AVX).
var hasAVX2 = cpu.X86.HasAVX2

//go:noescape
func reluAVX2(d, x *float32, n int)

//go:noescape
func reluGradAVX2(d, s, dy *float32, n int)

//go:noescape
func actNormRowsAVX2(dst, src *float32, rows, c int, sh, mul *float64, inverse bool)

//go:noescape
func channelScaleRowsAVX2(dx, dy, y *float32, rows, c int, e, bdy, bdyy *float64)

// reluF32 is reluGo on AVX2 vectors (the tail of fewer than 8 elements in Go).
func reluF32(d, x []float32) {
	x = x[:len(d)]
	n := len(d) &^ 7
	if !hasAVX2 || n == 0 {
		reluGo(d, x)
		return
	}
	reluAVX2(&d[0], &x[0], n)
	reluGo(d[n:], x[n:])
}

// reluGradF32 is reluGradGo on AVX2 vectors.
func reluGradF32(d, s, g []float32) {
	s, g = s[:len(d)], g[:len(d)]
	n := len(d) &^ 7
	if !hasAVX2 || n == 0 {
		reluGradGo(d, s, g)
		return
	}
	reluGradAVX2(&d[0], &s[0], &g[0], n)
	reluGradGo(d[n:], s[n:], g[n:])
}

// actNormRowsF32 is actNormRowsGo on AVX2 vectors when c is a multiple of 4.
func actNormRowsF32(dst, src []float32, sh, mul []float64, inverse bool) {
	c := len(sh)
	rows := len(src) / max(c, 1)
	if !hasAVX2 || c%4 != 0 || rows == 0 {
		actNormRowsGo(dst, src, sh, mul, inverse)
		return
	}
	_, _, _ = dst[rows*c-1], src[rows*c-1], mul[c-1]
	actNormRowsAVX2(&dst[0], &src[0], rows, c, &sh[0], &mul[0], inverse)
}

// channelScaleRowsF32 is channelScaleRowsGo on AVX2 vectors when c is a multiple of 8: eight
// channels at a time walk all rows, so each channel's sums still add the rows in order.
func channelScaleRowsF32(dx, dy, y []float32, e, bdy, bdyy []float64) {
	c := len(e)
	rows := len(dy) / max(c, 1)
	if !hasAVX2 || c%8 != 0 || rows == 0 {
		channelScaleRowsGo(dx, dy, y, e, bdy, bdyy)
		return
	}
	_, _, _, _, _ = dx[rows*c-1], y[rows*c-1], dy[rows*c-1], bdy[c-1], bdyy[c-1]
	channelScaleRowsAVX2(&dx[0], &dy[0], &y[0], rows, c, &e[0], &bdy[0], &bdyy[0])
}
