package train

import (
	"fmt"
	"time"
)

// Options are the settings of a training run besides the model configuration. Errors name each
// option by its command-line flag (bin/driver train --help documents them all).
type Options struct {
	// Results is the run's directory (--results_dir). A directory holding checkpoints is resumed.
	Results string
	// Device is "cpu" or "cuda" (device.Resolve turns "auto" into one of them).
	Device string
	// Ranks is the number of data-parallel replicas (--num_gpus): GPUs on CUDA, goroutine replicas
	// on the CPU. The config's batch size is per rank.
	Ranks int
	// VirtualGPUs puts every CUDA rank on GPU 0 (--virtual_gpus), for testing on one GPU.
	VirtualGPUs bool
	// Dist is how the ranks run (--dist): "inproc" (or ""), every rank in this process; "mpi", one
	// process per rank under mpirun (or srun), gradients averaged by Open MPI
	// (tensor/collective/mpi) from host buffers; "nccl", one GPU process per rank under mpirun,
	// torchrun or srun (RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS with MASTER_ADDR/MASTER_PORT),
	// gradients averaged by NCCL on the GPUs (tensor/collective/nccl). Rank 0 writes every output.
	// With "mpi" and "nccl", Ranks is the launcher's world size (0 or 1: take it from there).
	Dist string
	// CollectiveTimeout bounds how long a step (or another section whose collectives need every
	// rank) may wait for the other processes before the job is aborted with a message
	// (--collective_timeout). A lost rank that the launcher or the rendezvous notices ends the job
	// at once; the timeout catches a rank that is alive but stuck. It must exceed rank 0's test
	// evaluation, during which the other ranks wait.
	CollectiveTimeout time.Duration
	// NumEpoch is the number of epochs to train (--num_epoch).
	NumEpoch int
	// MaxSteps stops after this many optimizer steps in total (0: no limit).
	MaxSteps int
	// MaxTime stops after this much training time in this session (0: no limit).
	MaxTime time.Duration
	// NaNPolicy is what a non-finite loss does: "stop", or "lower_lr" (restore the last
	// checkpoint, halve the learning rate, continue).
	NaNPolicy string
	// KeepCheckpoints is how many rolling checkpoints are kept (besides best.safetensors).
	KeepCheckpoints int
	// CheckpointEvery also checkpoints this often within an epoch.
	CheckpointEvery time.Duration
	// RefreshEvery bounds how long a CUDA run's step metrics wait on the device before the host
	// reads them for Hooks.Step (the progress display); steps.csv rows, evaluations and
	// checkpoints read them anyway. 0 reads them only there, so that steps between print points
	// never wait for the GPU (deferred.go).
	RefreshEvery time.Duration
	// CUDAGraph replays each training step's forward and backward pass as one CUDA graph on a
	// single CUDA device (--cuda_graph; graphstep.go); off, every op is launched from Go. Losses,
	// parameters and checkpoints are the same bits either way.
	CUDAGraph bool
	// LogEvery is the number of steps between rows of steps.csv (--print_per_steps).
	LogEvery int
	// TestEvery is the number of epochs between test-set evaluations (--test_per_epochs).
	TestEvery int
	// ValidEvery also evaluates the test set every this many steps (--valid_per_steps, 0: only at
	// epoch ends).
	ValidEvery int
	// SampleEvery is the number of epochs between Hooks.Samples calls (--sample_per_epochs, 0:
	// never).
	SampleEvery int
	// Workers is the number of batch-assembling goroutines of the data loader.
	Workers int
}

// DefaultOptions are the CLI's defaults: on the CPU, one rank, until stopped.
func DefaultOptions() Options {
	return Options{
		Results: "results", Device: "cpu", Ranks: 1, NumEpoch: 10000, NaNPolicy: "stop", KeepCheckpoints: 2,
		CheckpointEvery: 10 * time.Minute, CollectiveTimeout: 30 * time.Minute, RefreshEvery: time.Second, CUDAGraph: true, LogEvery: 100, TestEvery: 1, SampleEvery: 1, Workers: 2,
	}
}

// Validate checks every option and names the first bad one.
func (o Options) Validate() error {
	switch {
	case o.Results == "":
		return fmt.Errorf("--results_dir is empty")
	case o.Device != "cpu" && o.Device != "cuda":
		return fmt.Errorf("--device %q: want cpu or cuda (device.Resolve resolves auto)", o.Device)
	case o.Ranks < 1 && o.Dist != "mpi" && o.Dist != "nccl":
		return fmt.Errorf("--num_gpus %d: want at least 1", o.Ranks)
	case o.Dist != "" && o.Dist != "inproc" && o.Dist != "mpi" && o.Dist != "nccl":
		return fmt.Errorf("--dist %q: want inproc, mpi or nccl", o.Dist)
	case o.RefreshEvery < 0:
		return fmt.Errorf("--refresh_every %v is negative", o.RefreshEvery)
	case o.CollectiveTimeout <= 0:
		return fmt.Errorf("--collective_timeout %v: want a positive duration", o.CollectiveTimeout)
	case o.NumEpoch < 1:
		return fmt.Errorf("--num_epoch %d: want at least 1", o.NumEpoch)
	case o.MaxSteps < 0:
		return fmt.Errorf("--max_steps %d is negative", o.MaxSteps)
	case o.MaxTime < 0:
		return fmt.Errorf("--max_time %v is negative", o.MaxTime)
	case o.NaNPolicy != "stop" && o.NaNPolicy != "lower_lr":
		return fmt.Errorf("--nan_policy %q: want stop or lower_lr", o.NaNPolicy)
	case o.KeepCheckpoints < 1:
		return fmt.Errorf("--keep_checkpoints %d: want at least 1", o.KeepCheckpoints)
	case o.CheckpointEvery <= 0:
		return fmt.Errorf("--checkpoint_every %v: want a positive duration", o.CheckpointEvery)
	case o.LogEvery < 1:
		return fmt.Errorf("--print_per_steps %d: want at least 1", o.LogEvery)
	case o.TestEvery < 1:
		return fmt.Errorf("--test_per_epochs %d: want at least 1", o.TestEvery)
	case o.ValidEvery < 0:
		return fmt.Errorf("--valid_per_steps %d is negative", o.ValidEvery)
	case o.SampleEvery < 0:
		return fmt.Errorf("--sample_per_epochs %d is negative", o.SampleEvery)
	case o.Workers < 1:
		return fmt.Errorf("--workers %d: want at least 1", o.Workers)
	}
	return nil
}
