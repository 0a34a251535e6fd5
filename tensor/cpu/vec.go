package cpu

// Vectorised float32 loops for the hyper-networks' elementwise hot path (ReLU, its gradient, the
// actnorm scale and its backward): the Go loops below are the reference and the portable path;
// vec_amd64.s computes the same IEEE operations in the same order on AVX2 vectors, so the two
// give bit-identical results (vec_test.go checks them against each other, with NaN, ±0 and ±Inf
// among the inputs). In the mnist preset these four loops were 31% of a CPU step's time at one
// scalar element per nanosecond (docs/perf.md, "CPU hot path").

// reluGo is d[i] = max(x[i], 0) with Go's max: NaN stays NaN and −0 becomes +0.
func reluGo(d, x []float32) {
	x = x[:len(d)]
	for i, v := range x {
		d[i] = max(v, 0)
	}
}

// reluGradGo is d[i] = g[i]·[s[i] > 0] (the mask multiplied in, so NaN or ±Inf in g gives NaN
// where the mask is 0, as dy·0 does).
func reluGradGo(d, s, g []float32) {
	s, g = s[:len(d)], g[:len(d)]
	for i := range d {
		k := 0
		if s[i] > 0 {
			k = 1
		}
		d[i] = g[i] * float32(k)
	}
}

// actNormRowsGo applies the per-channel scale to rows of c = len(sh) values in float64:
// dst = (src + sh)·mul, or with inverse src·mul − sh.
func actNormRowsGo(dst, src []float32, sh, mul []float64, inverse bool) {
	c := len(sh)
	for r := 0; r+c <= len(src); r += c {
		s, d, mul := src[r:r+c], dst[r:r+c], mul[:c]
		if inverse {
			for j, v := range s {
				d[j] = float32(float64(v)*mul[j] - sh[j])
			}
			continue
		}
		for j, v := range s {
			d[j] = float32((float64(v) + sh[j]) * mul[j])
		}
	}
}

// channelScaleRowsGo is the inner loop of channelScaleBackward over rows of c = len(e) values: for
// each row in order, bdy += dy, bdyy += dy·y and dx = dy·e, in float64.
func channelScaleRowsGo(dx, dy, y []float32, e, bdy, bdyy []float64) {
	c := len(e)
	for r := 0; r+c <= len(dy); r += c {
		g, yy, d := dy[r:r+c], y[r:r+c], dx[r:r+c]
		bdy, bdyy, e := bdy[:c], bdyy[:c], e[:c]
		for j, gv := range g {
			g := float64(gv)
			bdy[j] += g
			bdyy[j] += g * float64(yy[j])
			d[j] = float32(g * e[j])
		}
	}
}
