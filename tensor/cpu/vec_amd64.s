//go:build amd64 && !purego

#include "textflag.h"

// Hand-written AVX2 loops for vec.go; each performs the IEEE operations of its Go twin in the
// same order (see vec.go), 8 floats or 4 doubles per instruction. Operand order is Go's: the
// destination last, and "OP b, a, dst" computes dst = a OP b.

// func reluAVX2(d, x *float32, n int)   n a multiple of 8
TEXT ·reluAVX2(SB), NOSPLIT, $0-24
	MOVQ d+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	VXORPS Y0, Y0, Y0
	XORQ AX, AX
relu_loop:
	VMOVUPS (SI)(AX*4), Y1
	// MAXPS returns its second source when either is NaN or both are zero: max(0, x) keeps a
	// NaN x; adding +0 then turns −0 into +0 (Go's max(x, 0)) and changes nothing else.
	VMAXPS Y1, Y0, Y2
	VADDPS Y0, Y2, Y2
	VMOVUPS Y2, (DI)(AX*4)
	ADDQ $8, AX
	CMPQ AX, CX
	JLT relu_loop
	VZEROUPPER
	RET

// func reluGradAVX2(d, s, dy *float32, n int)   n a multiple of 8
TEXT ·reluGradAVX2(SB), NOSPLIT, $0-32
	MOVQ d+0(FP), DI
	MOVQ s+8(FP), SI
	MOVQ dy+16(FP), DX
	MOVQ n+24(FP), CX
	VXORPS Y0, Y0, Y0
	MOVL $0x3f800000, BX // 1.0
	VMOVD BX, X3
	VBROADCASTSS X3, Y3
	XORQ AX, AX
relugrad_loop:
	VMOVUPS (SI)(AX*4), Y1
	VCMPPS $0x11, Y1, Y0, Y2 // 0 < s (ordered, quiet): all ones, else zero (NaN: zero)
	VANDPS Y3, Y2, Y2        // k = 1 or 0
	VMULPS (DX)(AX*4), Y2, Y2 // g·k
	VMOVUPS Y2, (DI)(AX*4)
	ADDQ $8, AX
	CMPQ AX, CX
	JLT relugrad_loop
	VZEROUPPER
	RET

// func actNormRowsAVX2(dst, src *float32, rows, c int, sh, mul *float64, inverse bool)   c a multiple of 4
TEXT ·actNormRowsAVX2(SB), NOSPLIT, $0-49
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ rows+16(FP), R8
	MOVQ c+24(FP), R9
	MOVQ sh+32(FP), R10
	MOVQ mul+40(FP), R11
	MOVBLZX inverse+48(FP), R12
	TESTQ R12, R12
	JNZ actnorm_inv_row
actnorm_row:
	XORQ AX, AX
actnorm_col:
	VCVTPS2PD (SI)(AX*4), Y1 // float64(v)
	VADDPD (R10)(AX*8), Y1, Y1 // + sh
	VMULPD (R11)(AX*8), Y1, Y1 // · mul
	VCVTPD2PSY Y1, X1
	VMOVUPS X1, (DI)(AX*4)
	ADDQ $4, AX
	CMPQ AX, R9
	JLT actnorm_col
	LEAQ (SI)(R9*4), SI
	LEAQ (DI)(R9*4), DI
	DECQ R8
	JNZ actnorm_row
	VZEROUPPER
	RET
actnorm_inv_row:
	XORQ AX, AX
actnorm_inv_col:
	VCVTPS2PD (SI)(AX*4), Y1
	VMULPD (R11)(AX*8), Y1, Y1 // · mul
	VSUBPD (R10)(AX*8), Y1, Y1 // − sh
	VCVTPD2PSY Y1, X1
	VMOVUPS X1, (DI)(AX*4)
	ADDQ $4, AX
	CMPQ AX, R9
	JLT actnorm_inv_col
	LEAQ (SI)(R9*4), SI
	LEAQ (DI)(R9*4), DI
	DECQ R8
	JNZ actnorm_inv_row
	VZEROUPPER
	RET

// func channelScaleRowsAVX2(dx, dy, y *float32, rows, c int, e, bdy, bdyy *float64)   c a multiple of 8
//
// Eight channels at a time (two chains of four doubles, so the additions into the sums overlap)
// walk every row in order, with the sums in registers.
TEXT ·channelScaleRowsAVX2(SB), NOSPLIT, $0-64
	MOVQ dx+0(FP), DI
	MOVQ dy+8(FP), SI
	MOVQ y+16(FP), DX
	MOVQ c+32(FP), R9
	MOVQ e+40(FP), R10
	MOVQ bdy+48(FP), R11
	MOVQ bdyy+56(FP), R12
	LEAQ (R9*4), R13 // row stride in bytes
	XORQ AX, AX      // channel j
cs_group:
	VMOVUPD (R11)(AX*8), Y0
	VMOVUPD 32(R11)(AX*8), Y1
	VMOVUPD (R12)(AX*8), Y2
	VMOVUPD 32(R12)(AX*8), Y3
	VMOVUPD (R10)(AX*8), Y4
	VMOVUPD 32(R10)(AX*8), Y5
	LEAQ (AX*4), BX // byte offset of (row 0, channel j)
	MOVQ rows+24(FP), CX
cs_row:
	VCVTPS2PD (SI)(BX*1), Y6   // g = float64(dy)
	VCVTPS2PD 16(SI)(BX*1), Y7
	VADDPD Y6, Y0, Y0          // bdy += g
	VADDPD Y7, Y1, Y1
	VCVTPS2PD (DX)(BX*1), Y8   // float64(y)
	VCVTPS2PD 16(DX)(BX*1), Y9
	VMULPD Y8, Y6, Y8          // g·y
	VMULPD Y9, Y7, Y9
	VADDPD Y8, Y2, Y2          // bdyy += g·y
	VADDPD Y9, Y3, Y3
	VMULPD Y4, Y6, Y6          // g·e
	VMULPD Y5, Y7, Y7
	VCVTPD2PSY Y6, X6
	VCVTPD2PSY Y7, X7
	VMOVUPS X6, (DI)(BX*1)
	VMOVUPS X7, 16(DI)(BX*1)
	ADDQ R13, BX
	DECQ CX
	JNZ cs_row
	VMOVUPD Y0, (R11)(AX*8)
	VMOVUPD Y1, 32(R11)(AX*8)
	VMOVUPD Y2, (R12)(AX*8)
	VMOVUPD Y3, 32(R12)(AX*8)
	ADDQ $8, AX
	CMPQ AX, R9
	JLT cs_group
	VZEROUPPER
	RET
