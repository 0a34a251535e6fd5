package dlf

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"dlf/autodiff"
	"dlf/tensor"
)

// smallConfig is a tiny DLF config for layer tests: width 4 keeps gradchecks cheap.
func smallConfig(k, decomp int) Config {
	c := DefaultConfig()
	c.ImageH, c.ImageW, c.ImageC = 8, 8, 2
	c.Levels, c.Depth, c.Width, c.Parts, c.Decomposition = 2, 2, 4, k, decomp
	c.NumClasses = 3
	return c
}

// stepLayer builds one flow step of cfg on c channels with perturbed parameters.
func stepLayer(t *testing.T, cfg Config, c int) (layer, *registry) {
	reg := newRegistry(testBackend(), tensor.Float64, 11)
	s := newStep(reg, &cfg, 0, 0, c)
	perturb(testRand(t, 1), reg.list, 0.2)
	return layer{
		fwd: s.forward,
		inv: func(e *env, y *tensor.Tensor) (*tensor.Tensor, *tensor.Tensor) {
			x, ld, err := s.inverse(e, y)
			if err != nil {
				t.Fatal(err)
			}
			return x, ld
		},
		u: s.u,
	}, reg
}

func TestInvConv(t *testing.T) {
	for _, tc := range []struct {
		lu, bias bool
	}{{false, false}, {false, true}, {true, false}, {true, true}} {
		t.Run(fmt.Sprintf("lu=%v/bias=%v", tc.lu, tc.bias), func(t *testing.T) {
			reg := newRegistry(testBackend(), tensor.Float64, 3)
			u := reg.unit("s.")
			ic := newInvConv(u, 4, tc.lu, tc.bias)
			perturb(testRand(t, 2), reg.list, 0.1)
			l := layer{
				fwd: func(e *env, pv vars, x *autodiff.Var) (*autodiff.Var, *autodiff.Var) {
					return ic.forward(e.t, pv, x)
				},
				inv: func(e *env, y *tensor.Tensor) (*tensor.Tensor, *tensor.Tensor) {
					x, ld, err := ic.inverse(u.vars, y, true)
					if err != nil {
						t.Fatal(err)
					}
					return x, ld
				},
				u: u,
			}
			e := &env{t: autodiff.NoGrad()}
			checkLayer(t, l, e, testRand(t, 3), 2, 4, 4, 4)
		})
	}
}

func TestDLT(t *testing.T) {
	for _, tc := range []struct {
		k, decomp int
		coupling  bool
		cond      bool
		identity  bool
		shape     []int
	}{
		{2, 0, false, false, false, []int{2, 4, 4, 4}},
		{2, 1, false, false, false, []int{2, 8, 8, 2}},
		{4, 0, false, false, false, []int{2, 4, 4, 4}},
		{4, 1, false, false, false, []int{2, 4, 4, 4}},
		{2, 0, true, false, false, []int{2, 4, 4, 4}},
		{4, 1, false, true, false, []int{2, 4, 4, 4}},
		{2, 0, false, true, true, []int{2, 8, 8, 2}},
	} {
		name := fmt.Sprintf("K=%d/decomp=%d/coupling=%v/cond=%v/identity=%v/%v", tc.k, tc.decomp, tc.coupling, tc.cond, tc.identity, tc.shape)
		t.Run(name, func(t *testing.T) {
			cfg := smallConfig(tc.k, tc.decomp)
			cfg.AffineCoupling = tc.coupling
			cfg.Conditioning = tc.cond
			if tc.identity {
				cfg.Init = InitIdentity
			}
			be := testBackend()
			reg := newRegistry(be, tensor.Float64, 5)
			u := reg.unit("s.")
			c := tc.shape[3]
			d := newDLT(u, &cfg, c)
			perturb(testRand(t, 4), reg.list, 0.2)
			e := &env{t: autodiff.NoGrad()}
			if tc.cond {
				oh := tensor.New(be, tensor.Float64, tc.shape[0], cfg.NumClasses)
				v := make([]float64, tc.shape[0]*cfg.NumClasses)
				for i := 0; i < tc.shape[0]; i++ {
					v[i*cfg.NumClasses+(i+1)%cfg.NumClasses] = 1
				}
				oh.Upload(v)
				e.cond = autodiff.NewVar(oh)
			}
			l := layer{
				fwd: d.forward,
				inv: func(e *env, y *tensor.Tensor) (*tensor.Tensor, *tensor.Tensor) { return d.inverse(e, u.vars, y) },
				u:   u,
			}
			if tc.cond {
				// The Jacobian check feeds one example; give it the first example's condition.
				full := e.cond
				l.fwd = func(e2 *env, pv vars, x *autodiff.Var) (*autodiff.Var, *autodiff.Var) {
					sub := *e2
					if x.Value.Dim(0) != full.Value.Dim(0) {
						sub.cond = constVar(firstRow(full.Value))
					}
					return d.forward(&sub, pv, x)
				}
			}
			checkLayer(t, l, e, testRand(t, 5), tc.shape...)
		})
	}
}

// firstRow returns row 0 of a [N, K] tensor as [1, K].
func firstRow(m *tensor.Tensor) *tensor.Tensor {
	k := m.Dim(1)
	v := m.Float64s()[:k]
	out := tensor.New(m.Backend(), m.DType(), 1, k)
	out.Upload(v)
	return out
}

func TestGlowLayers(t *testing.T) {
	for _, coupling := range []string{CouplingAffine, CouplingAdditive} {
		t.Run(coupling, func(t *testing.T) {
			cfg := smallConfig(2, 0)
			cfg.Flow, cfg.InvConv, cfg.Coupling = FlowGlow, InvConvLU, coupling
			l, _ := stepLayer(t, cfg, 4)
			checkLayer(t, l, &env{t: autodiff.NoGrad()}, testRand(t, 6), 2, 4, 4, 4)
		})
	}
}

func TestDLFStep(t *testing.T) {
	for _, tc := range []struct {
		k, decomp int
		lu        bool
	}{{2, 0, false}, {4, 1, true}} {
		t.Run(fmt.Sprintf("K=%d/decomp=%d/lu=%v", tc.k, tc.decomp, tc.lu), func(t *testing.T) {
			cfg := smallConfig(tc.k, tc.decomp)
			cfg.InvConvBias = true
			if tc.lu {
				cfg.InvConv = InvConvLU
			}
			l, _ := stepLayer(t, cfg, 4)
			checkLayer(t, l, &env{t: autodiff.NoGrad()}, testRand(t, 7), 2, 4, 4, 4)
		})
	}
}

// TestStepsFloat32Inverse checks inverse(forward(x)) = x to 1e-5 in float32 for the flow steps
// (invertible 1x1 conv, DLT of every kind, Glow's actnorm and couplings), at the reference init
// perturbed by N(0, 0.2²).
func TestStepsFloat32Inverse(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *Config)
	}{
		{"dlf/K=2/decomp=0", func(c *Config) {}},
		{"dlf/K=4/decomp=1/lu/bias", func(c *Config) { c.Parts, c.Decomposition, c.InvConv, c.InvConvBias = 4, 1, InvConvLU, true }},
		{"dlf/affine-coupling", func(c *Config) { c.AffineCoupling = true }},
		{"glow/affine", func(c *Config) { c.Flow, c.InvConv = FlowGlow, InvConvLU }},
		{"glow/additive", func(c *Config) { c.Flow, c.InvConv, c.Coupling = FlowGlow, InvConvLU, CouplingAdditive }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := smallConfig(2, 0)
			tc.edit(&cfg)
			reg := newRegistry(testBackend(), tensor.Float32, 13)
			s := newStep(reg, &cfg, 0, 0, 8)
			perturb(testRand(t, 8), reg.list, 0.2)
			e := &env{t: autodiff.NoGrad()}
			x := randTensor(reg.be, tensor.Float32, testRand(t, 9), 1, 2, 4, 4, 8)
			xv := constVar(x)
			y, ld := s.forward(e, s.u.vars, xv)
			xr, ldi, err := s.inverse(e, y.Value)
			if err != nil {
				t.Fatal(err)
			}
			d, sc := maxAbsDiff(xr.Float64s(), x.Float64s())
			if d > 1e-5*max(1, sc) {
				t.Errorf("float32 inverse(forward(x)) differs from x by %.3g (scale %.3g)", d, sc)
			}
			a, b := ld.Value.Float64s(), ldi.Float64s()
			for i := range a {
				if math.Abs(a[i]+b[i]) > 1e-5*max(1, math.Abs(a[i])) {
					t.Errorf("example %d: logdet %g, inverse logdet %g", i, a[i], b[i])
				}
			}
			t.Logf("max |x − inverse(forward(x))| = %.2g", d)
		})
	}
}

// TestInvConvSingular: a singular W (a zero row) gives the forward log-determinant −Inf on every
// example; the inverse refuses it with an error when asked to check (sampling) and returns NaN
// without reading anything back when not (a training step's recomputing backward).
func TestInvConvSingular(t *testing.T) {
	reg := newRegistry(testBackend(), tensor.Float64, 3)
	u := reg.unit("s.")
	ic := newInvConv(u, 4, false, false)
	w := reg.list[0].Var.Value
	v := w.Float64s()
	for j := 0; j < 4; j++ {
		v[4+j] = 0
	}
	w.Upload(v)
	x := tensor.Full(w.Backend(), tensor.Float64, 0.5, 2, 3, 3, 4)
	tp := autodiff.NoGrad()
	_, ld := ic.forward(tp, u.vars, autodiff.NewVar(x))
	for i, g := range ld.Value.Float64s() {
		if !math.IsInf(g, -1) {
			t.Errorf("forward logdet[%d] = %v, want -Inf", i, g)
		}
	}
	if _, _, err := ic.inverse(u.vars, x, true); err == nil || !strings.Contains(err.Error(), "singular") {
		t.Errorf("checked inverse of a singular W: %v", err)
	}
	xi, _, err := ic.inverse(u.vars, x, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range xi.Float64s() {
		if !math.IsNaN(g) {
			t.Fatalf("unchecked inverse of a singular W: x[%d] = %v, want NaN", i, g)
		}
	}
}
