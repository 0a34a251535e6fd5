package train

// Joining a one-process-per-rank job (Options.Dist "mpi" or "nccl"): how this process learns its
// rank, which engine moves the gradients, and the watchdog that ends a step whose collectives
// cannot complete.
//
// tensor/collective/launch says how the processes meet (mpirun, torchrun, srun, or alone).
//
// --dist mpi moves gradients with MPI_Allreduce from host buffers (CPU ranks, or CUDA ranks without
// NCCL); --dist nccl with ncclAllReduce on the devices (nccl.Reducer), and the small per-step
// collectives (losses, agreed flags) go through NCCL too.

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"dlf/tensor/collective"
	"dlf/tensor/collective/launch"
	"dlf/tensor/collective/nccl"
	"dlf/tensor/cuda"
	"dlf/tensor/device"
)

// rendezvousTimeout is how long ranks launched by environment variables wait for each other at
// start-up (torchrun's default rendezvous timeout is 900 s; processes of one job start within
// seconds of each other, but a cluster may stage a container first).
const rendezvousTimeout = 5 * time.Minute

// exitGrace is how long a process waits, after its watchdog aborted the collectives, for the
// training loop to return the error; then it exits (a collective that ignores the abort must not
// leave a hung process holding a GPU).
const exitGrace = 30 * time.Second

// procs is this process's membership of a one-process-per-rank job.
type procs struct {
	*launch.World
	// group carries the per-step host collectives: the MPI communicator or the NCCL group.
	group collective.Group
	// how describes the engine for the start-up report.
	how string

	ncclG *nccl.Group
	dog   *watchdog
}

// joinProcs joins the job for Dist "mpi" or "nccl" (nil otherwise) and sets Ranks to its world size
// (an explicit --num_gpus must match it). The NCCL communicator itself is made by attach, once the
// device is open.
func joinProcs(o *Options) (*procs, error) {
	if o.Dist != "mpi" && o.Dist != "nccl" {
		return nil, nil
	}
	if o.Dist == "nccl" && o.Device != "cuda" {
		return nil, fmt.Errorf("--dist nccl averages gradients on GPUs with NCCL and needs --device cuda; CPU ranks use --dist mpi under mpirun")
	}
	w, err := launch.Join(o.Dist, "--dist "+o.Dist, rendezvousTimeout)
	if err != nil {
		return nil, err
	}
	p := &procs{World: w}
	if p.NCCL != nil {
		p.how = fmt.Sprintf("one process per rank (%s), gradients averaged by ncclAllReduce on the GPUs", w.How)
	} else {
		p.group = p.MPI
		p.how = fmt.Sprintf("one process per rank (%s), gradients averaged by MPI_Allreduce", w.How)
	}
	if o.Ranks <= 1 {
		o.Ranks = p.Size
	}
	if o.Ranks != p.Size {
		p.close()
		return nil, fmt.Errorf("--num_gpus %d: the launcher started %d processes; drop --num_gpus or match the process count", o.Ranks, p.Size)
	}
	return p, nil
}

// openDevice opens this process's device: on CUDA its local rank's GPU, or GPU 0 when each process
// sees a single GPU (a launcher that sets CUDA_VISIBLE_DEVICES per process) or with --virtual_gpus.
func (p *procs) openDevice(o Options) (*device.Device, error) {
	ord := p.LocalRank
	if o.Device == "cuda" {
		n, err := cuda.DeviceCount()
		if err != nil {
			return nil, fmt.Errorf("--device cuda: %w", err)
		}
		if ord, err = p.GPU(n); err != nil {
			return nil, err
		}
		if o.VirtualGPUs {
			ord = 0
		}
	}
	dev, err := device.OpenRank(o.Device, ord, p.LocalSize, o.VirtualGPUs)
	if err != nil {
		return nil, fmt.Errorf("rank %d: %w", p.Rank, err)
	}
	return dev, nil
}

// attach makes the NCCL communicator on dev (Dist "nccl") and starts the watchdog.
func (p *procs) attach(dev *device.Device, timeout time.Duration) error {
	if p.NCCL != nil {
		g, err := nccl.Join(p.NCCL, p.ID, p.Size, p.Rank, dev.GPU)
		if err != nil {
			return fmt.Errorf("--dist nccl: rank %d: %w", p.Rank, err)
		}
		p.ncclG, p.group = g, g
	}
	p.dog = newWatchdog(p, timeout)
	return nil
}

// explain adds what the rendezvous knows of lost ranks to a failed collective's error: a killed
// process's socket closes at once, but its peers' collectives may fail a moment earlier, so it
// waits briefly for the news.
func (p *procs) explain(err error) error {
	if err == nil || p.Rendezvous == nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(p.Rendezvous.LostRanks()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if d := p.Rendezvous.Describe(); d != "" {
		return fmt.Errorf("%s: %w", d, err)
	}
	return err
}

// close releases the watchdog, the communicator, the rendezvous and MPI.
func (p *procs) close() {
	if p == nil {
		return
	}
	if p.dog != nil {
		p.dog.stop()
		p.dog = nil
	}
	if p.ncclG != nil {
		_ = p.ncclG.Close()
		p.ncclG = nil
	}
	p.World.Close()
}

// watchdog ends a step whose collectives cannot complete: when the rendezvous reports a lost rank,
// at once; when a guarded section (a step, the start-up broadcast, a checkpoint's agreement) has
// run for longer than the collective timeout, then. It aborts the group (NCCL: ncclCommAbort, so a
// blocked collective fails with the reason; MPI: MPI_Abort, which ends the job through mpirun), and
// if the process still has not ended after exitGrace, exits it.
type watchdog struct {
	p       *procs
	timeout time.Duration
	quit    chan struct{}
	done    chan struct{}

	mu    sync.Mutex
	what  string // the guarded section, "" when none
	since time.Time
	fired error
	exit  *time.Timer // the last-resort exit after firing
}

func newWatchdog(p *procs, timeout time.Duration) *watchdog {
	w := &watchdog{p: p, timeout: timeout, quit: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// guard marks the start of a section whose collectives must complete within the timeout; the
// returned function ends it.
func (w *watchdog) guard(what string) func() {
	w.mu.Lock()
	w.what, w.since = what, time.Now()
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		w.what = ""
		w.mu.Unlock()
	}
}

func (w *watchdog) run() {
	defer close(w.done)
	var lost <-chan int
	if w.p.Rendezvous != nil {
		lost = w.p.Rendezvous.Lost()
	}
	tick := time.NewTicker(min(w.timeout/10, 200*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-w.quit:
			return
		case <-lost:
			w.fire(errors.New(w.p.Rendezvous.Describe()))
			return
		case <-tick.C:
			w.mu.Lock()
			what, since := w.what, w.since
			w.mu.Unlock()
			if what != "" && time.Since(since) > w.timeout {
				reason := fmt.Errorf("rank %d: the collectives of %s did not complete within %v (--collective_timeout): another rank is stuck or lost", w.p.Rank, what, w.timeout)
				if w.p.Rendezvous != nil {
					if d := w.p.Rendezvous.Describe(); d != "" {
						reason = fmt.Errorf("%v; %s", reason, d)
					}
				}
				w.fire(reason)
				return
			}
		}
	}
}

// fire aborts the group with reason and arms the last-resort exit.
func (w *watchdog) fire(reason error) {
	w.mu.Lock()
	w.fired = reason
	w.exit = time.AfterFunc(exitGrace, func() {
		fmt.Fprintf(os.Stderr, "watchdog: rank %d did not stop within %v of aborting its collectives; exiting\n", w.p.Rank, exitGrace)
		os.Exit(3)
	})
	w.mu.Unlock()
	fmt.Fprintf(os.Stderr, "watchdog: %v; aborting the collectives\n", reason)
	if w.p.group != nil {
		w.p.group.Abort(reason)
	}
}

// reason returns the abort's reason, nil if the watchdog has not fired.
func (w *watchdog) reason() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired
}

// stop ends the watchdog; the process has stopped training (with the watchdog's error or not), so
// the last-resort exit is cancelled too.
func (w *watchdog) stop() {
	close(w.quit)
	<-w.done
	w.mu.Lock()
	if w.exit != nil {
		w.exit.Stop()
	}
	w.mu.Unlock()
}

// errAborted explains a step's error: when the watchdog fired, the error already carries its reason
// (the aborted collective fails with it); otherwise what the rendezvous knows of lost ranks is added.
func (p *procs) errAborted(err error) error {
	if err == nil {
		return nil
	}
	if p.dog != nil {
		if r := p.dog.reason(); r != nil {
			if errors.Is(err, r) {
				return err
			}
			return fmt.Errorf("%v: %w", r, err)
		}
	}
	return p.explain(err)
}
