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
	fastLR           = 1e-3 // Adam, constant after the warm-up
	fastWarmupEpochs = 0.1  // about 94 steps of 64 MNIST images
)

// ApplyRecipe sets c's training hyper-parameters — optimizer, learning rate and schedule,
// warm-up, DLT initialisation, gradient clipping and whether evaluation uses the moving average —
// to the named recipe, leaving the model's shape alone. Apply it to a preset's config before
// explicit flags, so a flag still overrides one setting.
//
// RecipeFast: Adam at fastLR after a fastWarmupEpochs linear warm-up, no decay; the identity DLT
// initialisation (about 9.5 bits/dim on MNIST at step 0 instead of the reference init's 55); no
// gradient clipping: runs with and without a clip at norm 10 differed by run-to-run noise only over
// 1000 steps (docs/results.md, "Recipe"), so clipping stays opt-in (--clip_grad_norm) until a longer
// comparison decides. The moving average warms its decay up
// (Config.PolyakWarmup). Evaluation uses the raw weights: the moving average
// (--eval_average) was measured worse early in a run (8.96 against 4.18 test bits/dim at step 250),
// because a 0.999 average started at the initial weights still holds 78% of them after 250 steps.
// Glow keeps its data-dependent actnorm initialisation and gets the same optimizer settings.
func ApplyRecipe(c *Config, name string) error {
	switch name {
	case RecipeReference:
		return nil
	case RecipeFast:
		c.Optimizer = OptimAdam
		c.InitialLR, c.LR = fastLR, fastLR
		c.DecayRate, c.DecaySteps = 1, 1000
		c.WarmupEpochs = fastWarmupEpochs
		c.ClipGradNorm = 0
		c.PolyakWarmup = true // only the average kept in checkpoints (and --eval_average) see it
		if c.Flow == FlowDLF {
			c.Init = InitIdentity
		}
		return nil
	}
	return fmt.Errorf("recipe %q is not one of %s", name, strings.Join(Recipes(), ", "))
}
