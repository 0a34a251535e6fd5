// Package train is dlf's training engine as a library: give it a model configuration, the data and
// a results directory, and it trains — resuming where an earlier run on that directory stopped,
// averaging gradients across data-parallel replicas, recovering from divergence, checkpointing, and
// reporting through callbacks.
//
//	job := train.Job{Config: cfg, Train: trainSet, Test: testSet, Options: train.DefaultOptions()}
//	job.Results, job.MaxSteps = "results/mnist", 1000
//	run, err := train.New(job, train.Hooks{Log: os.Stdout})
//	if err != nil { ... }
//	defer run.Close()
//	res, err := run.Train(ctx) // cancel ctx to stop after the current step, with a checkpoint
//
// What a results directory holds: checkpoints/step-NNNNNNNNN.safetensors (the newest
// Options.KeepCheckpoints), best.safetensors (the lowest test bits/dim), config.json, and the CSV
// logs train.csv, test.csv (the reference implementation's columns, dlf-spec §6.2, plus seconds)
// and steps.csv (one row every Options.LogEvery steps).
//
// Guarantees, each tested:
//   - Resume is exact. A run stopped at any moment — a cancelled context, SIGINT, SIGKILL — and
//     started again on the same directory continues from the newest checkpoint that loads and ends
//     with parameters bit-identical to a run never stopped (on the CPU), with one CSV row per step,
//     epoch and evaluation. The fault-injection matrix proves it phase by phase (train/fault,
//     train/faults_test.go).
//   - A checkpoint that does not load is moved aside as *.damaged and reported once, never deleted
//     and never counted toward KeepCheckpoints; incomplete writes of a killed process are removed
//     with a note; foreign files are reported and left alone.
//   - A non-finite loss never reaches the parameters: the step is abandoned, the op and layer that
//     produced the first NaN are named, and NaNPolicy decides between stopping and restoring the
//     last checkpoint at half the learning rate. A step that reads its loss (every CPU step, a
//     replayed or multi-process one) also checks its gradients before the update, so a finite loss
//     with non-finite gradients (an overflow in the backward pass) is caught the same way, with the
//     backward op named; a deferred CUDA step's bad update shows as a NaN loss later, and the
//     replay up to it stops at the bad step.
//   - With Ranks > 1 every replica stays bit-identical to rank 0 (checked at every checkpoint).
package train
