package train

// Data-parallel training (train --num_gpus N, N > 1): N replicas of the model in this process, one
// goroutine per rank, whose gradients are averaged by the ring all-reduce of tensor/collective
// while the backward pass runs (procs.go: one process per rank under mpirun instead).
//
// Design (issue 8):
//   - Every rank has its own backend instance (on the CPU: its own cpu.Backend with GOMAXPROCS/N
//     threads, the same count on every rank so every reduction runs the same order; on CUDA: device
//     r), its own model, optimizer and EMA. Replicas are built from the same config and seed, so
//     their initial parameters agree; rank 0 is the trainer's own model.
//   - Rank r reads its shard of every epoch (data.LoaderConfig Rank r, World N); --batch_size is
//     per rank, so one step consumes N·batch images and an epoch has floor(N_train/N)/batch steps.
//   - Dequantisation noise is distinct per rank: rank r keys the noise with rankSeed(seed, r)
//     (rank 0 keeps the single-device seed) at the shared NoiseOffset, which advances identically on
//     every rank because every rank's batch has the same shape.
//   - Gradients: each rank's tape calls Reducer.Ready from OnGradReady, so buckets are all-reduced
//     (averaged) on a worker goroutine while the rest of backward runs; Wait writes the averages
//     back. The ring's all-gather copies one owner's result to every rank, so every rank's
//     averaged gradient is bit-identical and so are the optimizer steps that follow.
//   - Glow's actnorm data-init: rank 0 computes it on the same fixed 256-image sample as a
//     single-device run (not its shard), and the initialised parameters are copied to every rank,
//     so the init is identical by construction and independent of N.
//   - Checkpoints, CSVs, samples, test evaluation and the progress line are rank 0's only. Every
//     checkpoint save first checks that all replicas' parameters are bit-identical to rank 0's
//     (the saved file then stands for every rank); a resume or a non-finite-loss restore loads the
//     same checkpoint into every replica. The checkpoint records the world size, and a run can only
//     be resumed with the same --num_gpus (its data position counts in per-rank batches).
//   - The transport: when every rank is a CUDA backend, collective.DeviceReducer packs the gradients
//     into device buckets (device-to-device copies on each backend's stream), and as soon as every
//     rank has packed a bucket its proxy queues the bucket's all-reduce on DeviceRing (peer copies
//     and the reduction kernel on the ring's own streams, ordered after the packing by events, issued
//     from the ring's own thread), so the ring runs while the ranks' device workers are still queuing
//     the rest of the backward pass. Wait makes each backend stream wait for the ring and copy the
//     averages back before the optimizer step; nothing goes through the host and the host never
//     waits for a device during the step. Otherwise (the CPU) the Reducer runs HostRing with goroutine
//     ranks. Both give bit-identical averages for the same bucket layout (the same ring schedule).
//     Wait runs outside the rank's device work unit: it is a barrier across ranks, and virtual ranks
//     (--virtual_gpus) may share one GPU.

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"

	"dlf/autodiff"
	"dlf/autodiff/optim"
	"dlf/data"
	"dlf/dlf"
	"dlf/tensor"
	"dlf/tensor/collective"
	"dlf/tensor/collective/mpi"
	"dlf/tensor/collective/nccl"
	"dlf/tensor/cuda"
	"dlf/tensor/device"
	"dlf/train/fault"
)

// rankSeedStep separates the ranks' noise keys: SplitMix64's increment (Steele, Lea and Flood,
// "Fast splittable pseudorandom number generators", OOPSLA 2014), an odd constant whose multiples
// differ in many bits.
const rankSeedStep = 0x9e3779b97f4a7c15

// rankSeed is rank r's dequantisation-noise key; rank 0 keeps the run's seed.
func rankSeed(seed uint64, r int) uint64 { return seed + uint64(r)*rankSeedStep }

// ddpBucketElems is the gradient bucket size for training: 1 Mi elements (4 MiB of float32), so
// that even the CPU-sized models (about 1–4 M parameters) have several buckets to overlap with
// backward.
const ddpBucketElems = 1 << 20

// rank is one replica of data-parallel training.
type rank struct {
	r      int
	pos    int // index in ddp.ranks (and in a step's batches)
	dev    *device.Device
	m      *dlf.Model
	opt    *optim.Optimizer
	ema    *optim.EMA
	red    gradReducer
	params []optim.Param
	index  map[*autodiff.Var]int
	loader *data.Loader
	owned  bool // dev is this rank's to close (rank 0's belongs to the trainer)

	// Per step.
	tape *autodiff.Tape
	res  *dlf.Result
	x    *tensor.Tensor
	cond *tensor.Tensor
	next uint64
	loss stepResult
	// slots holds the rank's deferred losses (deferred.go).
	slots lossSlots
}

// gradReducer averages one rank's gradients across the ranks: collective.Reducer (host ring) or a
// rank of collective.DeviceReducer (device ring).
type gradReducer interface {
	Ready(i int, g *tensor.Tensor) error
	Wait(grads []*tensor.Tensor) error
}

// ddp is the set of ranks; ranks[0] wraps the trainer's own model.
type ddp struct {
	ring   *collective.HostRing[float32] // nil when devRed or procs is used
	devRed *collective.DeviceReducer     // set when every rank is a CUDA backend
	// procs is set when every rank is its own process (Options.Dist "mpi" or "nccl"): ranks then
	// holds this process's rank only, and the ranks agree through collectives on what a single
	// process decides alone (stopping, checkpointing).
	procs *procs
	// ncclRed is this process's NCCL reducer (Dist "nccl"), closed with the ddp.
	ncclRed *nccl.Reducer
	ranks   []*rank
	world   int
	// agreedStop and agreedSave are the ranks' joint decisions after the last step (comm only):
	// some rank was stopped (a signal, a cancelled context, --max_time), some rank's checkpoint
	// interval has passed.
	agreedStop, agreedSave bool
}

// newDDP builds ranks 1..n−1 next to the trainer's rank 0 and a reducer for each.
func newDDP(t *Run, kind string, n int) (*ddp, error) {
	d := &ddp{world: n, procs: t.procs}
	if d.procs != nil {
		return d, d.joinProcesses(t)
	}
	d.ranks = append(d.ranks, &rank{r: 0, dev: t.dev, m: t.m, opt: t.opt, ema: t.ema})
	for r := 1; r < n; r++ {
		dev, err := device.OpenRank(kind, r, n, t.o.VirtualGPUs)
		if err != nil {
			d.close()
			return nil, err
		}
		rk := &rank{r: r, pos: r, dev: dev, owned: true}
		d.ranks = append(d.ranks, rk)
		err = dev.Do(func() error {
			var err error
			rk.m, rk.opt, rk.ema, err = newReplica(t.cfg, dev, t.perEpoch)
			return err
		})
		if err != nil {
			d.close()
			return nil, fmt.Errorf("rank %d: %w", r, err)
		}
	}
	var sizes []int
	gpus := make([]*cuda.Backend, 0, n)
	for _, rk := range d.ranks {
		sizes = rk.indexParams()
		if rk.dev.GPU != nil {
			gpus = append(gpus, rk.dev.GPU)
		}
	}
	var err error
	if len(gpus) == n {
		// Every rank is on a CUDA device: reduce on the devices, no host staging.
		if d.devRed, err = collective.NewDeviceReducer(gpus, sizes, ddpBucketElems, collective.Options{}); err != nil {
			d.close()
			return nil, fmt.Errorf("device all-reduce: %w", err)
		}
		for _, rk := range d.ranks {
			rk.red = d.devRed.Rank(rk.r)
		}
	} else {
		if d.ring, err = collective.NewHostRing[float32](n, collective.Options{}); err != nil {
			d.close()
			return nil, err
		}
		for _, rk := range d.ranks {
			if rk.red, err = collective.NewReducer(d.ring, rk.r, sizes, ddpBucketElems); err != nil {
				d.close()
				return nil, err
			}
		}
	}
	if err := d.identical(); err != nil {
		d.close()
		return nil, fmt.Errorf("data-parallel replicas do not start alike (the init must depend only on the seed): %w", err)
	}
	return d, nil
}

// indexParams records the rank's trainable parameters and their positions, and returns their sizes.
func (rk *rank) indexParams() []int {
	rk.params = rk.m.OptimParams()
	rk.index = make(map[*autodiff.Var]int, len(rk.params))
	sizes := make([]int, len(rk.params))
	for i, p := range rk.params {
		sizes[i] = p.Var.Value.Numel()
		rk.index[p.Var] = i
	}
	return sizes
}

// joinProcesses sets up this process's rank of a one-process-per-rank job: its gradients are
// averaged bucket by bucket while backward runs — over MPI by the same Reducer the in-process ring
// uses, or over NCCL on the GPU by nccl.Reducer, with the same bucket layout — and the ranks must
// start alike.
func (d *ddp) joinProcesses(t *Run) error {
	p := d.procs
	rk := &rank{r: p.Rank, dev: t.dev, m: t.m, opt: t.opt, ema: t.ema}
	d.ranks = []*rank{rk}
	sizes := rk.indexParams()
	var err error
	if p.ncclG != nil {
		if d.ncclRed, err = nccl.NewReducer(p.ncclG, t.dev.GPU, sizes, ddpBucketElems); err != nil {
			return err
		}
		rk.red = d.ncclRed
	} else if rk.red, err = collective.NewReducer(mpi.NewRing[float32](p.MPI), rk.r, sizes, ddpBucketElems); err != nil {
		return err
	}
	if err := d.identical(); err != nil {
		return fmt.Errorf("data-parallel processes do not start alike (the init must depend only on the seed): %w", err)
	}
	return nil
}

// close releases the device reducer, the replicas' devices and loaders.
func (d *ddp) close() {
	if d.devRed != nil {
		_ = d.devRed.Close()
		d.devRed = nil
	}
	if d.ncclRed != nil {
		_ = d.ncclRed.Close()
		d.ncclRed = nil
	}
	for _, rk := range d.ranks {
		rk.closeLoader()
		_ = rk.dev.Do(func() error {
			rk.slots.release()
			return nil
		})
		if rk.owned {
			_ = rk.dev.Close()
		}
	}
}

func (rk *rank) closeLoader() {
	if rk.loader != nil {
		rk.loader.Close()
		rk.loader = nil
	}
}

// each runs fn for every rank on its own goroutine, inside the rank's device work unit, and joins
// the errors (rank-tagged).
func (d *ddp) each(fn func(rk *rank) error) error {
	errs := make([]error, len(d.ranks))
	var wg sync.WaitGroup
	for i, rk := range d.ranks {
		wg.Go(func() {
			if err := rk.dev.Do(func() error { return fn(rk) }); err != nil {
				errs[i] = fmt.Errorf("rank %d: %w", rk.r, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// eachRank runs fn for every rank on its own goroutine, outside the device work unit (fn opens its
// own), and joins the errors (rank-tagged).
func (d *ddp) eachRank(fn func(rk *rank) error) error {
	errs := make([]error, len(d.ranks))
	var wg sync.WaitGroup
	for i, rk := range d.ranks {
		wg.Go(func() {
			if err := fn(rk); err != nil {
				errs[i] = fmt.Errorf("rank %d: %w", rk.r, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// broadcastParams copies every parameter of rank 0 to the other ranks (after the data-dependent
// init, which rank 0 alone computes).
func (d *ddp) broadcastParams() error {
	if d.procs != nil {
		return d.broadcastProcesses()
	}
	var vals [][]float32
	if err := d.ranks[0].dev.Do(func() error {
		for _, p := range d.ranks[0].m.Params() {
			vals = append(vals, p.Var.Value.Float32s())
		}
		return nil
	}); err != nil {
		return err
	}
	for _, rk := range d.ranks[1:] {
		if err := rk.dev.Do(func() error {
			for i, p := range rk.m.Params() {
				p.Var.Value.Upload(vals[i])
			}
			return rk.dev.Backend.Err()
		}); err != nil {
			return fmt.Errorf("rank %d: %w", rk.r, err)
		}
	}
	return nil
}

// identical checks that every rank's parameters equal rank 0's bit for bit.
func (d *ddp) identical() error {
	if d.procs != nil {
		return d.identicalProcesses()
	}
	var ref [][]float32
	_ = d.ranks[0].dev.Do(func() error {
		for _, p := range d.ranks[0].m.ParamsView() {
			ref = append(ref, p.Var.Value.Float32s())
		}
		return nil
	})
	for _, rk := range d.ranks[1:] {
		var bad error
		_ = rk.dev.Do(func() error {
			for i, p := range rk.m.ParamsView() {
				v := p.Var.Value.Float32s()
				for j := range v {
					if math.Float32bits(v[j]) != math.Float32bits(ref[i][j]) {
						bad = fmt.Errorf("rank %d parameter %s[%d] is %g, rank 0 has %g", rk.r, p.Name, j, v[j], ref[i][j])
						return nil
					}
				}
			}
			return nil
		})
		if bad != nil {
			return bad
		}
	}
	return nil
}

// loadReplicas loads checkpoint path into ranks 1..n−1 (the trainer loads rank 0).
func (d *ddp) loadReplicas(path string) error {
	for _, rk := range d.ranks[1:] {
		if err := rk.dev.Do(func() error {
			_, err := LoadCheckpoint(path, rk.m, rk.opt, rk.ema)
			return err
		}); err != nil {
			return fmt.Errorf("rank %d: %w", rk.r, err)
		}
	}
	return nil
}

// openLoaders starts every rank's shard of the training set at pos.
func (d *ddp) openLoaders(t *Run) error {
	for _, rk := range d.ranks {
		rk.closeLoader()
		l, err := data.NewLoader(t.train, data.LoaderConfig{
			BatchSize: t.cfg.BatchSize, Shuffle: true, Seed: t.cfg.Seed, Epochs: t.o.NumEpoch,
			DropLast: true, Workers: t.o.Workers, Start: t.st.Pos, Rank: rk.r, World: d.world,
		})
		if err != nil {
			return fmt.Errorf("rank %d: %w", rk.r, err)
		}
		rk.loader = l
	}
	return nil
}

// nextBatches returns every rank's next batch (ranks[0]'s loader drives the loop; the others
// follow in lockstep: the same position, the same epoch end).
func (d *ddp) nextBatches(b0 *data.Batch) ([]*data.Batch, error) {
	bs := []*data.Batch{b0}
	for _, rk := range d.ranks[1:] {
		b, err := rk.loader.Next()
		if err != nil {
			return nil, fmt.Errorf("rank %d loader: %w", rk.r, err)
		}
		if b.Pos != b0.Pos || b.N != b0.N || b.EpochEnd != b0.EpochEnd {
			return nil, fmt.Errorf("rank %d loader is at %+v (%d images), rank 0 at %+v (%d images)", rk.r, b.Pos, b.N, b0.Pos, b0.N)
		}
		bs = append(bs, b)
	}
	return bs, nil
}

// stepDDP is Run.step for N ranks: every rank runs forward on its batch; if any loss is non-finite
// no rank updates; otherwise every rank runs backward with its gradients handed to the reducer as
// they become final, waits for the averages, and takes the same optimizer step. The metrics returned
// are the mean over ranks.
func (t *Run) stepDDP(bs []*data.Batch, lr float64) (_ stepResult, err error) {
	d := t.ddp
	defer d.releaseStep()
	if p := d.procs; p != nil {
		// The step's collectives are watched; a failed one names the rank the job lost, if known.
		defer p.dog.guard(fmt.Sprintf("step %d", t.st.Step+1))()
		defer func() {
			if nf := (*nonFiniteError)(nil); err != nil && !errors.As(err, &nf) {
				err = p.errAborted(err)
			}
		}()
	}
	// In one process on CUDA devices the ranks leave their losses on their devices until a flush
	// (deferred.go), so a step costs the host no synchronisation: every rank updates, and a
	// non-finite loss found later replays the run from its newest checkpoint up to it.
	deferring := t.deferNext()
	if err := d.each(func(rk *rank) error { return t.forwardRank(rk, bs[rk.pos], deferring) }); err != nil {
		return stepResult{}, fmt.Errorf("step %d: %w", t.st.Step+1, err)
	}
	// A deferring step's metrics are read at the next flush; otherwise the ranks' losses are
	// agreed and checked now, and a non-finite one stops the step before any rank updates.
	mean := stepResult{deferred: deferring}
	if !deferring {
		losses, err := d.gatherLosses(t)
		if err != nil {
			return stepResult{}, fmt.Errorf("step %d: %w", t.st.Step+1, err)
		}
		for _, l := range losses {
			mean.loss += l.loss / float64(d.world)
			mean.bits += l.bits / float64(d.world)
			mean.l2 += l.l2 / float64(d.world)
		}
		for r, l := range losses {
			if math.IsNaN(l.loss) || math.IsInf(l.loss, 0) {
				d.releaseStep()
				rk := d.local(r)
				if rk == nil {
					return mean, &nonFiniteError{step: t.st.Step + 1, loss: l.loss, where: fmt.Sprintf("rank %d (its process names the layer)", r)}
				}
				b := bs[rk.pos]
				var where string
				_ = t.dev.Do(func() error {
					where = locateNonFinite(t.m, t.dev.Backend, b.Images, b.N, b.Labels, rankSeed(t.cfg.Seed, rk.r), t.st.NoiseOffset)
					return nil
				})
				return mean, &nonFiniteError{step: t.st.Step + 1, loss: l.loss, where: fmt.Sprintf("rank %d: %s", rk.r, where)}
			}
		}
	}
	if err := d.eachRank(func(rk *rank) error { return rk.backwardAndUpdate(lr, !deferring) }); err != nil {
		if errors.Is(err, errNonFiniteGrads) {
			return mean, t.locateGradsDDP(bs, mean.loss)
		}
		return mean, fmt.Errorf("step %d: %w", t.st.Step+1, err)
	}
	if deferring {
		t.takeSlot()
	}
	t.st.NoiseOffset = d.ranks[0].next
	return mean, nil
}

// releaseStep frees every rank's tape, result and inputs of the step (the tape first, as Run.step
// does after a forward pass without backward).
func (d *ddp) releaseStep() {
	for _, rk := range d.ranks {
		_ = rk.dev.Do(func() error {
			if rk.tape != nil {
				rk.tape.Release()
			}
			if rk.res != nil {
				rk.res.Release()
			}
			release(rk.x, rk.cond)
			rk.res, rk.tape, rk.x, rk.cond = nil, nil, nil, nil
			return nil
		})
	}
}

// forwardRank runs rank rk's forward pass on its batch b, with the rank's own dequantisation noise,
// inside the rank's device work unit; deferring, it queues the loss into the rank's next slot
// instead of reading it.
func (t *Run) forwardRank(rk *rank, b *data.Batch, deferring bool) error {
	var err error
	if rk.x, rk.cond, rk.next, err = batchInput(rk.m, b.Images, b.N, b.Labels, rankSeed(t.cfg.Seed, rk.r), t.st.NoiseOffset); err != nil {
		return err
	}
	rk.tape = autodiff.NewTape()
	if rk.res, err = rk.m.Forward(rk.tape, rk.x, rk.cond); err != nil {
		return err
	}
	fault.Point(fault.RankStep + strconv.Itoa(rk.r))
	if deferring {
		var l2 *tensor.Tensor
		if rk.res.L2 != nil {
			l2 = rk.res.L2.Value
		}
		rk.slots.put(rk.dev.Backend, t.def.slots, rk.res.Loss.Value, l2)
		return rk.dev.Backend.Err()
	}
	rk.loss.loss = rk.res.Loss.Value.Item()
	rk.loss.l2 = 0
	if rk.res.L2 != nil {
		rk.loss.l2 = rk.res.L2.Value.Item()
	}
	rk.loss.bits = rk.loss.loss - rk.loss.l2
	return rk.dev.Backend.Err()
}

// errNonFiniteGrads is backwardAndUpdate's refusal of an update whose averaged gradients are not
// finite. The averages are the same on every rank, so every rank refuses together.
var errNonFiniteGrads = errors.New("the averaged gradients are not finite")

// locateGradsDDP explains a step whose losses were finite but whose averaged gradients were not: it
// re-runs the step of each rank of this process (parameters still as before the step) until one
// names the op.
func (t *Run) locateGradsDDP(bs []*data.Batch, loss float64) error {
	where := "no rank of this process produced a non-finite value when re-run (another process's rank did)"
	for _, rk := range t.ddp.ranks {
		b := bs[rk.pos]
		var found string
		var err error
		_ = t.dev.Do(func() error {
			found, err = probeStep(t.m, t.dev.Backend, b.Images, b.N, b.Labels, rankSeed(t.cfg.Seed, rk.r), t.st.NoiseOffset, true)
			return nil
		})
		if found != "" || err != nil {
			where = fmt.Sprintf("rank %d: %s", rk.r, explain(found, err, ""))
			break
		}
	}
	return &nonFiniteError{step: t.st.Step + 1, loss: loss, grads: true, where: where + recomputeHint(t.cfg)}
}

// backwardAndUpdate runs the rank's backward pass with its gradients handed to the reducer as they
// become final, waits for the averages and takes the optimizer step. With check (a step that read
// its losses) it first checks that the averages are finite, and refuses the update with
// errNonFiniteGrads if not.
func (rk *rank) backwardAndUpdate(lr float64, check bool) error {
	var hookErr, berr error
	grads := make([]*tensor.Tensor, len(rk.params))
	derr := rk.dev.Do(func() error {
		rk.tape.OnGradReady(func(v *autodiff.Var) {
			if i, ok := rk.index[v]; ok && hookErr == nil {
				hookErr = rk.red.Ready(i, v.Grad)
			}
		})
		berr = rk.tape.Backward(rk.res.Loss)
		for i, p := range rk.params {
			if p.Var.Grad == nil {
				v := p.Var.Value
				p.Var.Grad = tensor.Zeros(v.Backend(), v.DType(), v.Shape()...)
			}
			grads[i] = p.Var.Grad
		}
		return nil
	})
	// Wait even after an error, so that the other ranks' collective calls are matched and the ring
	// does not hang; the reducer treats missing gradients as zeros. Outside the device work unit:
	// the device reducer needs every rank's device worker (gradReducer).
	werr := rk.red.Wait(grads)
	if err := errors.Join(derr, berr, hookErr, werr); err != nil {
		return err
	}
	return rk.dev.Do(func() error {
		if check && !gradsFinite(rk.opt.Params()) {
			rk.opt.ZeroGrad()
			return errNonFiniteGrads
		}
		rk.opt.Step(lr)
		rk.opt.ZeroGrad()
		if rk.ema != nil {
			rk.ema.Update()
		}
		return rk.dev.Backend.Err()
	})
}
