package tensor

import "testing"

// Known-answer vectors of Philox-4x32-10 from the Random123 distribution (kat_vectors).
func TestPhiloxKnownAnswers(t *testing.T) {
	cases := []struct {
		ctr  [4]uint32
		key  [2]uint32
		want [4]uint32
	}{
		{[4]uint32{0, 0, 0, 0}, [2]uint32{0, 0}, [4]uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
		{[4]uint32{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, [2]uint32{0xffffffff, 0xffffffff}, [4]uint32{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
		{[4]uint32{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, [2]uint32{0xa4093822, 0x299f31d0}, [4]uint32{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
	}
	for _, c := range cases {
		if got := Philox4x32(c.ctr, c.key); got != c.want {
			t.Errorf("Philox4x32(%08x, %08x) = %08x, want %08x", c.ctr, c.key, got, c.want)
		}
	}
}

func TestPhiloxNormalMoments(t *testing.T) {
	const blocks = 50000
	var s, s2 float64
	for j := uint64(0); j < blocks; j++ {
		for _, v := range PhiloxNormal(PhiloxBlock(7, 0, j)) {
			s += v
			s2 += v * v
		}
	}
	n := float64(4 * blocks)
	mean, vr := s/n, s2/n-(s/n)*(s/n)
	// Standard errors: 1/sqrt(n) ≈ 0.0022 for the mean, sqrt(2/n) ≈ 0.0032 for the variance.
	if mean < -0.01 || mean > 0.01 || vr < 0.985 || vr > 1.015 {
		t.Fatalf("normal mean %.4f variance %.4f, want 0 and 1", mean, vr)
	}
}
