// Package dlf implements Dynamic Linear Flow (Liao, He, Shu 2019, arXiv 1905.03239) and its baseline
// Glow (Kingma & Dhariwal 2018) on dlf's tensor library and autodiff: the flow layers, the
// multi-scale model with its exact log-likelihood, sampling, encoding and decoding, and the presets of
// the reference runs. The math follows the reference TensorFlow code as recorded in
// shared/reference/dlf-spec.md (cited as "dlf-spec §n" in comments).
//
// # Model
//
// New builds a Model from a Config (see Preset for the reference runs; Config.Validate names every bad
// field). Images go through Preprocess (n_bits, scaling to [−0.5, 0.5), Philox uniform
// dequantisation), then Forward computes the per-example objective
//
//	obj = −D·ln(n_bins) + Σ log|det J| + Σ log p(latents),   bits/dim = −obj / (D·ln 2),
//
// and the loss mean(bits/dim) + (l2_factor/n_W)·Σ ½W² (dlf-spec §2.7) on an autodiff tape. Encode,
// Decode, DecodeEps, Sample and Interpolate work without a tape. A flow step is invertible 1x1 conv →
// DLT for DLF (dlf-spec §2.4) and actnorm → invertible 1x1 conv → coupling for Glow (dlf-spec §5);
// every step, split prior and top prior keeps its tensors under hierarchical names
// (level{l}.step{s}.invconv.weight, level{l}.step{s}.dlt.part{k}.conv1.weight, level{l}.split.…,
// top.…) that checkpoints (State, LoadState) and the PyTorch twin reference/dlf_torch.py share.
//
// With Config.Recompute each step is recorded as a reversible op: the forward keeps no activations
// and the backward rebuilds each step's input by inverting it from its output, so activation memory
// is flat in depth (TestRecomputeMemory) at the price of one inverse and one extra forward per step.
//
// # Verification
//
// The tests check, in float64 on tiny inputs, that every layer and whole 2-level models (both
// decompositions, K = 2 and 4, affine-coupling, conditional and Glow modes) invert exactly, that their
// log-determinants equal log|det| of the brute-force Jacobian, and that their gradients match finite
// differences; that the recomputing backward matches the storing one; that reference/dlf_torch.py
// computes the same objective and latents in PyTorch; and that a small model overfits 64 MNIST
// images.
//
// # Deliberate deviations from the reference
//
//   - Parts: only the equal contiguous split is implemented; the reference's --splitting options are
//     not (option 2 is broken there, dlf-spec §1.1).
//   - Conditioning (--conditioning): the reference's Dense(h → 2·C) projections of the one-hot label
//     into every hyper-network and first-part vector, and a linear map into the top prior (Glow's
//     ycond), are initialised to zero so that conditioning changes nothing at initialisation; the
//     reference's initialiser for them is not recorded. The --ycond classifier on the top latent
//     (bits_y, weight_y) is not implemented. In Glow mode the label conditions only the top prior, as
//     Glow's ycond does.
//   - Initialisation: Config.Init "identity" (output-conv bias 0, β = 0) is offered next to the
//     reference's (bias 1, β = −3, dlf-spec §2.8), which contracts every dimension by e^−2.2…e^−3 per
//     step at initialisation, and "data" (identity, with the hyper-networks' actnorms initialised
//     from data as Glow's are, instead of the reference's fixed logs −1; DataInit). The 1x1
//     conv's random orthogonal matrix has its column signs fixed by R's diagonal (Haar-distributed)
//     where Glow takes numpy's Q as is. Random draws use Go's PCG, so values differ from
//     TensorFlow's for the same seed; distributions are the same.
//   - Glow presets keep MNIST at 28×28×1, the size the DLF runs use, instead of Glow's 32×32×3 padding
//     (dlf-spec §2.10), so that the two models are compared on the same data; their data-dependent
//     actnorm initialisation uses whatever batch DataInit is given (Glow uses 256 images), and its
//     "initialised" flag is a checkpointed buffer per actnorm (…actnorm.initialized).
//   - The reference's learning-rate "warm-up" (a broken LR search, dlf-spec §3.1) is not reproduced;
//     Config.WarmupEpochs is Glow's linear ramp. Beta2 = 0 selects Glow's 1 − 1/(iterations per epoch).
//   - Dequantisation noise comes from Philox-4x32-10 (24-bit uniforms), so the same seed gives the
//     same batch on every backend; TensorFlow's generator is not reproduced.
//   - The objective is per example and NaN-propagating; the reference's NaN-dropping nanmean
//     (dlf-spec §2.7) is the trainer's decision, not the model's.
//   - Recompute follows Glow's --gradient_checkpointing (DLF itself does not checkpoint) but rebuilds
//     inputs by inversion instead of re-running from stored checkpoints; gradients agree with the
//     storing backward to rounding (TestRecomputeGradients) where the inversion is well conditioned;
//     an affine coupling whose scale σ(h+2) is tiny loses precision or overflows there (the trainer
//     then stops the step, naming the backward op).
//   - With the LU 1x1 conv (Config.InvConv "lu", used by the glow-* presets) the L2 term applies to the
//     composed W; the reference only has the L2 term with the full form.
//   - The full 1x1 conv's log|det W| and W⁻ᵀ (its gradient) are computed on the host in float64, as
//     the reference computes log|det W| in float64: one C×C download per step and pass, which is a
//     device synchronisation on CUDA. The LU form keeps everything on the device.
//   - h0 of the first DLT part is stored flat, [2·C_1], instead of the reference's [1,1,1,2·C_1].
//   - A singular 1x1-conv matrix gives a −Inf log-determinant (and NaN loss) in the forward pass and an
//     error from Decode, instead of TensorFlow's "Input is not invertible" exception.
package dlf
