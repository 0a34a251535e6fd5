package dlf

import (
	"testing"
)

func TestApplyRecipe(t *testing.T) {
	cfg, _ := Preset("mnist")
	ref := cfg
	if err := ApplyRecipe(&ref, RecipeReference); err != nil || ref != cfg {
		t.Fatalf("the reference recipe changed the preset (%v)", err)
	}
	fast := cfg
	if err := ApplyRecipe(&fast, RecipeFast); err != nil {
		t.Fatal(err)
	}
	if fast.Optimizer != OptimAdam || fast.Init != InitIdentity || !fast.EvalAverage || !fast.PolyakWarmup || fast.ClipGradNorm != fastClipNorm ||
		fast.Depth != cfg.Depth || fast.Width != cfg.Width {
		t.Fatalf("fast recipe: %+v", fast)
	}
	if err := fast.Validate(); err != nil {
		t.Fatal(err)
	}
	glow, _ := Preset("glow-mnist")
	if err := ApplyRecipe(&glow, RecipeFast); err != nil || glow.Init != "" && glow.Init != InitReference {
		t.Fatalf("fast recipe on Glow: init %q, %v", glow.Init, err)
	}
	if err := ApplyRecipe(&cfg, "warp"); err == nil {
		t.Fatal("unknown recipe accepted")
	}
}
