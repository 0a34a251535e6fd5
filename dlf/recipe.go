package dlf

import (
	"fmt"
	"strings"
)

// The training recipes of ApplyRecipe.
const (
	// RecipeFast is dlf's default: chosen from measured MNIST curves for learning per hour
	// (docs/results.md, "Recipe").
	RecipeFast = "fast"
	// RecipeReference keeps each preset's published recipe: DLF's Adamax at 0.05 decaying ×0.93
	// per 1000 steps from the reference initialisation (dlf-spec §3.1, §2.8), Glow's Adamax at 1e-3
	// after a 10-epoch warm-up (dlf-spec §5), raw weights evaluated, no clipping.
	RecipeReference = "reference"
)

// Recipes lists the recipe names.
func Recipes() []string { return []string{RecipeFast, RecipeReference} }

// The fast recipe's settings (docs/results.md, "Recipe", has the curves they were chosen from).
const (
	fastLR           = 1e-3 // Adam's rate after the warm-up
	fastWarmupEpochs = 0.1  // about 94 steps of 64 MNIST images
	fastDecayRate    = 0.5  // the rate halves every fastDecaySteps steps (continuously) ...
	fastDecaySteps   = 4000 // ... about 4 MNIST epochs at batch 64
	fastFloorLR      = 1e-4 // ... down to this floor
	// fastClipNorm bounds the global gradient norm. With the identity init it is about 5× the norm
	// of ordinary early steps, 3.9 (TestRecipeClipIsAGuard), a guard against spikes; with InitData
	// the ordinary norms are 100–200 on MNIST (spikes to 2640 in the first 400 steps), so it rescales
	// every step to length 20 — Adam is invariant to a constant gradient scale, so that amounts to
	// weighting every step alike. That is the setting the study's data-init runs were measured with
	// (docs/results.md, "Study"); whether a guard-level bound learns better is not measured.
	fastClipNorm = 20
	// fastGlowLR is Glow's rate after the warm-up: at fastLR the study's Glow run (docs/results.md,
	// "Study") diverged at step 1629 — a finite loss whose update left the first actnorm's bias
	// non-finite — while DLF trains stably at fastLR. Fashion-MNIST later diverged the same way at
	// this rate; the cause was the recomputing backward pass (see ApplyRecipe), not the rate, and
	// with activations kept the rate is kept too, as the study's curves were measured at it.
	fastGlowLR = 5e-4
)

// ApplyRecipe sets c's training hyper-parameters — optimizer, learning rate and schedule,
// warm-up, DLT initialisation, gradient clipping and whether evaluation uses the moving average —
// to the named recipe, leaving the model's shape alone. Apply it to a preset's config before
// explicit flags, so a flag still overrides one setting.
//
// RecipeFast: Adam at fastLR after a fastWarmupEpochs linear warm-up, then halving every
// fastDecaySteps steps down to fastFloorLR; the identity DLT initialisation (about 9.5 bits/dim on
// MNIST at step 1 instead of the reference init's 55) with the hyper-networks' actnorms initialised
// from data (InitData); the global gradient norm clipped at
// fastClipNorm; test evaluation and sample grids with the parameters' moving average (decay 0.999,
// warmed up as min(0.999, (1+t)/(10+t))); activations kept for the backward pass (Recompute off).
// Why each (docs/results.md, "Recipe"): the initialisation
// and Adam at 1e-3 gave 3.29 test bits/dim at step 500 where the reference recipe gave 6.07, and 2e-3
// was worse than 1e-3; but a 60-minute run at a constant 1e-3 evaluated on the raw weights had
// training-loss spikes (5.37 at step 5000) and its test bits/dim jumped from 2.26 to 3.14 between
// epochs 5 and 6 — the decay, the clip and the averaged weights address exactly that. The data
// initialisation of the hyper-networks' actnorms (DLF's fixed one scales their hidden activations
// by exp(−3)) then lowered DLF K=2's test bits/dim at every evaluation of the 20-minute study runs,
// e.g. at step 1500 2.530 → 2.376 on MNIST and 4.451 → 3.950 on Fashion-MNIST. Glow keeps its
// data-dependent actnorm initialisation and gets the same optimizer settings at half the rate,
// fastGlowLR. Recompute is off because Glow's presets turn it on, and rebuilding a step's input by
// inverting its affine coupling divides by the coupling's scale σ(h+2): where that is tiny the
// forward pass and the loss are fine but the rebuilt input overflows. Fashion-MNIST's Glow run
// stopped so at step 1691 (the backward pass's affine_inverse in level1.step0.coupling; the same
// resume with activations kept trained on), and recomputing cost Glow on the CPU
// (167 against 262 images/s, one core: 1.57×, docs/perf.md). --recompute still turns it on where memory needs it.
func ApplyRecipe(c *Config, name string) error {
	switch name {
	case RecipeReference:
		return nil
	case RecipeFast:
		c.Optimizer = OptimAdam
		c.InitialLR, c.LR = fastLR, fastFloorLR
		c.DecayRate, c.DecaySteps = fastDecayRate, fastDecaySteps
		c.WarmupEpochs = fastWarmupEpochs
		c.ClipGradNorm = fastClipNorm
		if c.PolyakDecay == 0 {
			c.PolyakDecay = 0.999
		}
		c.PolyakWarmup = true
		c.EvalAverage = true
		c.Recompute = false
		if c.Flow == FlowDLF {
			c.Init = InitData
		}
		if c.Flow == FlowGlow {
			c.InitialLR = fastGlowLR
		}
		return nil
	}
	return fmt.Errorf("recipe %q is not one of %s", name, strings.Join(Recipes(), ", "))
}
