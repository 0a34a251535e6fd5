// Package fault marks the places in the training engine where a crash-safety test stops the process:
// in the middle of a step, at each stage of a checkpoint write, between the checkpoint and the test
// evaluation, during the evaluation, the sample grids, best.safetensors and a CSV append, and in a
// data-parallel rank's step.
//
// In a normal build Point does nothing and costs nothing (it is an empty function the compiler
// inlines away). Built with the tag `faultinject`, Point reads the environment variable DLF_FAULT,
// "phase:kind[:hit]", and on the hit-th time (default 1) the named phase is reached it stops the
// process the way a user or the machine would:
//
//   - kind "kill": SIGKILL to the process itself, as `kill -9`, a power cut or the OOM killer does;
//     nothing after the point runs, no deferred function, no flush;
//   - kind "interrupt": SIGINT to the process itself, as Ctrl-C does, then a short pause so that the
//     signal handler has run before the code goes on; the run must then stop gracefully;
//   - kind "stop": SIGSTOP to the process itself: alive but silent, as a hung rank is, until a
//     SIGCONT or a kill (the other ranks' collective timeout must catch it).
//
// Only tests build with the tag (train's fault-injection matrix builds bin/driver with it), so no
// release binary reads DLF_FAULT.
package fault

// Phases, named by where they are reached. A data-parallel rank's step is RankStep followed by the
// rank number ("rank_step1").
const (
	// Step: inside a training step, after backward and before the optimizer update.
	Step = "step"
	// CheckpointWritten, CheckpointSynced, CheckpointRenamed: a rolling checkpoint's temporary file
	// is written but not fsynced; fsynced but not renamed; renamed but its directory not fsynced.
	CheckpointWritten = "ckpt_written"
	CheckpointSynced  = "ckpt_synced"
	CheckpointRenamed = "ckpt_renamed"
	// BeforeTest: the epoch-end checkpoint is saved, the test evaluation has not started.
	BeforeTest = "before_test"
	// TestBatch: during the test evaluation, after a batch.
	TestBatch = "test_batch"
	// Samples: between two sample grids (or a grid and the loss plot) of an epoch end.
	Samples = "samples"
	// BestWritten, BestSynced, BestRenamed: the stages of writing best.safetensors.
	BestWritten = "best_written"
	BestSynced  = "best_synced"
	BestRenamed = "best_renamed"
	// CSVAppend: half of a CSV row is written and flushed to the file.
	CSVAppend = "csv_append"
	// RankStep: inside data-parallel rank r's step, after its forward pass ("rank_step0", …).
	RankStep = "rank_step"
)
