package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"dlf/tensor"
)

// input describes one random input of an op case.
type input struct {
	shape []int
	g     gen
}

func in(g gen, shape ...int) input { return input{shape, g} }

// opCase is one differentiable op (or composition) under gradient check.
type opCase struct {
	name   string
	inputs []input
	f      GradCheckFunc
}

// zeroGrads marks, per case, inputs the outputs do not depend on: their gradient must be exactly
// zero.
var zeroGrads = map[string][]bool{"actnorm/logdet-only": {true, true, false}}

// one returns f's single output as a slice.
func one(v *Var) []*Var { return []*Var{v} }

// opCases lists every differentiable op of the package, with each broadcast kind, axis, transpose
// and mode that changes the backward code path.
func opCases() []opCase {
	var cs []opCase
	x := []int{2, 3, 3, 4}
	binOps := []struct {
		name string
		f    func(t *Tape, a, b *Var) *Var
		gb   gen
	}{
		{"add", (*Tape).Add, signed}, {"sub", (*Tape).Sub, signed},
		{"mul", (*Tape).Mul, signed}, {"div", (*Tape).Div, positive},
	}
	bShapes := map[string][]int{
		"full": {2, 3, 3, 4}, "channel": {4}, "channel4d": {1, 1, 1, 4},
		"example": {2, 1, 1, 1}, "scalar": {1}, "scalar4d": {1, 1, 1, 1},
	}
	for _, op := range binOps {
		for bname, bs := range bShapes {
			f := op.f
			cs = append(cs, opCase{op.name + "/" + bname, []input{in(signed, x...), in(op.gb, bs...)},
				func(t *Tape, v []*Var) []*Var { return one(f(t, v[0], v[1])) }})
		}
	}
	// The same Var on both sides: gradients from two paths accumulate into one leaf.
	cs = append(cs, opCase{"mul/self", []input{in(signed, x...)},
		func(t *Tape, v []*Var) []*Var { return one(t.Mul(v[0], v[0])) }})
	cs = append(cs,
		opCase{"scale", []input{in(signed, x...)}, func(t *Tape, v []*Var) []*Var { return one(t.Scale(v[0], -2.5)) }},
		opCase{"neg", []input{in(signed, x...)}, func(t *Tape, v []*Var) []*Var { return one(t.Neg(v[0])) }},
		opCase{"addconst", []input{in(signed, x...)}, func(t *Tape, v []*Var) []*Var { return one(t.AddConst(v[0], 0.7)) }},
		opCase{"exp", []input{in(signed, x...)}, func(t *Tape, v []*Var) []*Var { return one(t.Exp(v[0])) }},
		opCase{"log", []input{in(positive, x...)}, func(t *Tape, v []*Var) []*Var { return one(t.Log(v[0])) }},
		opCase{"tanh", []input{in(normal, x...)}, func(t *Tape, v []*Var) []*Var { return one(t.Tanh(v[0])) }},
		opCase{"sigmoid", []input{in(normal, x...)}, func(t *Tape, v []*Var) []*Var { return one(t.Sigmoid(v[0])) }},
		opCase{"relu", []input{in(signed, x...)}, func(t *Tape, v []*Var) []*Var { return one(t.Relu(v[0])) }},
		opCase{"square", []input{in(signed, x...)}, func(t *Tape, v []*Var) []*Var { return one(t.Square(v[0])) }},
	)
	for _, axes := range []tensor.ReduceAxes{tensor.AxisAll, tensor.AxisExample, tensor.AxisChannel} {
		cs = append(cs,
			opCase{fmt.Sprintf("sum/axes%d", axes), []input{in(signed, x...)}, func(t *Tape, v []*Var) []*Var { return one(t.Sum(v[0], axes)) }},
			opCase{fmt.Sprintf("mean/axes%d", axes), []input{in(signed, x...)}, func(t *Tape, v []*Var) []*Var { return one(t.Mean(v[0], axes)) }},
		)
	}
	cs = append(cs,
		opCase{"reshape", []input{in(signed, x...)}, func(t *Tape, v []*Var) []*Var {
			// Reshape then a non-linear op, so the gradient really travels through the view.
			return one(t.Square(t.Reshape(v[0], 6, -1)))
		}},
		opCase{"slice", []input{in(signed, x...)}, func(t *Tape, v []*Var) []*Var { return one(t.SliceChannels(v[0], 1, 3)) }},
		opCase{"split", []input{in(signed, x...)}, func(t *Tape, v []*Var) []*Var { return t.SplitChannels(v[0], 1, 2, 1) }},
		opCase{"split/unused-part", []input{in(signed, x...)}, func(t *Tape, v []*Var) []*Var {
			p := t.SplitChannels(v[0], 3, 1)
			p[1].Release()
			return p[:1]
		}},
		opCase{"concat", []input{in(signed, 2, 3, 3, 1), in(signed, 2, 3, 3, 3)}, func(t *Tape, v []*Var) []*Var {
			return one(t.ConcatChannels(v[0], v[1], v[0]))
		}},
		opCase{"squeeze2", []input{in(signed, 2, 4, 6, 3)}, func(t *Tape, v []*Var) []*Var { return one(t.Squeeze2(v[0])) }},
		opCase{"unsqueeze2", []input{in(signed, 2, 2, 3, 8)}, func(t *Tape, v []*Var) []*Var { return one(t.Unsqueeze2(v[0])) }},
	)
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			as, bs := []int{5, 4}, []int{4, 3}
			if ta {
				as = []int{4, 5}
			}
			if tb {
				bs = []int{3, 4}
			}
			cs = append(cs, opCase{fmt.Sprintf("matmul/tA=%v,tB=%v", ta, tb), []input{in(signed, as...), in(signed, bs...)},
				func(t *Tape, v []*Var) []*Var { return one(t.MatMul(v[0], v[1], ta, tb)) }})
			cs = append(cs, opCase{fmt.Sprintf("matmul3d/tA=%v,tB=%v", ta, tb), []input{in(signed, append([]int{2}, as...)...), in(signed, append([]int{2}, bs...)...)},
				func(t *Tape, v []*Var) []*Var { return one(t.MatMul(v[0], v[1], ta, tb)) }})
		}
	}
	cs = append(cs,
		opCase{"conv2d/k3-edgebias-bias", []input{in(signed, 2, 4, 5, 3), in(signed, 3, 3, 4, 5), in(signed, 5)},
			func(t *Tape, v []*Var) []*Var {
				return one(t.Conv2D(v[0], v[1], v[2], tensor.ConvParams{K: 3, EdgeBias: true}))
			}},
		opCase{"conv2d/k3", []input{in(signed, 2, 4, 4, 3), in(signed, 3, 3, 3, 2)},
			func(t *Tape, v []*Var) []*Var { return one(t.Conv2D(v[0], v[1], nil, tensor.ConvParams{K: 3})) }},
		opCase{"conv2d/k1-bias", []input{in(signed, 2, 3, 3, 4), in(signed, 1, 1, 4, 4), in(signed, 4)},
			func(t *Tape, v []*Var) []*Var { return one(t.Conv2D(v[0], v[1], v[2], tensor.ConvParams{K: 1})) }},
		opCase{"actnorm/scale1", []input{in(signed, x...), in(signed, 4), in(signed, 4)},
			func(t *Tape, v []*Var) []*Var { y, ld := t.ActNorm(v[0], v[1], v[2], 1); return []*Var{y, ld} }},
		opCase{"actnorm/scale3", []input{in(signed, x...), in(signed, 4), in(signed, 4)},
			func(t *Tape, v []*Var) []*Var { y, ld := t.ActNorm(v[0], v[1], v[2], 3); return []*Var{y, ld} }},
		opCase{"actnorm/logdet-only", []input{in(signed, x...), in(signed, 4), in(signed, 4)},
			func(t *Tape, v []*Var) []*Var {
				y, ld := t.ActNorm(v[0], v[1], v[2], 3)
				y.Release()
				return []*Var{ld}
			}},
		opCase{"affine/tanh", []input{in(signed, x...), in(normal, 2, 3, 3, 8), in(signed, 1), in(signed, 1)},
			func(t *Tape, v []*Var) []*Var {
				y, ld := t.Affine(tensor.AffineParams{Mode: tensor.ScaleTanh}, v[0], v[1], v[2], v[3])
				return []*Var{y, ld}
			}},
		opCase{"affine/tanh-perchannel", []input{in(signed, x...), in(normal, 1, 1, 1, 8), in(signed, 1), in(signed, 1)},
			func(t *Tape, v []*Var) []*Var {
				y, ld := t.Affine(tensor.AffineParams{Mode: tensor.ScaleTanh, PerChannel: true}, v[0], v[1], v[2], v[3])
				return []*Var{y, ld}
			}},
		opCase{"affine/sigmoid", []input{in(signed, x...), in(normal, 2, 3, 3, 8)},
			func(t *Tape, v []*Var) []*Var {
				y, ld := t.Affine(tensor.AffineParams{Mode: tensor.ScaleSigmoid}, v[0], v[1], nil, nil)
				return []*Var{y, ld}
			}},
	)
	for _, inter := range []bool{false, true} {
		for _, bounded := range []bool{false, true} {
			for _, bb := range []bool{false, true} {
				g := tensor.GaussianParams{Interleaved: inter, Bounded: bounded, BatchBroadcast: bb}
				pn := 2
				if bb {
					pn = 1
				}
				ins := []input{in(normal, 2, 3, 2, 3), in(signed, pn, 3, 2, 6)}
				if bounded {
					ins = append(ins, in(signed, 1), in(signed, 1))
				}
				cs = append(cs, opCase{fmt.Sprintf("gaussian/interleaved=%v,bounded=%v,batchbroadcast=%v", inter, bounded, bb), ins,
					func(t *Tape, v []*Var) []*Var {
						var a, b *Var
						if bounded {
							a, b = v[2], v[3]
						}
						return one(t.GaussianLogProb(g, v[0], v[1], a, b))
					}})
			}
		}
	}
	return cs
}

// TestGradCheckOps checks every op's backward against fourth-order central differences in float64
// on fresh random inputs: the relative error must be at most 1e-6.
func TestGradCheckOps(t *testing.T) {
	r, seed := newRand(t)
	be := backend()
	for _, c := range opCases() {
		t.Run(c.name, func(t *testing.T) { runGradCheck(t, be, r, seed, c) })
	}
}

const gradTol = 1e-6

func runGradCheck(t *testing.T, be tensor.Backend, r *rand.Rand, seed uint64, c opCase) {
	t.Helper()
	ins := make([]*tensor.Tensor, len(c.inputs))
	for i, d := range c.inputs {
		ins[i] = randTensor(be, tensor.Float64, r, d.g, d.shape...)
	}
	res, err := GradCheck(c.f, ins, GradCheckOptions{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range res {
		if z := zeroGrads[c.name]; z != nil && z[i] {
			if e.Scale != 0 {
				t.Errorf("input %d: gradient should be zero, has scale %.3g", i, e.Scale)
			}
			continue
		}
		if e.Scale == 0 {
			t.Errorf("input %d: gradient is identically zero; the check is vacuous", i)
		}
		if !(e.RelErr <= gradTol) {
			t.Errorf("input %d %v: relative error %.3g > %g (gradient scale %.3g)", i, c.inputs[i].shape, e.RelErr, gradTol, e.Scale)
		}
	}
	worst := 0.0
	for _, e := range res {
		worst = max(worst, e.RelErr)
	}
	t.Logf("max relative error %.2e over %d inputs", worst, len(res))
	for _, x := range ins {
		x.Release()
	}
	if err := be.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestOpsFloat32MatchesFloat64 runs every op's backward in float32 and compares the gradients with
// the float64 ones, which the gradient check validated: this covers the dtype-generic paths.
func TestOpsFloat32MatchesFloat64(t *testing.T) {
	r, seed := newRand(t)
	be := backend()
	for _, c := range opCases() {
		t.Run(c.name, func(t *testing.T) {
			vals := make([][]float64, len(c.inputs))
			for i, d := range c.inputs {
				vals[i] = make([]float64, tensor.Shape(d.shape).Numel())
				for j := range vals[i] {
					vals[i][j] = d.g(r)
				}
			}
			grads := func(dt tensor.DType) [][]float64 {
				vs := make([]*Var, len(vals))
				for i, v := range vals {
					x := tensor.New(be, dt, c.inputs[i].shape...)
					x.Upload(v)
					vs[i] = NewParam(x)
				}
				tp := NewTape()
				outs := c.f(tp, vs)
				rr := rand.New(rand.NewPCG(seed, 1))
				var seeds []*tensor.Tensor
				for _, o := range outs {
					w := make([]float64, o.Value.Numel())
					for j := range w {
						w[j] = rr.NormFloat64()
					}
					s := tensor.New(be, dt, o.Value.Shape()...)
					s.Upload(w)
					seeds = append(seeds, s)
				}
				if err := tp.BackwardFrom(outs, seeds); err != nil {
					t.Fatal(err)
				}
				out := make([][]float64, len(vs))
				for i, v := range vs {
					out[i] = v.Grad.Float64s()
				}
				return out
			}
			g32, g64 := grads(tensor.Float32), grads(tensor.Float64)
			for i := range g64 {
				var diff, scale float64
				for j := range g64[i] {
					diff = max(diff, math.Abs(g32[i][j]-g64[i][j]))
					scale = max(scale, math.Abs(g64[i][j]))
				}
				if diff > 1e-4*scale {
					t.Errorf("input %d: float32 gradient differs from float64 by %.3g (scale %.3g)", i, diff, scale)
				}
			}
		})
	}
}
