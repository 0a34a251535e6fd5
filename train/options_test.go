package train

import (
	"strings"
	"testing"
	"time"
)

// TestOptionsValidate checks that the defaults are valid and that every bad option is refused with
// a message naming its flag.
func TestOptionsValidate(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range []struct {
		edit func(*Options)
		want string
	}{
		{func(o *Options) { o.Results = "" }, "--results_dir is empty"},
		{func(o *Options) { o.Device = "auto" }, `--device "auto"`},
		{func(o *Options) { o.Ranks = 0 }, "--num_gpus 0"},
		{func(o *Options) { o.NumEpoch = 0 }, "--num_epoch 0"},
		{func(o *Options) { o.MaxSteps = -1 }, "--max_steps -1 is negative"},
		{func(o *Options) { o.MaxTime = -time.Second }, "--max_time -1s is negative"},
		{func(o *Options) { o.NaNPolicy = "retry" }, `--nan_policy "retry"`},
		{func(o *Options) { o.KeepCheckpoints = 0 }, "--keep_checkpoints 0"},
		{func(o *Options) { o.CheckpointEvery = 0 }, "--checkpoint_every 0s"},
		{func(o *Options) { o.LogEvery = 0 }, "--print_per_steps 0"},
		{func(o *Options) { o.TestEvery = 0 }, "--test_per_epochs 0"},
		{func(o *Options) { o.ValidEvery = -2 }, "--valid_per_steps -2"},
		{func(o *Options) { o.SampleEvery = -1 }, "--sample_per_epochs -1"},
		{func(o *Options) { o.Workers = 0 }, "--workers 0"},
	} {
		o := DefaultOptions()
		c.edit(&o)
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error containing %q, got %v", c.want, err)
		}
	}
}
