package optim

import (
	"fmt"
	"strings"

	"dlf/tensor"
	"dlf/tensor/safetensors"
)

// Metadata keys SaveCheckpoint sets; callers add their own (model config, step, RNG state, data
// position) under other keys.
const (
	MetaOptimizer = "optimizer"
	MetaEMA       = "ema"
)

// SaveCheckpoint writes params (under their names), the optimizer's moments and the EMA averages
// (when opt and ema are non-nil) and meta to path, atomically (safetensors.Write). The optimizer and
// EMA host state go into meta under MetaOptimizer and MetaEMA.
func SaveCheckpoint(path string, params []Param, opt *Optimizer, ema *EMA, meta map[string]string) error {
	ts, all, err := CheckpointContents(params, opt, ema, meta)
	if err != nil {
		return fmt.Errorf("optim: checkpoint %s: %w", path, err)
	}
	return safetensors.Write(path, ts, all)
}

// CheckpointContents returns the tensors and metadata SaveCheckpoint writes, for callers that write
// the file themselves (e.g. through safetensors.WriteObserved).
func CheckpointContents(params []Param, opt *Optimizer, ema *EMA, meta map[string]string) ([]safetensors.HostTensor, map[string]string, error) {
	all := map[string]string{}
	for k, v := range meta {
		all[k] = v
	}
	if ema != nil && ema.Swapped() {
		return nil, nil, fmt.Errorf("EMA averages are swapped in; swap them out first")
	}
	var ts []safetensors.HostTensor
	for _, p := range params {
		ts = append(ts, safetensors.FromTensor(p.Name, p.Var.Value))
	}
	add := func(state string, named []Named, key string) {
		all[key] = state
		for _, n := range named {
			ts = append(ts, safetensors.FromTensor(n.Name, n.Tensor))
		}
	}
	if opt != nil {
		s, named := opt.State()
		add(s, named, MetaOptimizer)
	}
	if ema != nil {
		s, named := ema.State()
		add(s, named, MetaEMA)
	}
	return ts, all, nil
}

// LoadCheckpoint reads path and restores params, and the optimizer and EMA state when opt and ema are
// non-nil, checking every tensor's dtype and shape. Every other tensor in the file is an error (it
// means the model does not match the checkpoint), except optimizer ("opt.*") or EMA ("ema.*") state
// when opt or ema is nil. It returns the file's metadata for
// the caller's own keys.
func LoadCheckpoint(path string, params []Param, opt *Optimizer, ema *EMA) (map[string]string, error) {
	f, err := safetensors.Read(path)
	if err != nil {
		return nil, err
	}
	if ema != nil && ema.Swapped() {
		return nil, fmt.Errorf("optim: loading %s: EMA averages are swapped in; swap them out first", path)
	}
	claimed := map[string]bool{}
	load := func(name string, dst *tensor.Tensor) error {
		claimed[name] = true
		return f.Load(name, dst)
	}
	for _, p := range params {
		if err := load(p.Name, p.Var.Value); err != nil {
			return nil, err
		}
	}
	if opt != nil {
		if err := opt.Restore(f.Meta[MetaOptimizer], load); err != nil {
			return nil, fmt.Errorf("optim: loading %s: %w", path, err)
		}
	}
	if ema != nil {
		if err := ema.Restore(f.Meta[MetaEMA], load); err != nil {
			return nil, fmt.Errorf("optim: loading %s: %w", path, err)
		}
	}
	for _, name := range f.Names() {
		// State the caller chose not to restore (sampling needs no moments) may stay unread.
		skipped := (opt == nil && strings.HasPrefix(name, "opt.")) || (ema == nil && strings.HasPrefix(name, "ema."))
		if !claimed[name] && !skipped {
			return nil, &safetensors.Error{Path: path, Tensor: name, Msg: "is not a parameter or optimizer state of this model (wrong configuration?)"}
		}
	}
	return f.Meta, nil
}
