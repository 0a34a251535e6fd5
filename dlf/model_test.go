package dlf

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"dlf/autodiff"
	"dlf/tensor"
)

// modelCase is one whole-model configuration of the acceptance checks.
type modelCase struct {
	name  string
	edit  func(c *Config)
	shape []int // one example's H, W, C
}

func modelCases() []modelCase {
	return []modelCase{
		{"K=2/decomp=0", func(c *Config) {}, []int{8, 8, 2}},
		{"K=2/decomp=1", func(c *Config) { c.Decomposition = 1 }, []int{8, 8, 2}},
		{"K=4/decomp=0", func(c *Config) { c.Parts = 4 }, []int{4, 4, 4}},
		{"K=4/decomp=1/lu/bias", func(c *Config) {
			c.Parts, c.Decomposition, c.InvConv, c.InvConvBias = 4, 1, InvConvLU, true
		}, []int{4, 4, 4}},
		{"affine-coupling", func(c *Config) { c.AffineCoupling = true }, []int{8, 8, 2}},
		{"conditional", func(c *Config) { c.Conditioning = true; c.Parts = 4 }, []int{4, 4, 4}},
		{"K=2/data-init", func(c *Config) { c.Init = InitData }, []int{8, 8, 2}},
		{"glow-affine", func(c *Config) { glowTraining(c); c.Recompute = false }, []int{8, 8, 2}},
		{"glow-additive", func(c *Config) {
			glowTraining(c)
			c.Recompute, c.Coupling = false, CouplingAdditive
		}, []int{4, 4, 4}},
	}
}

// newTestModel builds a tiny 2-level model for case mc in dtype dt at a generic, well-conditioned
// point: the identity initialisation (DLF) with every trainable tensor perturbed by N(0, 0.1²), then,
// for Glow, the data-dependent actnorm initialisation on a random batch (after the perturbation, so
// the actnorms normalise the network they will see, as in training).
//
// The reference initialisation is not used here: its β = −3 contracts every dimension by e^−2.2 to
// e^−3 per step, so a decode amplifies the rounding error of the latents by that factor per step
// (≈ 1e-11 relative in float64 and 1e-4 in float32 after four steps), which would test the
// conditioning of the init rather than the code. The layer tests use it (one step stays within
// 1e-12), and so does the PyTorch comparison.
func newTestModel(t *testing.T, mc modelCase, dt tensor.DType) *Model {
	t.Helper()
	cfg := smallConfig(2, 0)
	cfg.ImageH, cfg.ImageW, cfg.ImageC = mc.shape[0], mc.shape[1], mc.shape[2]
	cfg.L2Factor = 0.1
	cfg.Init = InitIdentity
	cfg.Width = 8 // with 4 hidden units a whole ReLU layer is dead too often (see activateHyperNets)
	mc.edit(&cfg)
	m, err := New(cfg, testBackend(), dt)
	if err != nil {
		t.Fatal(err)
	}
	r := testRand(t, 21)
	perturb(r, m.Params(), 0.1)
	activateHyperNets(r, m.Params())
	if m.NeedsDataInit() {
		x := randTensor(m.be, dt, r, 0.3, append([]int{4}, mc.shape...)...)
		cond := testCond(t, m, 4)
		if err := m.DataInit(x, cond); err != nil {
			t.Fatal(err)
		}
		x.Release()
		if m.NeedsDataInit() {
			t.Fatal("DataInit left actnorms uninitialised")
		}
	}
	return m
}

// activateHyperNets moves the hyper-networks' hidden layers to a point where their ReLUs see
// zero-mean pre-activations of order one: hidden conv weights N(0, 0.3²), actnorm biases N(0, 0.1²)
// and log-scales N(0, 0.1²). At DLF's init the hidden actnorms scale the convs by e^−3 and their
// Glorot biases decide the sign, so with the tests' width of 4 a whole hidden layer is often dead and
// the gradients of everything before it are exactly zero, which would make the gradient check
// vacuous for those tensors.
func activateHyperNets(r *rand.Rand, params []*Param) {
	for _, p := range params {
		var std float64
		switch {
		case strings.HasSuffix(p.Name, "conv1.weight") || strings.HasSuffix(p.Name, "conv2.weight"):
			std = 0.3
		case strings.Contains(p.Name, ".actnorm1.") || strings.Contains(p.Name, ".actnorm2."):
			if !p.Trainable {
				continue
			}
			std = 0.1
		default:
			continue
		}
		v := p.Var.Value.Float64s()
		for i := range v {
			v[i] = std * r.NormFloat64()
		}
		p.Var.Value.Upload(v)
	}
}

// testCond returns a one-hot condition for n examples, or nil for an unconditional model.
func testCond(t *testing.T, m *Model, n int) *tensor.Tensor {
	if !m.cfg.Conditioning {
		return nil
	}
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = int32((3*i + 1) % m.cfg.NumClasses)
	}
	c, err := m.OneHot(labels)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// flatten concatenates the latents of example 0.
func flattenLatents(zs []*tensor.Tensor) []float64 {
	var out []float64
	for _, z := range zs {
		v := z.Float64s()
		out = append(out, v[:len(v)/z.Dim(0)]...)
	}
	return out
}

// TestModelInverseAndLogDet checks, for every model case in float64: Decode(Encode(x)) = x and
// DecodeEps(Eps) = x to 1e-12; the encoding's log-determinant equals log|det| of the brute-force
// Jacobian of x ↦ (all latents) to 1e-8; Forward's objective equals −D·ln(n_bins) + LogDet + LogPrior.
func TestModelInverseAndLogDet(t *testing.T) {
	for _, mc := range modelCases() {
		t.Run(mc.name, func(t *testing.T) {
			m := newTestModel(t, mc, tensor.Float64)
			r := testRand(t, 22)
			x := randTensor(m.be, tensor.Float64, r, 0.3, append([]int{2}, mc.shape...)...)
			cond := testCond(t, m, 2)
			en, err := m.Encode(x, cond)
			if err != nil {
				t.Fatal(err)
			}
			xr, err := m.Decode(en.Z, cond)
			if err != nil {
				t.Fatal(err)
			}
			if d, s := maxAbsDiff(xr.Float64s(), x.Float64s()); d > 1e-12*max(1, s) {
				t.Errorf("Decode(Encode(x)) differs from x by %.3g", d)
			}
			xe, err := m.DecodeEps(en.Eps, cond)
			if err != nil {
				t.Fatal(err)
			}
			if d, s := maxAbsDiff(xe.Float64s(), x.Float64s()); d > 1e-12*max(1, s) {
				t.Errorf("DecodeEps(Encode(x).Eps) differs from x by %.3g", d)
			}
			res, err := m.Forward(autodiff.NoGrad(), x, cond)
			if err != nil {
				t.Fatal(err)
			}
			obj, ld, lp := res.Objective.Value.Float64s(), en.LogDet.Float64s(), en.LogPrior.Float64s()
			c := -float64(m.cfg.Dims()) * math.Log(256)
			for i := range obj {
				if math.Abs(obj[i]-(c+ld[i]+lp[i])) > 1e-9*math.Abs(obj[i]) {
					t.Errorf("example %d: objective %.12g, −D·ln 256 + logdet + logprior = %.12g", i, obj[i], c+ld[i]+lp[i])
				}
			}
			res.Release()

			one := append([]int{1}, mc.shape...)
			cond1 := testCond(t, m, 1)
			f := func(v []float64) []float64 {
				xt := tensor.New(m.be, tensor.Float64, one...)
				xt.Upload(v)
				e, err := m.Encode(xt, cond1)
				if err != nil {
					t.Fatal(err)
				}
				out := flattenLatents(e.Z)
				e.Release()
				xt.Release()
				return out
			}
			x0 := x.Float64s()[:tensor.Shape(one).Numel()]
			lad := logAbsDet(t, jacobian(t, f, x0))
			if math.Abs(lad-ld[0]) > 1e-8*max(1, math.Abs(lad)) {
				t.Errorf("logdet %.12g, brute-force log|det J| %.12g (diff %.3g)", ld[0], lad, ld[0]-lad)
			}
			t.Logf("D=%d: logdet %.10g, brute force %.10g, diff %.2g; objective %.6g nats", len(x0), ld[0], lad, ld[0]-lad, obj[0])
			en.Release()
		})
	}
}

// TestModelFloat32Inverse checks Decode(Encode(x)) = x to 1e-5 in float32.
func TestModelFloat32Inverse(t *testing.T) {
	for _, mc := range modelCases() {
		t.Run(mc.name, func(t *testing.T) {
			m := newTestModel(t, mc, tensor.Float32)
			x := randTensor(m.be, tensor.Float32, testRand(t, 23), 0.3, append([]int{3}, mc.shape...)...)
			cond := testCond(t, m, 3)
			en, err := m.Encode(x, cond)
			if err != nil {
				t.Fatal(err)
			}
			xr, err := m.Decode(en.Z, cond)
			if err != nil {
				t.Fatal(err)
			}
			d, s := maxAbsDiff(xr.Float64s(), x.Float64s())
			if d > 1e-5*max(1, s) {
				t.Errorf("float32 Decode(Encode(x)) differs from x by %.3g", d)
			}
			t.Logf("max |x − Decode(Encode(x))| = %.2g", d)
		})
	}
}

// TestModelGradients gradchecks the whole model's loss and per-example objective (with the L2 term
// on) with respect to the input and three random elements of every trainable tensor.
func TestModelGradients(t *testing.T) {
	for _, mc := range modelCases() {
		t.Run(mc.name, func(t *testing.T) {
			m := newTestModel(t, mc, tensor.Float64)
			x := autodiff.NewParam(randTensor(m.be, tensor.Float64, testRand(t, 24), 0.3, append([]int{4}, mc.shape...)...))
			var condVar *autodiff.Var
			if cond := testCond(t, m, 4); cond != nil {
				condVar = autodiff.NewVar(cond)
			}
			inputs := []*autodiff.Var{x}
			names := []string{"x"}
			for _, p := range m.Params() {
				if p.Trainable {
					inputs = append(inputs, p.Var)
					names = append(names, p.Name)
				}
			}
			gradCheck(t, func(tp *autodiff.Tape) []*autodiff.Var {
				res := m.forward(tp, x, condVar)
				return []*autodiff.Var{res.Loss, res.Objective}
			}, inputs, names, 3)
		})
	}
}

// TestRecomputeGradients checks that the recomputing backward gives the same gradients as the
// storing one.
func TestRecomputeGradients(t *testing.T) {
	for _, mc := range modelCases()[:7] {
		t.Run(mc.name, func(t *testing.T) {
			m := newTestModel(t, mc, tensor.Float64)
			x := randTensor(m.be, tensor.Float64, testRand(t, 25), 0.3, append([]int{2}, mc.shape...)...)
			cond := testCond(t, m, 2)
			grads := func(recompute bool) [][]float64 {
				m.cfg.Recompute = recompute
				m.ZeroGrad()
				tp := autodiff.NewTape()
				res, err := m.Forward(tp, x, cond)
				if err != nil {
					t.Fatal(err)
				}
				if err := tp.Backward(res.Loss); err != nil {
					t.Fatal(err)
				}
				res.Release()
				var out [][]float64
				for _, p := range m.Params() {
					if p.Trainable {
						out = append(out, p.Var.Grad.Float64s())
					}
				}
				return out
			}
			a, b := grads(false), grads(true)
			worst := 0.0
			for i := range a {
				d, s := maxAbsDiff(b[i], a[i])
				worst = max(worst, d/max(s, 1e-30))
			}
			if worst > 1e-9 {
				t.Errorf("recompute changes the gradients by %.3g relative", worst)
			}
			t.Logf("worst relative gradient difference with recompute: %.2g", worst)
		})
	}
}

func ExampleModel_NumParams() {
	for _, name := range []string{"mnist", "cifar10", "cifar10-k4", "cifar10-k6", "imagenet64", "celeba256", "glow-cifar10"} {
		cfg, _ := Preset(name)
		fmt.Printf("%-13s %d\n", name, cfg.NumParams())
	}
	// Output:
	// mnist         1828648
	// cifar10       44601306
	// cifar10-k4    45469914
	// cifar10-k6    48773338
	// imagenet64    50188684
	// celeba256     57391920
	// glow-cifar10  44703060
}
