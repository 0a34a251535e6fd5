// Package bench measures dlf against the machine's limits: the per-layer probe of a model's
// training step (each backend op timed and attributed to its layer, with GFLOP/s, GB/s and the
// fraction of the roofline floor), the machine floors themselves, the PyTorch twin run on the same
// configuration, and the ring all-reduce timed as nccl-tests times it.
//
// Figures are ratios against a floor or a baseline measured in the same process: FLOPs ÷ peak rate
// and bytes ÷ bandwidth give the floor of an op (DESIGN.md, "Performance method"); medians are
// quoted. bin/driver bench is the command-line front end.
package bench
