//go:build !amd64 || purego

package cpu

// Without amd64 assembly the Go loops run.

func reluF32(d, x []float32)        { reluGo(d, x) }
func reluGradF32(d, s, g []float32) { reluGradGo(d, s, g) }

func actNormRowsF32(dst, src []float32, sh, mul []float64, inverse bool) {
	actNormRowsGo(dst, src, sh, mul, inverse)
}

func channelScaleRowsF32(dx, dy, y []float32, e, bdy, bdyy []float64) {
	channelScaleRowsGo(dx, dy, y, e, bdy, bdyy)
}
