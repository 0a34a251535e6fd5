package backendtest

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"testing"

	"dlf/tensor"
)

// Run runs the whole conformance suite on be with DefaultTolerances, for every dtype be supports.
func Run(t *testing.T, be tensor.Backend) { RunWith(t, be, Options{}) }

// RunWith runs the whole conformance suite on be with opts.
func RunWith(t *testing.T, be tensor.Backend, opts Options) {
	runFamilies(testingT{t}, be, opts, nil)
}

// family is one group of ops that share cases; each creates its own op/dtype/case subtests.
type family struct {
	name string
	run  func(s *suite, t tb)
}

// families lists every group; together they call every method of tensor.Backend.
var families = []family{
	{"memory", runMemory},
	{"squeeze", runSqueeze},
	{"binary", runBinary},
	{"unary", runUnary},
	{"unarygrad", runUnaryGrad},
	{"axpy", runAxpy},
	{"reduce", runReduce},
	{"gemm", runGemm},
	{"linalg", runLinalg},
	{"conv", runConv},
	{"tf32", runTF32},
	{"rng", runRNG},
	{"actnorm", runActNorm},
	{"affine", runAffine},
	{"gaussian", runGaussian},
	{"optim", runOptim},
}

// runFamilies runs the named families (all when names is empty).
func runFamilies(t tb, be tensor.Backend, opts Options, names []string) {
	s := &suite{be: be, opts: opts, seed: baseSeed(opts)}
	for _, dt := range []tensor.DType{tensor.Float32, tensor.Float64} {
		if be.Supports(dt) && (opts.DTypes == nil || slices.Contains(opts.DTypes, dt)) {
			s.dts = append(s.dts, dt)
		}
	}
	for _, dt := range opts.DTypes {
		if !be.Supports(dt) {
			t.Errorf("backend %s does not support %v, which Options.DTypes asks for", be.Name(), dt)
		}
	}
	if be.Name() == "" {
		t.Errorf("backend Name() is empty; it should identify the backend and device")
	}
	if !be.Supports(tensor.Float32) {
		t.Errorf("backend %s does not support float32; every backend must (tensor.Backend)", be.Name())
	}
	t.Logf("backendtest: backend %s, dtypes %v, base seed %d", be.Name(), s.dts, s.seed)
	for _, f := range families {
		if len(names) > 0 && !slices.Contains(names, f.name) {
			continue
		}
		f.run(s, t)
	}
	if err := be.Sync(); err != nil {
		t.Errorf("backend %s: Sync after the suite: %v", be.Name(), err)
	}
}

// seedEnv names the environment variable that fixes the base seed.
const seedEnv = "BACKENDTEST_SEED"

func baseSeed(opts Options) uint64 {
	if opts.Seed != 0 {
		return opts.Seed
	}
	if v := os.Getenv(seedEnv); v != "" {
		if s, err := strconv.ParseUint(v, 0, 64); err == nil {
			return s
		}
	}
	return rand.Uint64()
}

// tb is the part of *testing.T the suite uses. It is an interface so that this package's own tests
// can run the suite against deliberately broken backends and observe the failures.
type tb interface {
	Name() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
	Run(name string, f func(tb)) bool
}

// testingT adapts *testing.T.
type testingT struct{ t *testing.T }

func (w testingT) Name() string { return w.t.Name() }
func (w testingT) Failed() bool { return w.t.Failed() }

func (w testingT) Logf(format string, args ...any) {
	w.t.Helper()
	w.t.Logf(format, args...)
}

func (w testingT) Errorf(format string, args ...any) {
	w.t.Helper()
	w.t.Errorf(format, args...)
}

func (w testingT) Fatalf(format string, args ...any) {
	w.t.Helper()
	w.t.Fatalf(format, args...)
}

func (w testingT) Run(name string, f func(tb)) bool {
	return w.t.Run(name, func(t *testing.T) { f(testingT{t}) })
}

// fatalStop is what a non-testing tb panics with on Fatalf; leaves treat it as a recorded stop.
type fatalStop struct{}

// suite holds what every subtest shares.
type suite struct {
	be   tensor.Backend
	opts Options
	seed uint64
	dts  []tensor.DType
}

// op runs body under op/<dtype> for every supported dtype.
func (s *suite) op(t tb, name string, body func(t tb, dt tensor.DType)) {
	t.Run(name, func(t tb) {
		for _, dt := range s.dts {
			t.Run(dt.String(), func(t tb) { body(t, dt) })
		}
	})
}

// leaf runs one case with a fresh environment: its own seeded generator, tensors released at the
// end, the backend's error state checked, and a backend panic reported as a failure of this case
// only.
func (s *suite) leaf(t tb, dt tensor.DType, name string, f func(e *env)) {
	if s.opts.leafFilter != nil && !s.opts.leafFilter(name) {
		return
	}
	t.Run(name, func(t tb) {
		h := fnv.New64a()
		h.Write([]byte(t.Name()))
		ls := s.seed ^ h.Sum64()
		e := &env{
			t: t, s: s, be: s.be, dt: dt, tol: s.opts.tolerances(dt),
			rng: rand.New(rand.NewPCG(ls, 0x9e3779b97f4a7c15)),
		}
		defer func() {
			r := recover()
			for _, x := range e.owned {
				x.Release()
			}
			if r != nil {
				if _, ok := r.(fatalStop); ok {
					return
				}
				t.Errorf("%s: panic: %v%s\n%s", e.where(), r, e.seedHint(), debug.Stack())
				return
			}
			if err := s.be.Sync(); err != nil {
				t.Errorf("%s: backend error: %v%s", e.where(), err, e.seedHint())
			}
		}()
		f(e)
	})
}

// env is one leaf's state: the generator, the tensors to release and the case description that
// failure messages print.
type env struct {
	t      tb
	s      *suite
	be     tensor.Backend
	dt     tensor.DType
	tol    Tolerances
	rng    *rand.Rand
	params string
	owned  []*tensor.Tensor
}

// where describes the case for messages: test path, dtype, parameters.
func (e *env) where() string {
	if e.params == "" {
		return fmt.Sprintf("%s [%v on %s]", e.t.Name(), e.dt, e.be.Name())
	}
	return fmt.Sprintf("%s [%v on %s; %s]", e.t.Name(), e.dt, e.be.Name(), e.params)
}

func (e *env) seedHint() string {
	return fmt.Sprintf("\n\tbase seed %d: rerun with %s=%d go test -run '^%s$'", e.s.seed, seedEnv, e.s.seed, runPattern(e.t.Name()))
}

// runPattern turns a subtest path into a -run pattern (each level anchored).
func runPattern(name string) string {
	out := []byte{}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '/' {
			out = append(out, "$/^"...)
			continue
		}
		if c == '.' || c == '+' || c == '(' || c == ')' || c == '[' || c == ']' || c == '*' || c == '?' || c == '|' || c == '^' || c == '$' {
			out = append(out, '\\')
		}
		out = append(out, c)
	}
	return string(out)
}

// describe sets the case parameters that failure messages print.
func (e *env) describe(format string, args ...any) { e.params = fmt.Sprintf(format, args...) }

// round rounds x to the dtype under test, so references see exactly what the backend holds.
func (e *env) round(x float64) float64 {
	if e.dt == tensor.Float32 {
		return float64(float32(x))
	}
	return x
}

// signed draws n values with magnitude uniform in [lo, hi] (lo > 0, so never zero) and random sign.
func (e *env) signed(n int, lo, hi float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		v := lo + (hi-lo)*e.rng.Float64()
		if e.rng.IntN(2) == 0 {
			v = -v
		}
		out[i] = e.round(v)
	}
	return out
}

// positive draws n values uniform in [lo, hi] with lo > 0.
func (e *env) positive(n int, lo, hi float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = e.round(lo + (hi-lo)*e.rng.Float64())
	}
	return out
}

// scalar draws one signed value.
func (e *env) scalar(lo, hi float64) float64 { return e.signed(1, lo, hi)[0] }

// tensor uploads vals (already rounded) as a new tensor of the dtype under test, from a host slice
// of the same type so that the values arrive unchanged.
func (e *env) tensor(vals []float64, shape ...int) *tensor.Tensor {
	x := tensor.New(e.be, e.dt, shape...)
	e.owned = append(e.owned, x)
	if e.dt == tensor.Float32 {
		f := make([]float32, len(vals))
		for i, v := range vals {
			f[i] = float32(v)
		}
		x.Upload(f)
	} else {
		x.Upload(append([]float64(nil), vals...))
	}
	return x
}

// poisoned allocates an output and fills it with NaN, so that elements the op leaves unwritten fail.
func (e *env) poisoned(shape ...int) *tensor.Tensor {
	x := tensor.New(e.be, e.dt, shape...)
	e.owned = append(e.owned, x)
	tensor.Fill(x, nan)
	return x
}

// get downloads a tensor as float64 (exact for both dtypes).
func (e *env) get(x *tensor.Tensor) []float64 { return x.Float64s() }

// own registers a tensor created elsewhere (a reshape) for release.
func (e *env) own(x *tensor.Tensor) *tensor.Tensor {
	e.owned = append(e.owned, x)
	return x
}

// fatalf stops the leaf.
func (e *env) fatalf(format string, args ...any) {
	e.t.Fatalf("%s: %s%s", e.where(), fmt.Sprintf(format, args...), e.seedHint())
}
