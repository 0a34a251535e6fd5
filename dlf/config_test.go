package dlf

import (
	"errors"
	"strings"
	"testing"
)

func TestPresetsValidate(t *testing.T) {
	for _, name := range PresetNames() {
		c, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("preset %s: %v", name, err)
		}
		back, err := ParseConfig([]byte(c.JSON()))
		if err != nil {
			t.Errorf("preset %s: JSON round trip: %v", name, err)
		}
		if back != c {
			t.Errorf("preset %s: JSON round trip changed the config:\n%+v\n%+v", name, c, back)
		}
	}
	for alias, want := range map[string]string{"cifar10-k2": "cifar10", "imagenet32x32": "imagenet32", "celeba": "celeba256"} {
		a, err := Preset(alias)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Preset(want)
		if a != b {
			t.Errorf("alias %s differs from %s", alias, want)
		}
	}
	if _, err := Preset("nope"); err == nil || !strings.Contains(err.Error(), "mnist") {
		t.Errorf("unknown preset: error %v should list the presets", err)
	}
}

// TestPresetValues pins the reference runs' hyper-parameters (dlf-spec §3, §5).
func TestPresetValues(t *testing.T) {
	type row struct {
		levels, depth, width, parts, batch, bits int
		flow, invconv                            string
		lr                                       float64
		bias                                     bool
	}
	want := map[string]row{
		"mnist":          {2, 32, 128, 2, 256, 8, FlowDLF, InvConvFull, 0.05, false},
		"fashion-mnist":  {2, 32, 128, 2, 256, 8, FlowDLF, InvConvFull, 0.05, false},
		"cifar10":        {3, 32, 512, 2, 32, 8, FlowDLF, InvConvFull, 0.05, false},
		"cifar10-k4":     {3, 32, 308, 4, 32, 8, FlowDLF, InvConvFull, 0.05, false},
		"cifar10-k6":     {3, 32, 256, 6, 32, 8, FlowDLF, InvConvFull, 0.05, false},
		"imagenet32":     {3, 32, 512, 2, 32, 8, FlowDLF, InvConvFull, 0.05, false},
		"imagenet64":     {4, 32, 384, 2, 24, 8, FlowDLF, InvConvFull, 0.05, true},
		"celeba256":      {6, 32, 128, 2, 4, 8, FlowDLF, InvConvFull, 0.05, false},
		"glow-cifar10":   {3, 32, 512, 2, 64, 8, FlowGlow, InvConvLU, 0.001, false},
		"glow-celeba256": {6, 32, 512, 2, 1, 5, FlowGlow, InvConvLU, 0.001, false},
	}
	for name, w := range want {
		c, _ := Preset(name)
		got := row{c.Levels, c.Depth, c.Width, c.Parts, c.BatchSize, c.NumBits, c.Flow, c.InvConv, c.InitialLR, c.InvConvBias}
		if got != w {
			t.Errorf("%s: %+v, want %+v", name, got, w)
		}
	}
	c, _ := Preset("celeba256")
	if c.L2Factor != 0.1 {
		t.Errorf("celeba256 l2_factor %g, want 0.1", c.L2Factor)
	}
	g, _ := Preset("glow-cifar10")
	if g.WarmupEpochs != 10 || g.Coupling != CouplingAffine || g.Temperature != TemperatureAll {
		t.Errorf("glow-cifar10: warm-up %g, coupling %s, temperature %s", g.WarmupEpochs, g.Coupling, g.Temperature)
	}
	if s := g.Schedule(100); s.WarmupSteps != 1000 || s.LR(5000) != 0.001 {
		t.Errorf("glow schedule %+v: lr(5000) = %g", s, s.LR(5000))
	}
	d, _ := Preset("cifar10")
	if s := d.Schedule(100); s.LR(0) != 0.05 || s.LR(100000) != 0.005 {
		t.Errorf("dlf schedule: lr(0) = %g, lr(100000) = %g", s.LR(0), s.LR(100000))
	}
	if oc := g.OptimConfig(50); oc.Beta2 != 1-1.0/50 {
		t.Errorf("glow β2 with 50 iterations per epoch: %g", oc.Beta2)
	}
}

// TestValidateNamesEveryBadField checks that each bad field yields one error naming it.
func TestValidateNamesEveryBadField(t *testing.T) {
	cases := []struct {
		edit  func(c *Config)
		field string
		msg   string
	}{
		{func(c *Config) { c.Parts = 3 }, "num_parts", "one of 2, 4, 6, 8"},
		{func(c *Config) { c.Parts = 8 }, "num_parts", "does not divide the 12 channels at level 0"},
		{func(c *Config) { c.Levels = 6 }, "num_levels", "divisible by 64"},
		{func(c *Config) { c.ImageH = 28 }, "num_levels", "28×32"},
		{func(c *Config) { c.Decomposition = 2 }, "decomposition", "0 (non-inverse) or 1"},
		{func(c *Config) { c.AffineCoupling, c.Parts = true, 4 }, "affine_coupling", "num_parts 2"},
		{func(c *Config) { c.NumBits = 9 }, "num_bits_x", "1..8"},
		{func(c *Config) { c.Flow = "realnvp" }, "flow", "realnvp"},
		{func(c *Config) { c.Conditioning, c.NumClasses = true, 0 }, "num_classes", "conditioning"},
		{func(c *Config) { c.InvConv = "qr" }, "invconv", "qr"},
		{func(c *Config) { c.Width = 0 }, "width", "positive"},
		{func(c *Config) { c.Depth = 0 }, "depth", "at least 1"},
		{func(c *Config) { c.WeightDecay = 0 }, "weight_decay", "multiplicative"},
		{func(c *Config) { c.Temperature = "hot" }, "temperature_mode", "hot"},
		{func(c *Config) { c.L2Factor = -1 }, "l2_factor", "≥ 0"},
	}
	for _, tc := range cases {
		c := DefaultConfig()
		tc.edit(&c)
		err := c.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("%s: error %v is not a FieldError", tc.field, err)
			continue
		}
		if fe.Field != tc.field || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got %v, want field %s mentioning %q", tc.field, err, tc.field, tc.msg)
		}
		if n := strings.Count(err.Error(), "config field"); n != 1 {
			t.Errorf("%s: %d errors for one bad field: %v", tc.field, n, err)
		}
	}
	// Several bad fields: one error each.
	c := DefaultConfig()
	c.Parts, c.Depth, c.Optimizer = 5, -1, "sgd"
	if n := strings.Count(c.Validate().Error(), "config field"); n != 3 {
		t.Errorf("three bad fields gave %d errors: %v", n, c.Validate())
	}
	if _, err := ParseConfig([]byte(`{"num_levels": 3, "bogus": 1}`)); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown JSON field: %v", err)
	}
}

// TestParamNames pins the hierarchical names the checkpoint and the PyTorch twin rely on.
func TestParamNames(t *testing.T) {
	c, _ := Preset("mnist")
	c.Depth, c.Conditioning = 2, true
	names := map[string][]int{}
	for _, p := range c.ParamShapes() {
		names[p.Name] = p.Shape
	}
	want := map[string][]int{
		"level0.step0.invconv.weight":          {4, 4},
		"level0.step1.dlt.part0.h0":            {4},
		"level0.step1.dlt.part0.alpha":         {1},
		"level0.step1.dlt.part0.cond.weight":   {10, 4},
		"level0.step0.dlt.part1.conv1.weight":  {3, 3, 3, 128},
		"level0.step0.dlt.part1.actnorm1.bias": {128},
		"level0.step0.dlt.part1.conv2.weight":  {1, 1, 128, 128},
		"level0.step0.dlt.part1.conv3.weight":  {3, 3, 129, 4},
		"level0.step0.dlt.part1.conv3.logs":    {4},
		"level0.step0.dlt.part1.beta":          {1},
		"level0.split.conv.weight":             {3, 3, 3, 4},
		"level1.step1.invconv.weight":          {8, 8},
		"top.conv.weight":                      {3, 3, 17, 16},
		"top.cond.weight":                      {10, 16},
	}
	for name, shape := range want {
		got, ok := names[name]
		if !ok {
			t.Errorf("no parameter %s", name)
			continue
		}
		if len(got) != len(shape) {
			t.Errorf("%s: shape %v, want %v", name, got, shape)
			continue
		}
		for i := range got {
			if got[i] != shape[i] {
				t.Errorf("%s: shape %v, want %v", name, got, shape)
				break
			}
		}
	}
	g, _ := Preset("glow-mnist")
	g.Depth = 1
	gn := map[string]bool{}
	for _, p := range g.ParamShapes() {
		gn[p.Name] = p.Trainable
	}
	for name, trainable := range map[string]bool{
		"level0.step0.actnorm.bias": true, "level0.step0.actnorm.initialized": false,
		"level0.step0.invconv.lower": true, "level0.step0.invconv.perm": false, "level0.step0.invconv.sign_s": false,
		"level0.step0.coupling.conv1.weight": true, "level0.step0.coupling.actnorm2.initialized": false,
	} {
		if tr, ok := gn[name]; !ok || tr != trainable {
			t.Errorf("glow: %s present=%v trainable=%v, want trainable=%v", name, ok, tr, trainable)
		}
	}
}
