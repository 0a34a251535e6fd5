package optim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"dlf/autodiff"
	"dlf/tensor"
	"dlf/tensor/cpu"
)

func newRand(t testing.TB) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DLF_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (rerun with DLF_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, 11))
}

func randData(r *rand.Rand, n int) []float64 {
	d := make([]float64, n)
	for i := range d {
		d[i] = r.NormFloat64()
	}
	return d
}

// refStep is the reference update (Glow's optimizer as DLF uses it, dlf-spec §3.1) in plain float64
// loops: bias-corrected rate, then per element the Adamax or Adam rule with multiplicative decay.
func refStep(kind tensor.OptimKind, cfg Config, lr float64, t int, w, m, v, g []float64) {
	lrT := lr * math.Sqrt(1-math.Pow(cfg.Beta2, float64(t))) / (1 - math.Pow(cfg.Beta1, float64(t)))
	for i := range w {
		m[i] = cfg.Beta1*m[i] + (1-cfg.Beta1)*g[i]
		var den float64
		if kind == tensor.Adamax {
			v[i] = math.Max(cfg.Beta2*v[i], math.Abs(g[i]))
			den = v[i] + cfg.Eps
		} else {
			v[i] = cfg.Beta2*v[i] + (1-cfg.Beta2)*g[i]*g[i]
			den = math.Sqrt(v[i]) + cfg.Eps
		}
		w[i] = cfg.WeightDecay*w[i] - lrT*m[i]/den
	}
}

// TestOptimizersMatchReference runs several steps of Adamax and Adam (with weight decay) on random
// gradients and compares weights and moments with refStep, in float64 and float32.
func TestOptimizersMatchReference(t *testing.T) {
	r := newRand(t)
	be := cpu.New(cpu.WithPoison(true))
	for _, kind := range []tensor.OptimKind{tensor.Adamax, tensor.Adam} {
		for _, dt := range []tensor.DType{tensor.Float64, tensor.Float32} {
			cfg := DLFConfig()
			cfg.Kind = kind
			cfg.WeightDecay = 0.999
			shapes := [][]int{{3, 3, 2, 4}, {4}, {1}}
			var params []Param
			var w, m, v [][]float64
			for i, s := range shapes {
				d := randData(r, tensor.Shape(s).Numel())
				x := tensor.New(be, dt, s...)
				x.Upload(d)
				d = x.Float64s() // the float32 rounding is the reference's starting point
				params = append(params, Param{Name: "p" + strconv.Itoa(i), Var: autodiff.NewParam(x)})
				w = append(w, d)
				m = append(m, make([]float64, len(d)))
				v = append(v, make([]float64, len(d)))
			}
			opt, err := New(cfg, params)
			if err != nil {
				t.Fatal(err)
			}
			sched := DLFSchedule()
			for step := range 6 {
				for i, p := range params {
					g := randData(r, len(w[i]))
					gt := tensor.New(be, dt, shapes[i]...)
					gt.Upload(g)
					p.Var.Grad = gt
					g = gt.Float64s()
					refStep(kind, cfg, sched.LR(step), step+1, w[i], m[i], v[i], g)
				}
				opt.Step(sched.LR(step))
				opt.ZeroGrad()
			}
			tol := 1e-13
			if dt == tensor.Float32 {
				tol = 1e-5
			}
			_, state := opt.State()
			for i, p := range params {
				for name, pair := range map[string][2][]float64{
					"w": {p.Var.Value.Float64s(), w[i]},
					"m": {state[2*i].Tensor.Float64s(), m[i]},
					"v": {state[2*i+1].Tensor.Float64s(), v[i]},
				} {
					for j := range pair[0] {
						if d := math.Abs(pair[0][j] - pair[1][j]); d > tol*math.Max(1, math.Abs(pair[1][j])) {
							t.Fatalf("%s %v param %d %s[%d] = %v, reference %v", kindName(kind), dt, i, name, j, pair[0][j], pair[1][j])
						}
					}
				}
			}
			if opt.Steps() != 6 {
				t.Fatalf("Steps() = %d", opt.Steps())
			}
		}
	}
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Kind = 9 }, "unknown optimizer"},
		{func(c *Config) { c.Beta1 = 1 }, "betas"},
		{func(c *Config) { c.Beta2 = 0 }, "betas"},
		{func(c *Config) { c.Eps = 0 }, "eps"},
		{func(c *Config) { c.WeightDecay = 0 }, "multiplicative"},
	} {
		cfg := DLFConfig()
		c.mut(&cfg)
		if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want %q", err, c.want)
		}
	}
	be := cpu.New()
	p := autodiff.NewParam(tensor.Zeros(be, tensor.Float64, 1))
	if _, err := New(DLFConfig(), []Param{{"a", p}, {"a", p}}); err == nil {
		t.Error("duplicate names accepted")
	}
}

// TestSchedule checks the reference schedule max(0.05·0.93^(s/1000), 0.005) at known points, the
// step where it meets the floor, and the linear warm-up.
func TestSchedule(t *testing.T) {
	s := DLFSchedule()
	for _, c := range []struct {
		step int
		want float64
	}{
		{0, 0.05}, {1000, 0.05 * 0.93}, {500, 0.05 * math.Sqrt(0.93)}, {10000, 0.05 * 0.4839823071792934}, {40000, 0.005},
	} {
		if got := s.LR(c.step); math.Abs(got-c.want) > 1e-15 {
			t.Errorf("LR(%d) = %v, want %v", c.step, got, c.want)
		}
	}
	// 0.05·0.93^(s/1000) = 0.005 at s = 1000·ln(0.1)/ln(0.93) ≈ 31729 (dlf-spec §3.1: "about 31.7k").
	floorAt := 1000 * math.Log(0.1) / math.Log(0.93)
	if s.LR(int(floorAt)-1) <= 0.005 || s.LR(int(floorAt)+1) != 0.005 {
		t.Errorf("floor not reached at step %.0f: %v, %v", floorAt, s.LR(int(floorAt)-1), s.LR(int(floorAt)+1))
	}
	w := Schedule{Initial: 0.001, Floor: 0.001, WarmupSteps: 4}
	for step, want := range []float64{0.00025, 0.0005, 0.00075, 0.001, 0.001} {
		if got := w.LR(step); math.Abs(got-want) > 1e-18 {
			t.Errorf("warm-up LR(%d) = %v, want %v", step, got, want)
		}
	}
}

func TestClipGradNorm(t *testing.T) {
	r := newRand(t)
	be := cpu.New(cpu.WithPoison(true))
	var vs []*autodiff.Var
	var host [][]float64
	sumsq := 0.0
	for _, n := range []int{7, 300, 1} {
		d := randData(r, n)
		v := autodiff.NewParam(tensor.Zeros(be, tensor.Float32, n))
		v.Grad = tensor.New(be, tensor.Float32, n)
		v.Grad.Upload(d)
		d = v.Grad.Float64s()
		for _, x := range d {
			sumsq += x * x
		}
		vs = append(vs, v, autodiff.NewParam(tensor.Zeros(be, tensor.Float32, 2))) // one without a gradient
		host = append(host, d)
	}
	want := math.Sqrt(sumsq)
	if got := GradNorm(vs); math.Abs(got-want) > 1e-5*want {
		t.Fatalf("GradNorm = %v, want %v", got, want)
	}
	if got := ClipGradNorm(vs, 2*want); math.Abs(got-want) > 1e-5*want || vs[0].Grad.Float64s()[0] != host[0][0] {
		t.Fatalf("clipping within bounds changed the gradients (norm %v)", got)
	}
	ClipGradNorm(vs, want/3)
	if got := GradNorm(vs); math.Abs(got-want/3) > 1e-5*want {
		t.Fatalf("norm after clipping = %v, want %v", got, want/3)
	}
	for i, d := range host {
		for j, x := range vs[2*i].Grad.Float64s() {
			if math.Abs(x-d[j]/3) > 1e-5*math.Abs(d[j]) {
				t.Fatalf("clipped grad %d[%d] = %v, want %v", i, j, x, d[j]/3)
			}
		}
	}
	tensor.Fill(vs[0].Grad, math.NaN())
	before := vs[2].Grad.Float64s()[0]
	if n := ClipGradNorm(vs, 1); !math.IsNaN(n) || vs[2].Grad.Float64s()[0] != before {
		t.Fatalf("NaN norm %v: gradients must be left alone", n)
	}
}

// TestClipOnDevice: the device-side clipping scales every gradient by c/n when the global norm n
// exceeds c (to float32 rounding of the host ClipGradNorm), leaves them bit for bit alone when it
// does not, and an optimizer with ClipNorm clips before its update.
func TestClipOnDevice(t *testing.T) {
	r := newRand(t)
	be := cpu.New(cpu.WithPoison(true))
	mk := func() ([]*autodiff.Var, [][]float64, float64) {
		var vs []*autodiff.Var
		var host [][]float64
		sumsq := 0.0
		for _, n := range []int{7, 300, 1} {
			v := autodiff.NewParam(tensor.Zeros(be, tensor.Float32, n))
			v.Grad = tensor.New(be, tensor.Float32, n)
			v.Grad.Upload(randData(r, n))
			d := v.Grad.Float64s()
			for _, x := range d {
				sumsq += x * x
			}
			vs = append(vs, v, autodiff.NewParam(tensor.Zeros(be, tensor.Float32, 2)))
			host = append(host, d)
		}
		return vs, host, math.Sqrt(sumsq)
	}
	vs, host, norm := mk()
	ClipOnDevice(vs, 2*norm)
	for i, d := range host {
		for j, x := range vs[2*i].Grad.Float64s() {
			if x != d[j] {
				t.Fatalf("within bounds: grad %d[%d] changed from %v to %v", i, j, d[j], x)
			}
		}
	}
	ClipOnDevice(vs, norm/3)
	for i, d := range host {
		for j, x := range vs[2*i].Grad.Float64s() {
			if math.Abs(x-d[j]/3) > 1e-6*math.Abs(d[j]) {
				t.Fatalf("clipped grad %d[%d] = %v, want %v", i, j, x, d[j]/3)
			}
		}
	}
	// Through the optimizer: Adam's first update is lr·sign-like, so compare against an
	// optimizer fed the host-clipped gradients.
	vs, _, norm = mk()
	ws, _, _ := mk()
	for i := range ws {
		tensor.Copy(ws[i].Value, vs[i].Value)
		if vs[i].Grad != nil {
			tensor.Copy(ws[i].Grad, vs[i].Grad)
		}
	}
	params := func(v []*autodiff.Var) []Param {
		var ps []Param
		for i, x := range v {
			ps = append(ps, Param{Name: fmt.Sprint(i), Var: x})
		}
		return ps
	}
	cfg := Config{Kind: tensor.Adam, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1, ClipNorm: norm / 4}
	a, err := New(cfg, params(vs))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ClipNorm = 0
	b, _ := New(cfg, params(ws))
	ClipGradNorm(ws, norm/4)
	a.Step(0.01)
	b.Step(0.01)
	for i := range vs {
		g, w := vs[i].Value.Float64s(), ws[i].Value.Float64s()
		for j := range g {
			if math.Abs(g[j]-w[j]) > 1e-6 {
				t.Fatalf("param %d[%d]: clipped in the optimizer %v, clipped on the host %v", i, j, g[j], w[j])
			}
		}
	}
}

// TestEMAWarmup: with warm-up the t-th update uses min(d, (1+t)/(10+t)) (checked against the host
// recurrence), the count survives State/Restore, and a restored average continues identically.
func TestEMAWarmup(t *testing.T) {
	r := newRand(t)
	be := cpu.New(cpu.WithPoison(true))
	d := randData(r, 5)
	p := autodiff.NewParam(tensor.FromFloat64(be, d, 5))
	params := []Param{{"w", p}}
	e, err := NewEMAWarmup(0.999, params)
	if err != nil {
		t.Fatal(err)
	}
	avg := append([]float64(nil), d...)
	var steps [][]float64
	for step := 1; step <= 30; step++ {
		nd := randData(r, 5)
		steps = append(steps, nd)
		p.Value.Upload(nd)
		e.Update()
		dt := min(0.999, float64(1+step)/float64(10+step))
		if got := e.DecayAt(step); got != dt {
			t.Fatalf("DecayAt(%d) = %v, want %v", step, got, dt)
		}
		for i := range avg {
			avg[i] += (1 - dt) * (nd[i] - avg[i])
		}
	}
	meta, st := e.State()
	got := st[0].Tensor.Float64s()
	for i := range avg {
		if math.Abs(got[i]-avg[i]) > 1e-13 {
			t.Fatalf("average[%d] = %v, want %v", i, got[i], avg[i])
		}
	}
	// Restore into a fresh average and continue both with the same weights.
	e2, _ := NewEMAWarmup(0.999, params)
	if err := e2.Restore(meta, func(name string, dst *tensor.Tensor) error { tensor.Copy(dst, st[0].Tensor); return nil }); err != nil {
		t.Fatal(err)
	}
	if e2.Updates() != 30 {
		t.Fatalf("restored count %d, want 30", e2.Updates())
	}
	p.Value.Upload(steps[3])
	e.Update()
	e2.Update()
	_, a := e.State()
	_, b := e2.State()
	if !slices.Equal(a[0].Tensor.Float64s(), b[0].Tensor.Float64s()) {
		t.Fatal("a restored average continues differently")
	}
	if err := e2.Restore(`{"decay":0.999,"updates":-1}`, nil); err == nil {
		t.Fatal("a negative update count was accepted")
	}
}

func TestEMA(t *testing.T) {
	r := newRand(t)
	be := cpu.New(cpu.WithPoison(true))
	d := randData(r, 5)
	p := autodiff.NewParam(tensor.FromFloat64(be, d, 5))
	params := []Param{{"w", p}}
	e, err := NewEMA(0.9, params)
	if err != nil {
		t.Fatal(err)
	}
	avg := append([]float64(nil), d...)
	for range 3 {
		nd := randData(r, 5)
		p.Value.Upload(nd)
		e.Update()
		for i := range avg {
			avg[i] = 0.9*avg[i] + 0.1*nd[i]
		}
	}
	raw := p.Value.Float64s()
	e.Swap()
	for i, x := range p.Value.Float64s() {
		if math.Abs(x-avg[i]) > 1e-15 {
			t.Fatalf("swapped-in average[%d] = %v, want %v", i, x, avg[i])
		}
	}
	_, st := e.State()
	if got := st[0].Tensor.Float64s()[0]; got != p.Value.Float64s()[0] {
		t.Fatal("State while swapped does not return the averages")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Update while swapped did not panic")
			}
		}()
		e.Update()
	}()
	e.Swap()
	for i, x := range p.Value.Float64s() {
		if x != raw[i] {
			t.Fatal("second Swap did not restore the trained weights")
		}
	}
	if _, err := NewEMA(1, params); err == nil {
		t.Error("decay 1 accepted")
	}
}

// TestCheckpointRoundTrip saves parameters, optimizer and EMA state, loads them into freshly
// initialised objects and checks every tensor and the step come back exactly; and that mismatches
// are reported.
func TestCheckpointRoundTrip(t *testing.T) {
	r := newRand(t)
	be := cpu.New(cpu.WithPoison(true))
	mk := func() ([]Param, *Optimizer, *EMA) {
		ps := []Param{
			{"level0.step0.actnorm.logs", autodiff.NewParam(tensor.FromFloat32(be, f32(randData(r, 4)), 4))},
			{"level0.step0.conv.weight", autodiff.NewParam(tensor.FromFloat32(be, f32(randData(r, 24)), 1, 1, 4, 6))},
		}
		opt, err := New(DLFConfig(), ps)
		if err != nil {
			t.Fatal(err)
		}
		ema, err := NewEMA(0.999, ps)
		if err != nil {
			t.Fatal(err)
		}
		return ps, opt, ema
	}
	ps, opt, ema := mk()
	for range 3 {
		for _, p := range ps {
			p.Var.Grad = tensor.FromFloat32(be, f32(randData(r, p.Var.Value.Numel())), p.Var.Value.Shape()...)
		}
		opt.Step(0.01)
		opt.ZeroGrad()
		ema.Update()
	}
	path := filepath.Join(t.TempDir(), "ck.safetensors")
	if err := SaveCheckpoint(path, ps, opt, ema, map[string]string{"step": "3"}); err != nil {
		t.Fatal(err)
	}
	ps2, opt2, ema2 := mk()
	meta, err := LoadCheckpoint(path, ps2, opt2, ema2)
	if err != nil {
		t.Fatal(err)
	}
	if meta["step"] != "3" || opt2.Steps() != 3 {
		t.Fatalf("meta %v, steps %d", meta, opt2.Steps())
	}
	_, s1 := opt.State()
	_, s2 := opt2.State()
	_, e1 := ema.State()
	_, e2 := ema2.State()
	pairs := [][2]*tensor.Tensor{}
	for i := range ps {
		pairs = append(pairs, [2]*tensor.Tensor{ps[i].Var.Value, ps2[i].Var.Value}, [2]*tensor.Tensor{e1[i].Tensor, e2[i].Tensor})
	}
	for i := range s1 {
		pairs = append(pairs, [2]*tensor.Tensor{s1[i].Tensor, s2[i].Tensor})
	}
	for _, pr := range pairs {
		a, b := pr[0].Float32s(), pr[1].Float32s()
		for j := range a {
			if math.Float32bits(a[j]) != math.Float32bits(b[j]) {
				t.Fatalf("restored state differs at %d: %v vs %v", j, a[j], b[j])
			}
		}
	}
	// Loading parameters only (sampling) ignores the optimizer and EMA state.
	ps3, _, _ := mk()
	if _, err := LoadCheckpoint(path, ps3, nil, nil); err != nil {
		t.Fatalf("parameters-only load: %v", err)
	}
	// A model with a different shape, or missing a parameter, is refused with the tensor's name.
	bad := []Param{{"level0.step0.actnorm.logs", autodiff.NewParam(tensor.Zeros(be, tensor.Float32, 5))}}
	if _, err := LoadCheckpoint(path, bad, nil, nil); err == nil || !strings.Contains(err.Error(), "actnorm.logs") || !strings.Contains(err.Error(), "shape") {
		t.Errorf("shape mismatch: %v", err)
	}
	if _, err := LoadCheckpoint(path, ps3[:1], nil, nil); err == nil || !strings.Contains(err.Error(), "conv.weight") {
		t.Errorf("extra tensor: %v", err)
	}
	adam := DLFConfig()
	adam.Kind = tensor.Adam
	opt4, _ := New(adam, ps3)
	if _, err := LoadCheckpoint(path, ps3, opt4, nil); err == nil || !strings.Contains(err.Error(), "adamax") {
		t.Errorf("optimizer kind mismatch: %v", err)
	}
}

func f32(d []float64) []float32 {
	out := make([]float32, len(d))
	for i, x := range d {
		out[i] = float32(x)
	}
	return out
}
