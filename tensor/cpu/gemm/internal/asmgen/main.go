// Command asmgen writes the amd64 micro-kernels of package gemm
// (kernel_amd64.s). The kernels are long runs of nearly identical
// instructions (a 14×32 AVX-512 block is 28 FMAs per k step, unrolled four
// times), so generating them from one description keeps the register
// allocation, the frame offsets and the write-back logic consistent across
// the four variants (float32/float64 × AVX2/AVX-512).
//
// Run it with `go generate ./tensor/cpu/gemm/` (see the go:generate line in
// kernel_amd64.go); the output is committed so builds never need it.
//
// Every kernel has the Go signature
//
//	func name(kc int, a *T, rs, ps int, b, c *T, ldc int, alpha, beta T)
//
// and computes, for the mr×nr tile at c (row stride ldc elements):
//
//	acc[i][j] = Σ_{p<kc} a[i*rs+p*ps] · b[p*nr+j]
//	c[i][j]   = alpha·acc[i][j] + beta·c[i][j]       (beta ≠ 0)
//	c[i][j]   = alpha·acc[i][j]                      (beta == 0; c is not read)
//
// kc must be ≥ 1. The two A strides let one kernel read a packed panel
// (rs = 1, ps = mr), a transposed A in place (rs = 1, ps = lda) or a
// row-major A in place (rs = lda, ps = 1), so small-n products (convolutions
// with 32 output channels) need not pay for packing A. Row i of A is
// addressed as base + index·scale with a handful of base registers at rows
// b and the index registers R8 = rs and R9 = 3·rs, which reach rows
// b + {0, 1, 2, 3, 4, 6, 8, 12, 24}; each k step advances the bases by ps.
package main

import (
	"bytes"
	"fmt"
	"os"
)

// kernel describes one generated micro-kernel.
type kernel struct {
	name    string
	elem    int    // element size in bytes (4 or 8)
	vecRegs string // register prefix: "Y" (32-byte) or "Z" (64-byte)
	evex    bool   // AVX-512 encoding: 32 registers and embedded broadcast (ymm needs AVX-512VL)
	vecSize int    // vector size in bytes
	rows    int    // mr
	vecs    int    // vectors per row; nr = vecs·vecSize/elem
	unroll  int    // k-loop unroll factor
}

func (k kernel) nr() int { return k.vecs * k.vecSize / k.elem }

// suffix returns the packed-single or packed-double instruction suffix.
func (k kernel) suffix() string {
	if k.elem == 4 {
		return "PS"
	}
	return "PD"
}

func (k kernel) acc(i, v int) string { return fmt.Sprintf("%s%d", k.vecRegs, i*k.vecs+v) }

// breg returns the register holding vector v of the current B row.
func (k kernel) breg(v int) string { return fmt.Sprintf("%s%d", k.vecRegs, k.rows*k.vecs+v) }

// bcast returns the scratch register for an A broadcast (AVX2 only; AVX-512
// folds the broadcast into the FMA's memory operand with {1toN}).
func (k kernel) bcast() string { return fmt.Sprintf("%s%d", k.vecRegs, k.rows*k.vecs+k.vecs) }

// baseRegs are the general registers available for A row bases (BX = B,
// CX = loop counter, DX = ldc, DI = C, R8 = rs, R9 = 3·rs, R10 = ps; R14
// is Go's g register and is left alone).
var baseRegs = []string{"AX", "SI", "R11", "R12", "R13", "R15"}

// rowAddr returns, for each row, its addressing-mode string relative to the
// current position, and the rows at which base registers sit.
func (k kernel) rowAddr() (addr []string, bases []int) {
	reach := []struct {
		off   int
		index string
	}{{0, ""}, {1, "(R8*1)"}, {2, "(R8*2)"}, {3, "(R9*1)"}, {4, "(R8*4)"}, {6, "(R9*2)"}, {8, "(R8*8)"}, {12, "(R9*4)"}, {24, "(R9*8)"}}
	addr = make([]string, k.rows)
	for i := 0; i < k.rows; i++ {
		if addr[i] != "" {
			continue
		}
		reg := baseRegs[len(bases)]
		bases = append(bases, i)
		for _, r := range reach {
			if j := i + r.off; j < k.rows && addr[j] == "" {
				addr[j] = "(" + reg + ")" + r.index
			}
		}
	}
	return addr, bases
}

// MXCSR bits: denormals-are-zero (inputs) and flush-to-zero (results).
const (
	mxcsrDAZ = 1 << 6
	mxcsrFTZ = 1 << 15
)

type writer struct{ bytes.Buffer }

func (w *writer) f(format string, args ...any) { fmt.Fprintf(&w.Buffer, format+"\n", args...) }

// step emits one k step: load the B row, multiply it by the broadcast A
// column, then advance the A bases by ps (B advances by a displacement).
func (k kernel) step(w *writer, u int, addr []string, nbases int) {
	nr, es := k.nr(), k.elem
	for v := 0; v < k.vecs; v++ {
		w.f("\tVMOVUP%s %d(BX), %s", k.suffix()[1:], u*nr*es+v*k.vecSize, k.breg(v))
	}
	for i := 0; i < k.rows; i++ {
		if k.evex {
			for v := 0; v < k.vecs; v++ {
				w.f("\tVFMADD231%s.BCST %s, %s, %s", k.suffix(), addr[i], k.breg(v), k.acc(i, v))
			}
			continue
		}
		if es == 4 {
			w.f("\tVBROADCASTSS %s, %s", addr[i], k.bcast())
		} else {
			w.f("\tVBROADCASTSD %s, %s", addr[i], k.bcast())
		}
		for v := 0; v < k.vecs; v++ {
			w.f("\tVFMADD231%s %s, %s, %s", k.suffix(), k.breg(v), k.bcast(), k.acc(i, v))
		}
	}
	for j := 0; j < nbases; j++ {
		w.f("\tADDQ R10, %s", baseRegs[j])
	}
}

func (k kernel) emit(w *writer) {
	mr, nr, es := k.rows, k.nr(), k.elem
	typ := "float32"
	shift := 2
	if es == 8 {
		typ, shift = "float64", 3
	}
	alphaOff, betaOff := 56, 56+es
	frame := 56 + 2*es
	addr, bases := k.rowAddr()
	w.f("// func %s(kc int, a *%s, rs, ps int, b, c *%s, ldc int, alpha, beta %s)", k.name, typ, typ, typ)
	w.f("// %d×%d register block, %s registers, k loop unrolled %d times.", mr, nr, map[string]string{"Y": "AVX2 ymm", "Z": "AVX-512 zmm"}[k.vecRegs], k.unroll)
	// Subnormal operands and results are flushed to zero for the kernel's duration (MXCSR DAZ and
	// FTZ; the caller's MXCSR is saved in the frame and restored before returning): on x86 a vector
	// FMA that meets a subnormal lane takes a microcode assist of ~100 cycles, and a flow's
	// gradients do carry subnormals (2% of one hyper-network's output gradient in the mnist preset
	// at the reference initialisation, which made its weight-gradient GEMM 4× slower). Flushing
	// changes results only below 2⁻¹²⁶ ≈ 1.2e-38.
	w.f("TEXT ·%s(SB), NOSPLIT, $16-%d", k.name, frame)
	w.f("\tSTMXCSR mxcsr-8(SP)")
	w.f("\tMOVL mxcsr-8(SP), R9")
	w.f("\tORL $0x%x, R9", mxcsrDAZ|mxcsrFTZ)
	w.f("\tMOVL R9, ftz-16(SP)")
	w.f("\tLDMXCSR ftz-16(SP)")
	w.f("\tMOVQ kc+0(FP), CX")
	w.f("\tMOVQ a+8(FP), AX")
	w.f("\tMOVQ rs+16(FP), R8")
	w.f("\tSHLQ $%d, R8", shift)
	w.f("\tLEAQ (R8)(R8*2), R9")
	w.f("\tMOVQ ps+24(FP), R10")
	w.f("\tSHLQ $%d, R10", shift)
	w.f("\tMOVQ b+32(FP), BX")
	w.f("\tMOVQ c+40(FP), DI")
	w.f("\tMOVQ ldc+48(FP), DX")
	w.f("\tSHLQ $%d, DX", shift)
	for j := 1; j < len(bases); j++ {
		// base j points at row bases[j]: a + bases[j]·rs.
		w.f("\tMOVQ $%d, %s", bases[j], baseRegs[j])
		w.f("\tIMULQ R8, %s", baseRegs[j])
		w.f("\tADDQ AX, %s", baseRegs[j])
	}
	// Touch the C tile early so its lines are in flight while the k loop
	// runs (DI walks the rows and is reloaded for the store).
	for i := 0; i < mr; i++ {
		w.f("\tPREFETCHT0 (DI)")
		if nr*es > 64 {
			w.f("\tPREFETCHT0 %d(DI)", nr*es-1)
		}
		w.f("\tADDQ DX, DI")
	}
	for i := 0; i < mr; i++ {
		for v := 0; v < k.vecs; v++ {
			r := k.acc(i, v)
			if k.evex {
				w.f("\tVPXORD %s, %s, %s", r, r, r)
			} else {
				w.f("\tVXORPS %s, %s, %s", r, r, r)
			}
		}
	}
	w.f("\tSHRQ $%d, CX", map[int]int{1: 0, 2: 1, 4: 2, 8: 3}[k.unroll])
	w.f("\tJZ %s_tail", k.name)
	w.f("%s_loop:", k.name)
	for u := 0; u < k.unroll; u++ {
		k.step(w, u, addr, len(bases))
	}
	w.f("\tADDQ $%d, BX", k.unroll*nr*es)
	w.f("\tDECQ CX")
	w.f("\tJNZ %s_loop", k.name)
	w.f("%s_tail:", k.name)
	w.f("\tMOVQ kc+0(FP), CX")
	w.f("\tANDQ $%d, CX", k.unroll-1)
	w.f("\tJZ %s_store", k.name)
	w.f("%s_tail_loop:", k.name)
	k.step(w, 0, addr, len(bases))
	w.f("\tADDQ $%d, BX", nr*es)
	w.f("\tDECQ CX")
	w.f("\tJNZ %s_tail_loop", k.name)
	w.f("%s_store:", k.name)
	// alpha and beta reuse the B registers, which are dead after the loop.
	alpha, beta := k.breg(0), k.bcast()
	w.f("\tMOVQ c+40(FP), DI")
	bc := "VBROADCASTSS"
	movBits, test := "MOVL", "SHLL $1, R9" // shifting out the sign bit treats -0 as 0
	if es == 8 {
		bc, movBits, test = "VBROADCASTSD", "MOVQ", "SHLQ $1, R9"
	}
	w.f("\t%s alpha+%d(FP), %s", bc, alphaOff, alpha)
	for i := 0; i < mr; i++ {
		for v := 0; v < k.vecs; v++ {
			w.f("\tVMUL%s %s, %s, %s", k.suffix(), alpha, k.acc(i, v), k.acc(i, v))
		}
	}
	w.f("\t%s beta+%d(FP), R9", movBits, betaOff)
	w.f("\t%s", test)
	w.f("\tJZ %s_overwrite", k.name)
	w.f("\t%s beta+%d(FP), %s", bc, betaOff, beta)
	mov := "VMOVUP" + k.suffix()[1:]
	for i := 0; i < mr; i++ {
		for v := 0; v < k.vecs; v++ {
			w.f("\tVFMADD231%s %d(DI), %s, %s", k.suffix(), v*k.vecSize, beta, k.acc(i, v))
			w.f("\t%s %s, %d(DI)", mov, k.acc(i, v), v*k.vecSize)
		}
		w.f("\tADDQ DX, DI")
	}
	w.f("\tLDMXCSR mxcsr-8(SP)")
	w.f("\tVZEROUPPER")
	w.f("\tRET")
	w.f("%s_overwrite:", k.name)
	for i := 0; i < mr; i++ {
		for v := 0; v < k.vecs; v++ {
			w.f("\t%s %s, %d(DI)", mov, k.acc(i, v), v*k.vecSize)
		}
		w.f("\tADDQ DX, DI")
	}
	w.f("\tLDMXCSR mxcsr-8(SP)")
	w.f("\tVZEROUPPER")
	w.f("\tRET")
	w.f("")
}

func main() {
	out := "kernel_amd64.s"
	if len(os.Args) > 1 {
		out = os.Args[1]
	}
	kernels := []kernel{
		// AVX-512: 28 accumulators + 2 B vectors = 30 of 32 zmm.
		{name: "sgemmKernelAVX512", elem: 4, vecRegs: "Z", evex: true, vecSize: 64, rows: 14, vecs: 2, unroll: 4},
		{name: "dgemmKernelAVX512", elem: 8, vecRegs: "Z", evex: true, vecSize: 64, rows: 14, vecs: 2, unroll: 4},
		// Narrow AVX-512 kernels for products with few columns (a flow's
		// 1×1 convolutions and coupling outputs have 4–16 channels): 28
		// accumulators + 1 B vector, so a column of C costs no padding
		// beyond 16 (zmm) or 8 (ymm, AVX-512VL) lanes.
		{name: "sgemmKernelAVX512N16", elem: 4, vecRegs: "Z", evex: true, vecSize: 64, rows: 28, vecs: 1, unroll: 4},
		{name: "sgemmKernelAVX512N8", elem: 4, vecRegs: "Y", evex: true, vecSize: 32, rows: 28, vecs: 1, unroll: 4},
		{name: "dgemmKernelAVX512N8", elem: 8, vecRegs: "Z", evex: true, vecSize: 64, rows: 28, vecs: 1, unroll: 4},
		// AVX2: 12 accumulators + 2 B vectors + 1 broadcast = 15 of 16 ymm.
		{name: "sgemmKernelAVX2", elem: 4, vecRegs: "Y", vecSize: 32, rows: 6, vecs: 2, unroll: 4},
		{name: "dgemmKernelAVX2", elem: 8, vecRegs: "Y", vecSize: 32, rows: 6, vecs: 2, unroll: 4},
	}
	var w writer
	w.f("// Code generated by internal/asmgen; DO NOT EDIT.")
	w.f("")
	w.f("//go:build amd64 && !purego")
	w.f("")
	w.f("#include \"textflag.h\"")
	w.f("")
	for _, k := range kernels {
		k.emit(&w)
	}
	if err := os.WriteFile(out, w.Bytes(), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "asmgen:", err)
		os.Exit(1)
	}
}
