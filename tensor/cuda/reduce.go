package cuda

import (
	"fmt"

	"dlf/tensor"
	"dlf/tensor/cuda/cu"
)

// Reduce writes Sum, Mean or SumSq of src over the given axes into dst: pass 1 writes double
// partials per (output, block) (reduce_rows_f32 for AxisAll/AxisExample, reduce_cols_f32 for
// AxisChannel), pass 2 (reduce_finish_f32) adds them in order, so the result is deterministic and,
// with double accumulation, accurate for large tensors.
func (b *Backend) Reduce(op tensor.ReduceOp, axes tensor.ReduceAxes, dst, src *tensor.Tensor) {
	if op < tensor.Sum || op > tensor.SumSq {
		panic(fmt.Sprintf("cuda: unknown reduction %d", op))
	}
	s := src.Shape()
	total := int64(src.Numel())
	var rows, per int64 // outputs and elements reduced into each
	switch axes {
	case tensor.AxisAll:
		rows, per = 1, total
	case tensor.AxisExample:
		rows = int64(s[0])
		if rows > 0 {
			per = total / rows
		}
	case tensor.AxisChannel:
		r, c := s.Rows()
		rows, per = int64(c), int64(r)
	default:
		panic(fmt.Sprintf("cuda: unknown reduction axes %d", axes))
	}
	if rows == 0 {
		return
	}
	square := b32(op == tensor.SumSq)
	divisor := int64(1)
	if op == tensor.Mean {
		divisor = per // 0 elements: 0/0 = NaN, like the float64 reference
	}
	b.run("Reduce", func() error {
		var parts int
		var part *buffer
		var err error
		if axes == tensor.AxisChannel {
			if err := checkInt32("Reduce channels", rows); err != nil {
				return err
			}
			var tiles int
			var chunk int64
			tiles, parts, chunk = colParts(per, int(rows))
			if part, err = b.scratch(8 * rows * int64(parts)); err != nil {
				return err
			}
			defer b.alloc.put(part)
			err = b.k.ReduceColsF32(b.stream, cu.Dim3{X: uint32(tiles), Y: uint32(parts), Z: 1}, block1D, 0,
				part.ptr, dptr(src), per, int32(rows), chunk, square)
		} else {
			var chunk int64
			parts, chunk = rowParts(rows, per)
			if part, err = b.scratch(8 * rows * int64(parts)); err != nil {
				return err
			}
			defer b.alloc.put(part)
			err = b.k.ReduceRowsF32(b.stream, rowGrid(rows, parts), block1D, 0, part.ptr, dptr(src), per, chunk, square)
		}
		if err != nil {
			return err
		}
		jstride, pstride := int64(parts), int64(1) // RowPart layout [row][p]
		if axes == tensor.AxisChannel {
			jstride, pstride = 1, rows // ColPart layout [p][c]
		}
		return b.k.ReduceFinishF32(b.stream, grid1D(rows), block1D, 0, dptr(dst), part.ptr, rows, int32(parts),
			jstride, pstride, 1, divisor, 0)
	})
}

// finish adds count rows of parts partials into dst (scale ±1, accumulate) — the second pass of the
// fused kernels' per-example sums. Call on the worker.
func (b *Backend) finish(dst cu.DevicePtr, part *buffer, count int64, parts int, scale float32, accumulate bool) error {
	return b.k.ReduceFinishF32(b.stream, grid1D(count), block1D, 0, dst, part.ptr, count, int32(parts), int64(parts), 1,
		scale, 1, b32(accumulate))
}
