package autodiff

import (
	"math"
	"testing"

	"dlf/tensor"
)

// TestArena checks that ReleaseSince releases exactly the Vars created since its Mark (by ops and
// by Adopt) except those kept, that kept Vars pass to the enclosing arena, that the gradient through
// a layer written with arenas equals the one written with explicit releases, and that NoGrad tapes
// track too.
func TestArena(t *testing.T) {
	be := backend()
	r, _ := newRand(t)
	xv := make([]float64, 12)
	for i := range xv {
		xv[i] = signed(r)
	}
	for _, grad := range []bool{true, false} {
		tp := NewTape()
		if !grad {
			tp = NoGrad()
		}
		x := NewParam(tensor.FromFloat64(be, xv, 3, 4))
		outer := tp.Mark()
		a := tp.Exp(x)
		inner := tp.Mark()
		b := tp.Mul(a, a)
		c := tp.Add(b, x)
		k := NewVar(tensor.Full(be, tensor.Float64, 2, 3, 4))
		tp.Adopt(k)
		d := tp.Mul(c, k)
		tp.ReleaseSince(inner, d)
		for name, v := range map[string]*Var{"b": b, "c": c, "adopted": k} {
			if v.Value != nil {
				t.Errorf("grad %v: %s survived its arena", grad, name)
			}
		}
		if d.Value == nil || a.Value == nil {
			t.Fatalf("grad %v: a kept result or an outer Var was released", grad)
		}
		loss := tp.Sum(d, tensor.AxisAll)
		tp.ReleaseSince(outer, loss)
		if a.Value != nil || d.Value != nil {
			t.Errorf("grad %v: the outer arena did not release a and the kept d", grad)
		}
		if loss.Value == nil || x.Value == nil {
			t.Fatalf("grad %v: the kept loss or the leaf was released", grad)
		}
		if !grad {
			continue
		}
		if err := tp.Backward(loss); err != nil {
			t.Fatal(err)
		}
		// d/dx Σ 2·(e^{2x} + x) = 4e^{2x} + 2.
		for i, g := range x.Grad.Float64s() {
			want := 4*math.Exp(2*xv[i]) + 2
			if d := g - want; d > 1e-12*want || d < -1e-12*want {
				t.Errorf("grad[%d] = %v, want %v", i, g, want)
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("ReleaseSince without a Mark did not panic")
		}
	}()
	NewTape().ReleaseSince(0)
}
