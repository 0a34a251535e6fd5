package backendtest

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"dlf/tensor"
)

// recorder is a tb that records failures instead of failing the test, so the suite can be run
// against deliberately broken backends.
type recorder struct {
	name   string
	failed bool
	parent *recorder
	msgs   *[]string
}

func newRecorder() *recorder { return &recorder{name: "suite", msgs: new([]string)} }

func (r *recorder) Name() string              { return r.name }
func (r *recorder) Logf(string, ...any)       {}
func (r *recorder) Failed() bool              { return r.failed }
func (r *recorder) Errorf(f string, a ...any) { r.fail(fmt.Sprintf(f, a...)) }

func (r *recorder) Fatalf(f string, a ...any) {
	r.fail(fmt.Sprintf(f, a...))
	panic(fatalStop{})
}

func (r *recorder) fail(msg string) {
	for p := r; p != nil; p = p.parent {
		p.failed = true
	}
	*r.msgs = append(*r.msgs, msg)
}

func (r *recorder) Run(name string, f func(tb)) bool {
	c := &recorder{name: r.name + "/" + name, parent: r, msgs: r.msgs}
	func() {
		defer func() {
			if x := recover(); x != nil {
				if _, ok := x.(fatalStop); !ok {
					panic(x)
				}
			}
		}()
		f(c)
	}()
	return !c.failed
}

// mutant is a naive backend with one op broken in a way a real kernel could be.
type mutant struct{ naive }

// The broken ops. Each type overrides one method of naive.

type unwrittenReduce struct{ mutant }

// Reduce forgets the last output element (keeps whatever was there).
func (m *unwrittenReduce) Reduce(op tensor.ReduceOp, axes tensor.ReduceAxes, dst, src *tensor.Tensor) {
	d := data(dst)
	last := d[len(d)-1]
	m.naive.Reduce(op, axes, dst, src)
	d[len(d)-1] = last
}

type squeezeOrder struct{ mutant }

// Squeeze2 uses dx·2 + dy instead of dy·2 + dx.
func (m *squeezeOrder) Squeeze2(dst, src *tensor.Tensor) {
	m.naive.Squeeze2(dst, src)
	d := data(dst)
	for i := 0; i+3 < len(d); i += 4 {
		d[i+1], d[i+2] = d[i+2], d[i+1]
	}
}

type convNoEdge struct{ mutant }

// Conv2D ignores the edge channel.
func (m *convNoEdge) Conv2D(p tensor.ConvParams, y, x, w, bias *tensor.Tensor) {
	m.naive.Conv2D(tensor.ConvParams{K: p.K}, y, x, w, bias)
}

type convEdgeRowUnwritten struct{ mutant }

// Conv2DBackwardWeights leaves the edge channel's weight gradient unwritten.
func (m *convEdgeRowUnwritten) Conv2DBackwardWeights(p tensor.ConvParams, dw, x, dy *tensor.Tensor) {
	d := data(dw)
	keep := append([]float64(nil), d...)
	m.naive.Conv2DBackwardWeights(p, dw, x, dy)
	if p.EdgeBias {
		k, cw, cout := p.K, dw.Shape()[2], dw.Shape()[3]
		for q := 0; q < k*k; q++ {
			for co := 0; co < cout; co++ {
				o := (q*cw+cw-1)*cout + co
				d[o] = keep[o]
			}
		}
	}
}

type gemmNoBeta struct{ mutant }

// Gemm ignores beta.
func (m *gemmNoBeta) Gemm(prec tensor.Precision, ta, tb bool, alpha float64, a, b *tensor.Tensor, beta float64, c *tensor.Tensor) {
	m.naive.Gemm(prec, ta, tb, alpha, a, b, 0, c)
}

// gemmTF32Truncates feeds unrounded operands to a TF32 GEMM, which a tensor core then truncates
// (what a kernel that forgets cvt.rna computes).
type gemmTF32Truncates struct{ mutant }

func (m *gemmTF32Truncates) Gemm(prec tensor.Precision, ta, tb bool, alpha float64, a, b *tensor.Tensor, beta float64, c *tensor.Tensor) {
	if prec != tensor.TF32 {
		m.naive.Gemm(prec, ta, tb, alpha, a, b, beta, c)
		return
	}
	trunc := func(t *tensor.Tensor) *tensor.Tensor {
		d := data(t)
		out := make([]float32, len(d))
		for i, v := range d {
			out[i] = math.Float32frombits(math.Float32bits(float32(v)) &^ 0x1fff)
		}
		return tensor.FromFloat32(m, out, t.Shape()...)
	}
	m.naive.Gemm(tensor.FP32, ta, tb, alpha, trunc(a), trunc(b), beta, c)
}

// convTF32Unrounded runs a TF32 convolution on unrounded operands (plain FP32).
type convTF32Unrounded struct{ mutant }

func (m *convTF32Unrounded) Conv2DBackwardData(p tensor.ConvParams, dx, dy, w *tensor.Tensor) {
	p.Precision = tensor.FP32
	m.naive.Conv2DBackwardData(p, dx, dy, w)
}

type randLow32 struct{ mutant }

// RandUniform drops the counter's high word.
func (m *randLow32) RandUniform(dst *tensor.Tensor, seed, offset uint64) {
	d := data(dst)
	for j := 0; 4*j < len(d); j++ {
		c := uint32(offset + uint64(j))
		blk := tensor.Philox4x32([4]uint32{c}, [2]uint32{uint32(seed), uint32(seed >> 32)})
		for k := 0; k < 4 && 4*j+k < len(d); k++ {
			set(dst, 4*j+k, tensor.PhiloxUniform(blk[k]))
		}
	}
}

type normal32 struct{ mutant }

// RandNormal computes Box–Muller in float32.
func (m *normal32) RandNormal(dst *tensor.Tensor, seed, offset uint64) {
	d := data(dst)
	for j := 0; 4*j < len(d); j++ {
		b := tensor.PhiloxBlock(seed, offset, uint64(j))
		for p := 0; p < 2; p++ {
			u1 := float32((float64(b[2*p]) + 1) / (1 << 32))
			u2 := float32(float64(b[2*p+1]) / (1 << 32))
			r := float32(math.Sqrt(float64(-2 * float32(math.Log(float64(u1))))))
			a := float32(2*math.Pi) * u2
			vals := [2]float32{r * float32(math.Cos(float64(a))), r * float32(math.Sin(float64(a)))}
			for q := 0; q < 2; q++ {
				if i := 4*j + 2*p + q; i < len(d) {
					set(dst, i, float64(vals[q]))
				}
			}
		}
	}
}

type bcastNoDiv struct{ mutant }

// Binary ignores Broadcast.Div (per-example operands read per element).
func (m *bcastNoDiv) Binary(op tensor.BinaryOp, dst, a, b *tensor.Tensor, bc tensor.Broadcast) {
	m.naive.Binary(op, dst, a, b, tensor.Broadcast{Div: 1, Mod: bc.Mod})
}

type affineNoDld struct{ mutant }

// AffineBackward ignores the logdet gradient.
func (m *affineNoDld) AffineBackward(p tensor.AffineParams, dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, dld *tensor.Tensor) {
	m.naive.AffineBackward(p, dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, nil)
}

type gaussOverwrite struct{ mutant }

// GaussianLogProb overwrites lp instead of adding to it.
func (m *gaussOverwrite) GaussianLogProb(g tensor.GaussianParams, lp, eps, z, p, alpha, beta *tensor.Tensor) {
	if lp != nil {
		m.naive.Fill(lp, 0)
	}
	m.naive.GaussianLogProb(g, lp, eps, z, p, alpha, beta)
}

type gaussHalvesAsInterleaved struct{ mutant }

// GaussianSample always reads (μ, r) interleaved.
func (m *gaussHalvesAsInterleaved) GaussianSample(g tensor.GaussianParams, z, eps, p, alpha, beta *tensor.Tensor) {
	g.Interleaved = true
	m.naive.GaussianSample(g, z, eps, p, alpha, beta)
}

type actNormNoHW struct{ mutant }

// ActNormForward adds Σ s·logs to ld without the H·W factor.
func (m *actNormNoHW) ActNormForward(y, ld, x, bias, logs *tensor.Tensor, scale float64) {
	m.naive.ActNormForward(y, nil, x, bias, logs, scale)
	if ld != nil {
		var s float64
		for _, l := range data(logs) {
			s += scale * l
		}
		for k := range data(ld) {
			set(ld, k, data(ld)[k]+s)
		}
	}
}

type actNormGradSign struct{ mutant }

// ActNormBackward subtracts the logdet term instead of adding it.
func (m *actNormGradSign) ActNormBackward(dx, dbias, dlogs, dy, y, logs, dld *tensor.Tensor, scale float64) {
	if dld == nil {
		m.naive.ActNormBackward(dx, dbias, dlogs, dy, y, logs, nil, scale)
		return
	}
	neg := tensor.New(m, dld.DType(), dld.Shape()...)
	for i, v := range data(dld) {
		data(neg)[i] = -v
	}
	m.naive.ActNormBackward(dx, dbias, dlogs, dy, y, logs, neg, scale)
}

type adamOldM struct{ mutant }

// AdamStep uses the old m in the weight update.
func (m *adamOldM) AdamStep(o tensor.OptimParams, w, mm, v, g *tensor.Tensor) {
	old := append([]float64(nil), data(mm)...)
	m.naive.AdamStep(o, w, mm, v, g)
	for i := range old {
		den := data(v)[i] + o.Eps
		if o.Kind == tensor.Adam {
			den = math.Sqrt(data(v)[i]) + o.Eps
		}
		newM := data(mm)[i]
		set(w, i, data(w)[i]+o.LR*newM/den-o.LR*old[i]/den)
	}
}

type sigmoidGradWrong struct{ mutant }

// UnaryGrad's SigmoidGrad uses y·(1 + y).
func (m *sigmoidGradWrong) UnaryGrad(op tensor.UnaryGradOp, dx, saved, dy *tensor.Tensor, p1, p2 float64) {
	if op != tensor.SigmoidGrad {
		m.naive.UnaryGrad(op, dx, saved, dy, p1, p2)
		return
	}
	s, g := data(saved), data(dy)
	for i := range g {
		set(dx, i, g[i]*s[i]*(1+s[i]))
	}
}

type unaryIgnoresP1 struct{ mutant }

// Unary's AddConst adds 1 instead of p1.
func (m *unaryIgnoresP1) Unary(op tensor.UnaryOp, dst, x *tensor.Tensor, p1, p2 float64) {
	if op == tensor.AddConst {
		p1 = 1
	}
	m.naive.Unary(op, dst, x, p1, p2)
}

type copyChannelsStray struct{ mutant }

// CopyChannels writes one channel too many.
func (m *copyChannelsStray) CopyChannels(dst *tensor.Tensor, dstOff int, src *tensor.Tensor, srcOff, c int) {
	_, dc := dst.Shape().Rows()
	_, sc := src.Shape().Rows()
	if dstOff+c < dc && srcOff+c < sc {
		c++
	}
	m.naive.CopyChannels(dst, dstOff, src, srcOff, c)
}

type fillTail struct{ mutant }

// Fill misses the tail when the size is not a multiple of 4.
func (m *fillTail) Fill(dst *tensor.Tensor, v float64) {
	d := data(dst)
	for i := 0; i+4 <= len(d); i++ {
		d[i] = rnd(dst, v)
	}
}

// smallCases skips the cases at the model's hidden widths, which only cost time here.
func smallCases(name string) bool {
	return !strings.Contains(name, "128") && !strings.Contains(name, "512")
}

// TestMutantsFail runs each broken backend through the family that covers its op and requires the
// suite to fail there, with a message naming the op.
func TestMutantsFail(t *testing.T) {
	if testing.Short() {
		t.Skip("mutation tests are long")
	}
	cases := []struct {
		be     tensor.Backend
		family string
		op     string
	}{
		{&unwrittenReduce{}, "reduce", "Reduce"},
		{&squeezeOrder{}, "squeeze", "Squeeze2"},
		{&convNoEdge{}, "conv", "Conv2D"},
		{&convEdgeRowUnwritten{}, "conv", "Conv2DBackwardWeights"},
		{&gemmNoBeta{}, "gemm", "Gemm"},
		{&gemmTF32Truncates{}, "tf32", "Gemm c (tf32)"},
		{&convTF32Unrounded{}, "tf32", "Conv2DBackwardData dx (tf32)"},
		{&randLow32{}, "rng", "RandUniform"},
		{&normal32{}, "rng", "RandNormal"},
		{&bcastNoDiv{}, "binary", "perexample"},
		{&affineNoDld{}, "affine", "AffineBackward"},
		{&gaussOverwrite{}, "gaussian", "GaussianLogProb"},
		{&gaussHalvesAsInterleaved{}, "gaussian", "GaussianSample"},
		{&actNormNoHW{}, "actnorm", "ActNormForward"},
		{&actNormGradSign{}, "actnorm", "ActNormBackward"},
		{&adamOldM{}, "optim", "AdamStep"},
		{&sigmoidGradWrong{}, "unarygrad", "SigmoidGrad"},
		{&unaryIgnoresP1{}, "unary", "AddConst"},
		{&copyChannelsStray{}, "memory", "CopyChannels"},
		{&fillTail{}, "memory", "Fill"},
	}
	for _, c := range cases {
		name := strings.TrimPrefix(fmt.Sprintf("%T", c.be), "*backendtest.")
		t.Run(name, func(t *testing.T) {
			r := newRecorder()
			runFamilies(r, c.be, Options{leafFilter: smallCases}, []string{c.family})
			if !r.failed {
				t.Fatalf("the suite did not notice the broken %s", c.op)
			}
			hit := false
			for _, m := range *r.msgs {
				if strings.Contains(m, c.op) {
					hit = true
					break
				}
			}
			if !hit {
				t.Errorf("no failure message names %s; first: %s", c.op, (*r.msgs)[0])
			}
		})
	}
}
