package gemm

// packA copies the mb×kb block of op(A) starting at row ic, column pc into
// dst as consecutive mr-tall panels: element (i, p) of panel q lands at
// dst[q·mr·kb + p·mr + i]. Rows past mb are zero so the micro-kernel can
// always compute whole tiles. With trans, A is stored k×m (op(A) = Aᵀ).
func packA[T float](trans bool, a []T, lda, ic, pc, mb, kb, mr int, dst []T) {
	for q := 0; q*mr < mb; q++ {
		rows := min(mr, mb-q*mr)
		panel := dst[q*mr*kb : (q+1)*mr*kb]
		r0 := ic + q*mr
		if trans {
			// Column r of op(A) is contiguous in memory: copy mr at a time.
			for p := 0; p < kb; p++ {
				src := a[(pc+p)*lda+r0 : (pc+p)*lda+r0+rows]
				d := panel[p*mr : p*mr+mr]
				copy(d, src)
				clear(d[rows:])
			}
			continue
		}
		if rows == mr && mr%4 == 0 {
			// Four rows per pass: the source rows are read sequentially and
			// each pass fills four adjacent lanes of every panel column.
			for i := 0; i < mr; i += 4 {
				s0 := a[(r0+i)*lda+pc : (r0+i)*lda+pc+kb]
				s1 := a[(r0+i+1)*lda+pc : (r0+i+1)*lda+pc+kb]
				s2 := a[(r0+i+2)*lda+pc : (r0+i+2)*lda+pc+kb]
				s3 := a[(r0+i+3)*lda+pc : (r0+i+3)*lda+pc+kb]
				for p := range s0 {
					d := panel[p*mr+i : p*mr+i+4 : p*mr+i+4]
					d[0], d[1], d[2], d[3] = s0[p], s1[p], s2[p], s3[p]
				}
			}
			continue
		}
		if rows == mr && mr%2 == 0 {
			// Two rows per pass (the 14- and 6-row kernels).
			for i := 0; i < mr; i += 2 {
				s0 := a[(r0+i)*lda+pc : (r0+i)*lda+pc+kb]
				s1 := a[(r0+i+1)*lda+pc : (r0+i+1)*lda+pc+kb]
				for p := range s0 {
					d := panel[p*mr+i : p*mr+i+2 : p*mr+i+2]
					d[0], d[1] = s0[p], s1[p]
				}
			}
			continue
		}
		for i := 0; i < rows; i++ {
			src := a[(r0+i)*lda+pc : (r0+i)*lda+pc+kb]
			for p, v := range src {
				panel[p*mr+i] = v
			}
		}
		for i := rows; i < mr; i++ {
			for p := 0; p < kb; p++ {
				panel[p*mr+i] = 0
			}
		}
	}
}

// packB copies the kb×nb block of op(B) starting at row pc, column jc into
// dst as consecutive nr-wide panels: element (p, j) of panel q lands at
// dst[q·nr·kb + p·nr + j]. Columns past nb are zero. With trans, B is stored
// n×k (op(B) = Bᵀ).
func packB[T float](trans bool, b []T, ldb, pc, jc, kb, nb, nr int, dst []T) {
	for q := 0; q*nr < nb; q++ {
		cols := min(nr, nb-q*nr)
		panel := dst[q*nr*kb : (q+1)*nr*kb]
		c0 := jc + q*nr
		if !trans {
			// Row p of B is contiguous: copy nr at a time.
			for p := 0; p < kb; p++ {
				src := b[(pc+p)*ldb+c0 : (pc+p)*ldb+c0+cols]
				d := panel[p*nr : p*nr+nr]
				copy(d, src)
				clear(d[cols:])
			}
			continue
		}
		for j := 0; j < cols; j++ {
			src := b[(c0+j)*ldb+pc : (c0+j)*ldb+pc+kb]
			for p, v := range src {
				panel[p*nr+j] = v
			}
		}
		for j := cols; j < nr; j++ {
			for p := 0; p < kb; p++ {
				panel[p*nr+j] = 0
			}
		}
	}
}
