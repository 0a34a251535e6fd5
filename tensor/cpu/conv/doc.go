// Package conv implements the stride-1 "SAME" 2-D convolutions of the CPU
// backend, forward and backward, for NHWC activations and HWIO weights,
// lowered to the GEMM of package gemm.
//
// # Layouts
//
// Activations are NHWC row-major: x[((n·H + h)·W + w)·C + c]. Weights are
// HWIO, [K][K][Cin'][Cout] row-major (TensorFlow's layout), which reshaped
// is exactly the [K·K·Cin', Cout] B matrix of the lowered GEMM. The kernel
// size K is odd and the padding is p = (K−1)/2 on every side, so the output
// has the input's spatial size.
//
// Slices whose lengths do not match Params, and malformed Params (a
// non-positive size, an even K), are programming errors inside the backend
// and panic with a message naming the function, the slice and the sizes.
//
// # Edge bias
//
// With Params.EdgeBias the input is conceptually padded with zeros and given
// one extra channel that is 1 at padded border positions and 0 inside
// (Glow's trick, dlf-spec.md §1.6; Kingma & Dhariwal 2018, openai/glow's
// add_edge_padding), so Cin' = Cin + 1 and the last input channel of the
// weight multiplies that indicator. The channel is never materialised: the
// im2col step writes the indicator directly into each patch row. With K = 1
// there is no padding, the indicator is always 0, and the GEMM simply skips
// the weight's last input row.
//
// # Lowering
//
//	Forward:          Y[N·H·W, Cout]     = col(X)[N·H·W, K·K·Cin'] · W[K·K·Cin', Cout] (+ bias)
//	BackwardData:     dX = SAME conv of dY with the flipped, transposed kernel
//	                  Wᵀ[kh][kw][co][ci] = W[K−1−kh][K−1−kw][ci][co] (ci < Cin)
//	BackwardWeights:  dW[K·K·Cin', Cout] = col(X)ᵀ · dY
//	BackwardBias:     db[co] = Σ_rows dY[row, co]
//
// For K = 1 the input itself is the GEMM operand and no copy is made.
// Backward-data as a convolution with the transposed kernel reuses the
// forward path and avoids col2im's scattered accumulation.
//
// # Parallelism and memory
//
// The weight (or the flipped weight, for BackwardData) is packed once per
// call into the GEMM's panel layout and shared by all goroutines. The
// N·H·W output rows are divided statically among Params.Threads goroutines
// and each goroutine walks its rows in blocks whose patch matrix fits in a
// fixed scratch budget (colBudget = 192 KiB, sized so that the patches, the
// GEMM's working set and the output rows sit in one core's 1 MiB L2 on the
// Zen 4 machine this was tuned on), rounded to the GEMM's row tile; it
// builds a block's patches and multiplies them with a single-threaded GEMM
// that reads them in place while they are still in cache, then adds the
// bias to the block's output rows. Wide layers whose patch rows overflow the
// budget still take blocks of at least minBlockRows (64) rows, and weight
// gradients at least minDepthRows (256), because each block streams the
// packed weight (forward) or reads and writes the whole weight gradient
// (backward) once; scratch is therefore bounded by
// max(colBudget, 256·K·K·Cin'·size) per goroutine whatever the batch size.
// Weight and bias gradients are summed per goroutine and reduced in a fixed
// order, so results are deterministic for a given thread count. Scratch
// buffers and packed weights come from sync.Pools, so the steady state does
// not allocate large buffers.
package conv
