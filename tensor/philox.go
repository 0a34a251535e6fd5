package tensor

import "math"

// Philox-4x32-10 constants from Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC 2011),
// as in the Random123 library.
const (
	philoxM0 = 0xD2511F53
	philoxM1 = 0xCD9E8D57
	philoxW0 = 0x9E3779B9
	philoxW1 = 0xBB67AE85
)

// Philox4x32 returns the four 32-bit words of Philox-4x32-10 for counter ctr and key.
func Philox4x32(ctr [4]uint32, key [2]uint32) [4]uint32 {
	c := ctr
	k0, k1 := key[0], key[1]
	for r := 0; r < 10; r++ {
		p0 := uint64(philoxM0) * uint64(c[0])
		p1 := uint64(philoxM1) * uint64(c[2])
		c = [4]uint32{
			uint32(p1>>32) ^ c[1] ^ k0,
			uint32(p1),
			uint32(p0>>32) ^ c[3] ^ k1,
			uint32(p0),
		}
		k0 += philoxW0
		k1 += philoxW1
	}
	return c
}

// PhiloxBlocks returns how many counters a fill of n elements consumes: four elements per counter.
func PhiloxBlocks(n int) uint64 { return uint64((n + 3) / 4) }

// PhiloxBlock returns the words that element block j of a fill with (seed, offset) uses: counter
// (offset+j as two 32-bit halves, 0, 0) and key (seed as two 32-bit halves). Element i of a fill takes
// word i%4 of block i/4. Every backend follows this definition, which is what makes fills agree.
func PhiloxBlock(seed, offset, j uint64) [4]uint32 {
	c := offset + j
	return Philox4x32([4]uint32{uint32(c), uint32(c >> 32), 0, 0}, [2]uint32{uint32(seed), uint32(seed >> 32)})
}

// PhiloxUniform maps a word to [0, 1) using its top 24 bits, so the value is exact in float32 and
// identical on every backend and dtype.
func PhiloxUniform(w uint32) float64 { return float64(w>>8) * (1.0 / (1 << 24)) }

// PhiloxNormal maps the four words of a block to four standard normals with the Box–Muller transform
// computed in float64: (w0, w1) give elements 0 and 1, (w2, w3) give 2 and 3. u1 = (w+1)/2³² lies in
// (0, 1], so the logarithm is finite.
func PhiloxNormal(b [4]uint32) [4]float64 {
	var out [4]float64
	for p := 0; p < 2; p++ {
		u1 := (float64(b[2*p]) + 1) * (1.0 / (1 << 32))
		u2 := float64(b[2*p+1]) * (1.0 / (1 << 32))
		r := math.Sqrt(-2 * math.Log(u1))
		s, c := math.Sincos(2 * math.Pi * u2)
		out[2*p] = r * c
		out[2*p+1] = r * s
	}
	return out
}
