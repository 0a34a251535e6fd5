package cpu

import (
	"fmt"

	"dlf/tensor"
)

// Reduce writes Sum, Mean or SumSq of src over the given axes into dst. Sums accumulate in float64
// for both dtypes, one partial per fixed block combined in block order, so the result is accurate
// for large float32 tensors and identical for every thread count.
func (b *Backend) Reduce(op tensor.ReduceOp, axes tensor.ReduceAxes, dst, src *tensor.Tensor) {
	if b.dead() {
		return
	}
	if op < tensor.Sum || op > tensor.SumSq {
		panic(fmt.Sprintf("cpu: unknown reduction %d", op))
	}
	s := src.Shape()
	var n, p, c int // reduce an [n, p, c] view
	switch axes {
	case tensor.AxisAll:
		n, p, c = 1, 1, src.Numel()
	case tensor.AxisExample:
		n = s[0]
		p, c = 1, src.Numel()/max(n, 1)
	case tensor.AxisChannel:
		p, c = s.Rows()
		n = 1
	default:
		panic(fmt.Sprintf("cpu: unknown reduction axes %d", axes))
	}
	if is32(dst) {
		reduce(b, op, axes, data[float32](dst), data[float32](src), n, p, c)
	} else {
		reduce(b, op, axes, data[float64](dst), data[float64](src), n, p, c)
	}
}

func reduce[T float](b *Backend, op tensor.ReduceOp, axes tensor.ReduceAxes, dst, src []T, n, p, c int) {
	sq := op == tensor.SumSq
	if axes == tensor.AxisChannel {
		// Per-channel sums over rows: each block adds its rows into a partial row of c sums.
		bk := b.flatBlocks(p, c)
		part := b.scratch(bk.count * c)
		defer b.release(part)
		b.parallel(bk.count, bk.r*c, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				_, r0, r1 := bk.block(i)
				acc := part.data[i*c : (i+1)*c]
				clear(acc)
				if c < smallMod {
					// Narrow rows (the flows' 4–12 channels): several rows at a time.
					channelSumsNarrow(acc, src[r0*c:r1*c], sq)
					continue
				}
				channelSumsWide(acc, src[r0*c:r1*c], sq)
			}
		})
		scale := 1.0
		if op == tensor.Mean {
			scale = 1 / float64(p)
		}
		for j := 0; j < c; j++ {
			s := 0.0
			for i := 0; i < bk.count; i++ {
				s += part.data[i*c+j]
			}
			dst[j] = T(s * scale)
		}
		return
	}
	// AxisAll and AxisExample: n examples of c contiguous elements each, viewed as rows of one
	// element so that blocks can split a single large example.
	bk := b.exampleBlocks(n, c, 1)
	part := b.scratch(bk.count)
	defer b.release(part)
	b.parallel(bk.count, bk.r, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			_, r0, r1 := bk.block(i)
			part.data[i] = sum(src[r0:r1], sq)
		}
	})
	scale := 1.0
	if op == tensor.Mean {
		scale = 1 / float64(c)
	}
	for e := 0; e < n; e++ {
		s := 0.0
		for _, v := range part.data[e*bk.perEx : (e+1)*bk.perEx] {
			s += v
		}
		dst[e] = T(s * scale)
	}
}

// sum returns Σx (or Σx² when sq) in float64. Four independent accumulators break the dependency
// chain of a single running sum (about 4× faster) and are combined in a fixed order.
func sum[T float](x []T, sq bool) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	if sq {
		for ; i+4 <= len(x); i += 4 {
			v := x[i : i+4 : i+4]
			a, b, c, d := float64(v[0]), float64(v[1]), float64(v[2]), float64(v[3])
			s0 += a * a
			s1 += b * b
			s2 += c * c
			s3 += d * d
		}
		for ; i < len(x); i++ {
			a := float64(x[i])
			s0 += a * a
		}
	} else {
		for ; i+4 <= len(x); i += 4 {
			v := x[i : i+4 : i+4]
			s0 += float64(v[0])
			s1 += float64(v[1])
			s2 += float64(v[2])
			s3 += float64(v[3])
		}
		for ; i < len(x); i++ {
			s0 += float64(x[i])
		}
	}
	return (s0 + s1) + (s2 + s3)
}

// smallMod is the row length below which per-channel sums use channelSumsNarrow.
const smallMod = 16

// narrowSpan is the least row length channelSumsNarrow hands to channelSumsWide.
const narrowSpan = 64

// channelSumsNarrow adds x (whole rows of len(acc) < smallMod channels) into acc. It views k
// consecutive rows as one row of k·c values so that the wide kernel gets long inner loops, then
// folds the k copies of each channel's sum; the leftover rows are added one by one.
func channelSumsNarrow[T float](acc []float64, x []T, sq bool) {
	c := len(acc)
	k := (narrowSpan + c - 1) / c
	var wide [narrowSpan + smallMod]float64
	w := wide[:k*c]
	whole := len(x) / (k * c) * (k * c)
	channelSumsWide(w, x[:whole], sq)
	for m := 0; m < k; m++ {
		for j := range acc {
			acc[j] += w[m*c+j]
		}
	}
	channelSumsWide(acc, x[whole:], sq)
}

// channelSumsWide adds x (whole rows of len(acc) channels) into acc channel by channel. Rows are
// taken four at a time and added pairwise before touching acc, which quarters the loads and stores
// of the accumulators (the bottleneck of a one-row-at-a-time loop).
func channelSumsWide[T float](acc []float64, x []T, sq bool) {
	c := len(acc)
	rows := len(x) / c
	r := 0
	for ; r+4 <= rows; r += 4 {
		x0 := x[r*c : (r+1)*c]
		x1, x2, x3 := x[(r+1)*c:(r+2)*c], x[(r+2)*c:(r+3)*c], x[(r+3)*c:(r+4)*c]
		x1, x2, x3, a := x1[:len(x0)], x2[:len(x0)], x3[:len(x0)], acc[:len(x0)]
		if sq {
			for j, v := range x0 {
				f0, f1, f2, f3 := float64(v), float64(x1[j]), float64(x2[j]), float64(x3[j])
				a[j] += (f0*f0 + f1*f1) + (f2*f2 + f3*f3)
			}
		} else {
			for j, v := range x0 {
				a[j] += (float64(v) + float64(x1[j])) + (float64(x2[j]) + float64(x3[j]))
			}
		}
	}
	for ; r < rows; r++ {
		row := x[r*c : (r+1)*c]
		a := acc[:len(row)]
		for j, v := range row {
			f := float64(v)
			if sq {
				f *= f
			}
			a[j] += f
		}
	}
}
