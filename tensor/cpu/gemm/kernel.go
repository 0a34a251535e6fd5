package gemm

// float is the element type of every routine in this package (an alias of
// the exported Float, kept short for the many internal signatures).
type float = Float

// kernelID names a micro-kernel family. The zero value picks the fastest one
// this CPU supports; tests set the others to exercise every path on one
// machine.
type kernelID int

const (
	kernelAuto   kernelID = iota // fastest available
	kernelAVX512                 // AVX-512F zmm kernels (amd64)
	kernelAVX2                   // AVX2+FMA ymm kernels (amd64)
	kernelGo                     // portable pure-Go kernels
)

// String returns the kernel family's name as used in test and benchmark names.
func (id kernelID) String() string {
	switch id {
	case kernelAVX512:
		return "avx512"
	case kernelAVX2:
		return "avx2"
	case kernelGo:
		return "go"
	}
	return "auto"
}

// kernel is a micro-kernel plus the cache-blocking parameters tuned for it.
//
// micro computes an mr×nr tile of C from an mr×kc block of A, element
// (i, p) at a[i*rs+p*ps], and a packed kc×nr B panel (b[p*nr+j]):
// c[i*ldc+j] = alpha·Σ_p A·B + beta·c[i*ldc+j], without reading c when
// beta == 0. kc ≥ 1. A packed A panel has rs = 1, ps = mr; an unpacked A is
// read in place with its own strides (see serial).
type kernel[T float] struct {
	id     kernelID
	mr, nr int // register block
	vecs   int // vector FMAs per row of the block per k step (nr over the vector width)
	mc     int // rows of the packed A block (multiple of mr): sized for L2
	kc     int // depth of the packed panels: kc·nr elements of B sit in L1
	nc     int // columns of the packed B panel (multiple of nr): sized for L3
	micro  func(kc int, a []T, rs, ps int, b, c []T, ldc int, alpha, beta T)
}

// goKernels32 and goKernels64 are the portable kernels: a 4×4 block held
// in 16 scalar locals, which the Go compiler keeps in registers. Blocking is
// generous because the kernel is compute-bound long before it is
// cache-bound.
var (
	goKernels32 = []*kernel[float32]{{id: kernelGo, mr: 4, nr: 4, vecs: 4, mc: 128, kc: 256, nc: 1024, micro: microGo[float32]}}
	goKernels64 = []*kernel[float64]{{id: kernelGo, mr: 4, nr: 4, vecs: 4, mc: 128, kc: 256, nc: 1024, micro: microGo[float64]}}
)

// resolve maps a requested family to one this CPU supports: automatic
// means the fastest, and an unsupported request falls back the same way.
func resolve(id kernelID) kernelID {
	switch {
	case id == kernelGo:
		return kernelGo
	case id == kernelAVX2 && avx2Kernels32 != nil:
		return kernelAVX2
	case id != kernelAVX2 && avx512Kernels32 != nil:
		return kernelAVX512
	case avx2Kernels32 != nil:
		return kernelAVX2
	}
	return kernelGo
}

// family returns the kernels of a supported family for element type T,
// widest first.
func family[T float](id kernelID) []*kernel[T] {
	var zero T
	if _, ok := any(zero).(float32); ok {
		return any(family32(id)).([]*kernel[T])
	}
	return any(family64(id)).([]*kernel[T])
}

func family32(id kernelID) []*kernel[float32] {
	switch id {
	case kernelAVX512:
		return avx512Kernels32
	case kernelAVX2:
		return avx2Kernels32
	}
	return goKernels32
}

func family64(id kernelID) []*kernel[float64] {
	switch id {
	case kernelAVX512:
		return avx512Kernels64
	case kernelAVX2:
		return avx2Kernels64
	}
	return goKernels64
}

// pickKernel returns the kernel for element type T and a product n columns
// wide: from the requested family (resolved to what the CPU supports), the
// one that issues the fewest vector FMAs per row, ceil(n/nr)·vecs, so that
// narrow products do not pay for padding columns up to a wide register
// block (n = 36, a 3×3 convolution's taps × 4 channels: three 16-column
// panels, 48 lanes, rather than two 32-column ones, 64). On a tie the one
// with fewer padded columns wins (n ≤ 8: the 8-column kernel), then the
// wider (fewer loads per FMA).
func pickKernel[T float](id kernelID, n int) *kernel[T] {
	ks := family[T](resolve(id))
	k := ks[0]
	for _, c := range ks[1:] {
		cost, best := ceilDiv(n, c.nr)*c.vecs, ceilDiv(n, k.nr)*k.vecs
		if cost < best || (cost == best && roundUp(n, c.nr) < roundUp(n, k.nr)) {
			k = c
		}
	}
	return k
}

// available reports whether the kernel family id runs on this CPU (used by
// tests to skip families the machine lacks).
func available(id kernelID) bool { return id == kernelAuto || resolve(id) == id }

// microGo is the portable 4×4 micro-kernel (see kernel.micro).
func microGo[T float](kc int, a []T, rs, ps int, b, c []T, ldc int, alpha, beta T) {
	var (
		c00, c01, c02, c03 T
		c10, c11, c12, c13 T
		c20, c21, c22, c23 T
		c30, c31, c32, c33 T
	)
	b = b[:4*kc]
	a0s, a1s, a2s, a3s := a[0:], a[rs:], a[2*rs:], a[3*rs:]
	for p := 0; p < kc; p++ {
		bp := b[4*p : 4*p+4 : 4*p+4]
		a0, a1, a2, a3 := a0s[p*ps], a1s[p*ps], a2s[p*ps], a3s[p*ps]
		b0, b1, b2, b3 := bp[0], bp[1], bp[2], bp[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	storeRow4(c[0*ldc:0*ldc+4], c00, c01, c02, c03, alpha, beta)
	storeRow4(c[1*ldc:1*ldc+4], c10, c11, c12, c13, alpha, beta)
	storeRow4(c[2*ldc:2*ldc+4], c20, c21, c22, c23, alpha, beta)
	storeRow4(c[3*ldc:3*ldc+4], c30, c31, c32, c33, alpha, beta)
}

// storeRow4 writes one row of a 4×4 tile: c = alpha·v + beta·c, not reading
// c when beta == 0.
func storeRow4[T float](c []T, v0, v1, v2, v3, alpha, beta T) {
	c = c[:4:4]
	if beta == 0 {
		c[0], c[1], c[2], c[3] = alpha*v0, alpha*v1, alpha*v2, alpha*v3
		return
	}
	c[0] = alpha*v0 + beta*c[0]
	c[1] = alpha*v1 + beta*c[1]
	c[2] = alpha*v2 + beta*c[2]
	c[3] = alpha*v3 + beta*c[3]
}

// KernelFamily names the micro-kernel family that automatic selection uses
// on this CPU — "AVX-512", "AVX2+FMA" or "portable Go" — for diagnostics
// such as the driver's info command.
func KernelFamily() string {
	switch resolve(kernelAuto) {
	case kernelAVX512:
		return "AVX-512"
	case kernelAVX2:
		return "AVX2+FMA"
	}
	return "portable Go"
}
