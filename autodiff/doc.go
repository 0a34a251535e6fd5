// Package autodiff is dlf's small reverse-mode automatic differentiation over tensor values.
//
// # Model
//
// A Var holds a value tensor, a requires-grad flag and, for leaves that require gradients (the
// parameters), an accumulated gradient. A Tape is an explicit object (never package state) that
// records the ops applied to Vars in order; Backward walks the records in reverse, hands each op the
// gradients of its outputs, accumulates the gradients it returns into its inputs, and releases what
// the op saved and every gradient nobody needs any more as soon as it can. Leaf gradients accumulate
// across Backward calls until ZeroGrad, as optimizers expect.
//
// An op is recorded only when the tape records and at least one input requires a gradient; a nil
// Tape, or one from NoGrad, computes values only (evaluation, sampling, the numerical side of
// gradient checks). A Tape is used for one forward/backward pass: Backward consumes it.
//
// # Ownership
//
// Each Var owns one reference to its value (tensor storage is reference counted). Ops that need a
// tensor in their backward take their own reference to it, so a caller may Release any intermediate
// Var as soon as it has been fed to the ops that consume it; that is how the model keeps device
// memory down. Values an op's backward reads lazily (Context.Input, Context.Output) must still be
// alive then, or rebuilt by a downstream op (below). Gradients handed to a backward are read-only.
//
// # Ops
//
// The differentiable ops are methods of Tape: elementwise add/sub/mul/div with broadcasting of the
// second operand (full, per-channel, per-example or scalar; its gradient is reduced with
// tensor.Reduce over the broadcast axes), scale, add-constant, exp, log, tanh, sigmoid, relu, square,
// sum and mean reductions, reshape, channel slice/split/concat, squeeze2/unsqueeze2, matmul (GEMM),
// conv2d with bias and edge bias, and the flow kernels ActNorm, Affine and GaussianLogProb, whose
// backward is the tensor library's fused kernel.
//
// # Custom ops and recomputation
//
// Custom records an op whose forward the caller computed and whose backward is hand-written. Its
// Context gives the saved tensors, the current input and output values, and RestoreInput, which
// hands a rebuilt input value back to the tape. That is how an invertible layer keeps only its
// output: its backward inverts y to x, restores x for the op that produced it (which reads it as its
// own output), and the tape frees x once that producer has run. Reversible packages the pattern for
// any layer written with Tape ops plus an inverse: the forward runs without recording, and the
// backward inverts, re-runs the forward on a private tape and backpropagates through it, so a chain
// of L reversible layers holds O(1) activations instead of O(L) (see TestPeakMemory).
//
// # Gradient checks
//
// GradCheck compares Backward against fourth-order central differences in float64, for use by this
// package's tests and by the layers built on it.
package autodiff
