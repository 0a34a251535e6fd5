package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

// roundTF32Ref rounds x to 10 mantissa bits, to nearest with ties away from zero, by arithmetic on
// the exact value (float64) rather than on the bit pattern: an independent reference for
// RoundTF32's bit trick.
func roundTF32Ref(x float32) float32 {
	if math.IsInf(float64(x), 0) || math.IsNaN(float64(x)) || x == 0 {
		return x
	}
	v := math.Abs(float64(x))
	e := math.Floor(math.Log2(v))
	if e < -126 {
		e = -126 // subnormals share the smallest normal exponent's quantum
	}
	q := math.Pow(2, e-10) // the TF32 quantum at this exponent
	r := math.Floor(v/q+0.5) * q
	if r > math.MaxFloat32 {
		r = math.Inf(1)
	}
	return float32(math.Copysign(r, float64(x)))
}

func TestRoundTF32(t *testing.T) {
	bits := func(b uint32) float32 { return math.Float32frombits(b) }
	cases := []struct {
		in, want float32
		what     string
	}{
		{1, 1, "exact"},
		{bits(0x3f801000), bits(0x3f802000), "tie rounds away from zero"},
		{bits(0xbf801000), bits(0xbf802000), "negative tie rounds away from zero"},
		{bits(0x3f800fff), 1, "below the tie rounds down"},
		{bits(0x3fffffff), 2, "carry into the exponent"},
		{bits(0x7f7fffff), float32(math.Inf(1)), "the largest float rounds to Inf"},
		{float32(math.Inf(-1)), float32(math.Inf(-1)), "Inf unchanged"},
		{bits(0x00001000), bits(0x00002000), "subnormal tie"},
		{0, 0, "zero"},
	}
	for _, c := range cases {
		if got := RoundTF32(c.in); math.Float32bits(got) != math.Float32bits(c.want) {
			t.Errorf("%s: RoundTF32(%#08x) = %#08x, want %#08x", c.what, math.Float32bits(c.in), math.Float32bits(got), math.Float32bits(c.want))
		}
	}
	if nan := bits(0x7fc00001); !math.IsNaN(float64(RoundTF32(nan))) {
		t.Errorf("RoundTF32(NaN) is not NaN")
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
	for i := 0; i < 200000; i++ {
		x := math.Float32frombits(rng.Uint32())
		if math.IsNaN(float64(x)) {
			continue
		}
		got, want := RoundTF32(x), roundTF32Ref(x)
		if math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("RoundTF32(%g = %#08x) = %#08x, reference %#08x", x, math.Float32bits(x), math.Float32bits(got), math.Float32bits(want))
		}
		if math.Float32bits(got)&0x1fff != 0 && !math.IsInf(float64(got), 0) {
			t.Fatalf("RoundTF32(%#08x) = %#08x keeps low mantissa bits", math.Float32bits(x), math.Float32bits(got))
		}
	}
}

func TestParsePrecision(t *testing.T) {
	for _, p := range []Precision{FP32, TF32} {
		if q, err := ParsePrecision(p.String()); err != nil || q != p {
			t.Errorf("ParsePrecision(%q) = %v, %v", p.String(), q, err)
		}
	}
	if _, err := ParsePrecision("bf16"); err == nil {
		t.Error("ParsePrecision(bf16) accepted")
	}
}
