// Package launch joins a job of one process per rank the way its launcher started it, for the
// engines of tensor/collective: Open MPI (mpi) and NCCL (nccl).
//
//   - Under mpirun (Open MPI sets OMPI_COMM_WORLD_SIZE), or for MPI under srun: MPI_COMM_WORLD gives
//     the ranks; for NCCL, rank 0's unique id is broadcast over MPI.
//   - Under torchrun or srun for NCCL (RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS, with
//     MASTER_ADDR/MASTER_PORT): the TCP rendezvous (tensor/collective/rendezvous) carries the id,
//     and its session then reports lost ranks.
//   - NCCL with no launcher: a world of one (NCCL on one GPU), to check the path.
//
// The NCCL communicator itself is made later, on the process's GPU (nccl.Join), from World.ID.
package launch

import (
	"context"
	"fmt"
	"os"
	"time"

	"dlf/tensor/collective/mpi"
	"dlf/tensor/collective/nccl"
	"dlf/tensor/collective/rendezvous"
)

// World is this process's place in the job and what it met the others through.
type World struct {
	Rank, Size           int
	LocalRank, LocalSize int
	// MPI is MPI_COMM_WORLD when MPI was initialised (Close finalises it).
	MPI *mpi.Comm
	// Rendezvous is the TCP rendezvous session of an environment-variable launch (Close ends it).
	Rendezvous *rendezvous.Session
	// NCCL and ID are the library and the communicator's unique id, for the engine "nccl".
	NCCL *nccl.Library
	ID   nccl.UniqueID
	// How says how the ranks met, for reports.
	How string
}

// Join joins the job for engine "mpi" or "nccl"; what names the setting for errors (a flag such as
// "--dist nccl"), and timeout bounds the rendezvous of an environment-variable launch.
func Join(engine, what string, timeout time.Duration) (*World, error) {
	if engine != "mpi" && engine != "nccl" {
		return nil, fmt.Errorf("%s: unknown engine %q (want mpi or nccl)", what, engine)
	}
	env, launched, err := rendezvous.FromEnv()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	underMPI := os.Getenv("OMPI_COMM_WORLD_SIZE") != ""
	w := &World{}
	if engine == "nccl" {
		if w.NCCL, err = nccl.Load(); err != nil {
			return nil, fmt.Errorf("%s: %v", what, err)
		}
	}
	switch {
	case underMPI || engine == "mpi":
		if !underMPI && launched && env.From == "RANK/WORLD_SIZE" {
			return nil, fmt.Errorf("%s: RANK and WORLD_SIZE are set (torchrun?) but mpirun did not start this process; start it with mpirun -np N, or with GPUs use NCCL under torchrun", what)
		}
		if w.MPI, err = mpi.Init(); err != nil {
			return nil, fmt.Errorf("%s: %v", what, err)
		}
		w.Rank, w.Size, w.LocalRank, w.LocalSize = w.MPI.Rank(), w.MPI.Size(), w.MPI.LocalRank(), w.MPI.LocalSize()
		if w.NCCL == nil {
			w.How = fmt.Sprintf("Open MPI, %s", w.MPI.Library())
			return w, nil
		}
		if w.Rank == 0 {
			if w.ID, err = w.NCCL.UniqueID(); err != nil {
				w.Close()
				return nil, fmt.Errorf("%s: %v", what, err)
			}
		}
		if err := w.MPI.BroadcastBytes(w.ID.Internal[:], 0); err != nil {
			w.Close()
			return nil, fmt.Errorf("%s: the NCCL unique id over MPI: %v", what, err)
		}
		w.How = fmt.Sprintf("NCCL %s, bootstrapped over Open MPI", w.NCCL.VersionString())
	case launched:
		var payload []byte
		if env.Rank == 0 {
			if w.ID, err = w.NCCL.UniqueID(); err != nil {
				return nil, fmt.Errorf("%s: %v", what, err)
			}
			payload = w.ID.Internal[:]
		}
		if w.Rendezvous, err = rendezvous.Join(context.Background(), env, payload, timeout); err != nil {
			return nil, fmt.Errorf("%s (%s): %v", what, env.From, err)
		}
		if got := w.Rendezvous.Payload(); len(got) != nccl.IDBytes {
			w.Close()
			return nil, fmt.Errorf("%s: the rendezvous handed out %d bytes, not a %d-byte NCCL id", what, len(got), nccl.IDBytes)
		}
		copy(w.ID.Internal[:], w.Rendezvous.Payload())
		w.Rank, w.Size, w.LocalRank, w.LocalSize = env.Rank, env.Size, env.LocalRank, env.LocalSize
		w.How = fmt.Sprintf("NCCL %s, rendezvous at %s from %s", w.NCCL.VersionString(), env.Addr, env.From)
	default:
		if w.ID, err = w.NCCL.UniqueID(); err != nil {
			return nil, fmt.Errorf("%s: %v", what, err)
		}
		w.Size, w.LocalSize = 1, 1
		w.How = fmt.Sprintf("NCCL %s, no launcher: a world of one", w.NCCL.VersionString())
	}
	return w, nil
}

// Close ends the rendezvous session and finalises MPI.
func (w *World) Close() {
	if w == nil {
		return
	}
	if w.Rendezvous != nil {
		_ = w.Rendezvous.Close()
		w.Rendezvous = nil
	}
	if w.MPI != nil {
		_ = w.MPI.Finalize()
		w.MPI = nil
	}
}

// GPU returns the ordinal of this process's GPU among the count GPUs it sees: its local rank, or 0
// when it sees a single GPU (a launcher that sets CUDA_VISIBLE_DEVICES per process, as srun
// --gpus-per-task does). More processes on a machine than GPUs is an error naming the counts.
func (w *World) GPU(count int) (int, error) {
	if count == 1 {
		return 0, nil
	}
	if w.LocalRank >= count {
		return 0, fmt.Errorf("rank %d is local rank %d on its machine, which has %d GPUs: start at most %d processes per machine", w.Rank, w.LocalRank, count, count)
	}
	return w.LocalRank, nil
}
