package backendtest

import (
	"testing"

	"dlf/tensor"
)

// TestNaiveFloat64 runs the whole suite on the naive backend with both dtypes. Passing it shows the
// references and the naive backend, written independently, agree.
func TestNaiveFloat64(t *testing.T) { Run(t, &naive{}) }

// TestNaiveFloat32Only runs the suite on a backend that supports only Float32 (like CUDA), on the
// small cases (TestNaiveFloat64 covers the rest in float32 too).
func TestNaiveFloat32Only(t *testing.T) {
	runFamilies(testingT{t}, &naive{f32only: true}, Options{leafFilter: smallCases}, nil)
}

// TestDTypesOption restricts a run to one dtype.
func TestDTypesOption(t *testing.T) {
	r := newRecorder()
	runFamilies(r, &naive{}, Options{DTypes: []tensor.DType{tensor.Float64}, leafFilter: func(string) bool { return false }}, []string{"memory"})
	if r.failed {
		t.Fatalf("unexpected failure: %v", *r.msgs)
	}
	r = newRecorder()
	runFamilies(r, &naive{f32only: true}, Options{DTypes: []tensor.DType{tensor.Float64}}, []string{"memory"})
	if !r.failed {
		t.Fatalf("asking for float64 on a float32-only backend did not fail")
	}
}
