package autodiff

import (
	"math/rand/v2"
	"testing"

	"dlf/tensor"
	"dlf/tensor/cpu"
)

// BenchmarkTapeOverhead measures what recording costs per op: a chain of 64 Scale ops on a
// 16-element tensor (so the arithmetic is negligible), evaluated without a tape, recorded, and
// recorded plus Backward. ns/op divided by 64 is the per-op figure.
func BenchmarkTapeOverhead(b *testing.B) {
	be := cpu.New()
	r := rand.New(rand.NewPCG(1, 2))
	w := NewParam(randTensor(be, tensor.Float32, r, signed, 16))
	chain := func(tp *Tape) *Var {
		h := w
		for range 64 {
			next := tp.Scale(h, 1.01)
			if h != w {
				h.Release()
			}
			h = next
		}
		return h
	}
	b.Run("nograd", func(b *testing.B) {
		for b.Loop() {
			chain(nil).Release()
		}
	})
	b.Run("record", func(b *testing.B) {
		for b.Loop() {
			tp := NewTape()
			chain(tp).Release()
			tp.Release()
		}
	})
	b.Run("record+backward", func(b *testing.B) {
		for b.Loop() {
			tp := NewTape()
			y := chain(tp)
			seed := tensor.Full(be, tensor.Float32, 1, 16)
			tp.BackwardFrom([]*Var{y}, []*tensor.Tensor{seed})
			seed.Release()
			y.Release()
			w.ZeroGrad()
		}
	})
}

// BenchmarkChainBackward times forward+backward of the 16-layer chains of TestPeakMemory
// (activation [8,16,16,8] float32) and reports the backward's peak memory above parameters and
// gradients, in activations.
func BenchmarkChainBackward(b *testing.B) {
	shape := []int{8, 16, 16, 8}
	act := float64(tensor.Shape(shape).Numel() * 4)
	const L = 16
	for _, c := range []struct {
		name   string
		layer  func(tp *Tape, x *Var, p []*Var) *Var
		params [][]int
	}{
		{"storing", func(tp *Tape, x *Var, p []*Var) *Var { return scaleShift(tp, x, p[0], p[1], false) }, [][]int{{8}, {8}}},
		{"recomputing", func(tp *Tape, x *Var, p []*Var) *Var { return scaleShift(tp, x, p[0], p[1], true) }, [][]int{{8}, {8}}},
		{"reversible-coupling", func(tp *Tape, x *Var, p []*Var) *Var {
			out := tp.Reversible("coupling", x, p, coupling, couplingInverse)
			out[1].Release()
			return out[0]
		}, [][]int{{3, 3, 5, 8}, {8}, {1}, {1}}},
		{"plain-coupling", func(tp *Tape, x *Var, p []*Var) *Var {
			out := coupling(tp, x, p)
			out[1].Release()
			return out[0]
		}, [][]int{{3, 3, 5, 8}, {8}, {1}, {1}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			be := &countingBackend{Backend: cpu.New(), sizes: map[tensor.Buffer]int64{}}
			r := rand.New(rand.NewPCG(3, 4))
			var params [][]*Var
			var paramBytes int64
			for range L {
				var ps []*Var
				for _, s := range c.params {
					ps = append(ps, NewParam(randTensor(be, tensor.Float32, r, signed, s...)))
					paramBytes += int64(tensor.Shape(s).Numel() * 4)
				}
				params = append(params, ps)
			}
			x := NewVar(randTensor(be, tensor.Float32, r, signed, shape...))
			var peak int64
			for b.Loop() {
				tp := NewTape()
				h := x
				for l := range L {
					next := c.layer(tp, h, params[l])
					if h != x {
						h.Release()
					}
					h = next
				}
				sq := tp.Square(h)
				h.Release()
				loss := tp.Mean(sq, tensor.AxisAll)
				sq.Release()
				be.resetPeak()
				tp.Backward(loss)
				loss.Release()
				_, p := be.stats()
				peak = p
				for _, ps := range params {
					ZeroGrad(ps...)
				}
			}
			b.ReportMetric(float64(peak-2*paramBytes)/act, "peak-activations")
		})
	}
}
