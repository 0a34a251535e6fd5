package data

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Position is a resumable point in a Loader's stream: the epoch and the index of the next batch
// within that epoch (counted in batches of this rank). Saving Loader.Position after training on a
// batch and passing it as LoaderConfig.Start later yields exactly the batches the uninterrupted run
// would have produced from there, provided the dataset, seed, batch size, sharding and drop-last
// settings are the same.
type Position struct {
	Epoch int `json:"epoch"`
	Index int `json:"index"`
}

// LoaderConfig configures a Loader.
type LoaderConfig struct {
	// BatchSize is the number of images per batch (per rank).
	BatchSize int
	// Shuffle permutes the images every epoch with EpochPermutation(N, Seed, epoch); without it
	// every epoch visits the images in dataset order.
	Shuffle bool
	Seed    uint64
	// Epochs is the number of epochs to produce before Next returns io.EOF; 0 means unlimited.
	Epochs int
	// DropLast drops each epoch's final partial batch so every batch has BatchSize images.
	DropLast bool
	// Rank and World shard each epoch for data parallelism: rank r takes permutation positions
	// r, r+World, r+2·World, … up to floor(N/World) images, so the ranks' shares are disjoint and of
	// equal size (at most World−1 images of an epoch are left out, different ones each epoch when
	// shuffling). World 0 means 1.
	Rank, World int
	// Workers is the number of goroutines assembling batches (0: 2).
	Workers int
	// Prefetch is the number of batches prepared ahead of the consumer (0: 2·Workers).
	Prefetch int
	// NBits, when in 1..7, reduces every pixel to NBits bits as x >> (8−NBits) (Glow/DLF's n_bits
	// preprocessing, floor(x / 2^(8−n_bits))); 0 or 8 leaves the bytes unchanged.
	NBits int
	// Start is where to begin; the zero value is the start of epoch 0.
	Start Position
}

// Batch is one batch of images in NHWC uint8 layout, with the dataset indices it was drawn from.
//
// Ownership: a Batch and its slices belong to the Loader and are reused. They stay valid until the
// next call to Next or to Release with this batch, whichever comes first; copy anything needed
// longer.
type Batch struct {
	N, H, W, C int
	Images     []uint8 // N·H·W·C bytes
	Labels     []int32 // N labels, or nil when the dataset has none
	Attrs      []int32 // N·NumAttrs attributes, or nil
	Indices    []int   // dataset index of each image
	Pos        Position
	// Next is the position after this batch: the resume point once the batch has been consumed.
	Next Position
	// EpochEnd marks the last batch of its epoch.
	EpochEnd bool

	ready chan struct{}
}

// LoaderStats accounts for time the consumer spent blocked in Next waiting for data.
type LoaderStats struct {
	Batches int64
	Images  int64
	// Wait is the total time Next blocked because the next batch was not ready.
	Wait time.Duration
	// Elapsed is wall time since the loader started or since the last ResetStats.
	Elapsed time.Duration
}

// WaitFraction is Wait/Elapsed: the share of wall time the trainer was starved of data.
func (s LoaderStats) WaitFraction() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Wait) / float64(s.Elapsed)
}

// ErrLoaderClosed is returned by Next after Close.
var ErrLoaderClosed = errors.New("data: loader closed")

// Loader produces batches from an in-memory Dataset with deterministic shuffling, sharding and
// background prefetching. Next, Release and Close must be called from one goroutine; Stats and
// ResetStats may be called from any.
type Loader struct {
	ds        *Dataset
	cfg       LoaderConfig
	perRank   int
	perEpoch  int // batches per epoch
	shift     uint
	free      chan *Batch
	order     chan *Batch
	jobs      chan *Batch
	done      chan struct{}
	wg        sync.WaitGroup
	held      *Batch
	pos       Position
	closed    bool
	exhausted bool

	mu      sync.Mutex
	stats   LoaderStats
	statsT0 time.Time
}

// NewLoader validates cfg against ds and starts the prefetching goroutines.
func NewLoader(ds *Dataset, cfg LoaderConfig) (*Loader, error) {
	if err := ds.Validate(); err != nil {
		return nil, err
	}
	if cfg.BatchSize <= 0 {
		return nil, fmt.Errorf("data: batch size %d must be positive", cfg.BatchSize)
	}
	if cfg.World == 0 {
		cfg.World = 1
	}
	if cfg.World < 0 || cfg.Rank < 0 || cfg.Rank >= cfg.World {
		return nil, fmt.Errorf("data: rank %d of world %d is invalid", cfg.Rank, cfg.World)
	}
	if cfg.NBits < 0 || cfg.NBits > 8 {
		return nil, fmt.Errorf("data: n_bits %d must be in 0..8", cfg.NBits)
	}
	if cfg.Epochs < 0 {
		return nil, fmt.Errorf("data: epochs %d must be >= 0", cfg.Epochs)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 2 * cfg.Workers
	}
	l := &Loader{ds: ds, cfg: cfg}
	l.perRank = ds.N / cfg.World
	l.perEpoch = l.perRank / cfg.BatchSize
	if !cfg.DropLast && l.perRank%cfg.BatchSize != 0 {
		l.perEpoch++
	}
	if l.perEpoch == 0 {
		return nil, fmt.Errorf("data: %s: %d images give rank %d of %d only %d images, not one batch of %d (drop-last %v)", ds.Source, ds.N, cfg.Rank, cfg.World, l.perRank, cfg.BatchSize, cfg.DropLast)
	}
	if cfg.NBits > 0 && cfg.NBits < 8 {
		l.shift = uint(8 - cfg.NBits)
	}
	st := cfg.Start
	if st.Epoch < 0 || st.Index < 0 || st.Index > l.perEpoch {
		return nil, fmt.Errorf("data: start position %+v is outside epoch range (index 0..%d)", st, l.perEpoch)
	}
	if st.Index == l.perEpoch {
		st = Position{st.Epoch + 1, 0}
	}
	l.pos = st
	l.free = make(chan *Batch, cfg.Prefetch+1)
	for i := 0; i < cfg.Prefetch+1; i++ {
		b := &Batch{H: ds.H, W: ds.W, C: ds.C, ready: make(chan struct{}, 1)}
		b.Images = make([]uint8, 0, cfg.BatchSize*ds.ImageSize())
		if ds.Labels != nil {
			b.Labels = make([]int32, 0, cfg.BatchSize)
		}
		if ds.Attrs != nil {
			b.Attrs = make([]int32, 0, cfg.BatchSize*ds.NumAttrs)
		}
		b.Indices = make([]int, 0, cfg.BatchSize)
		l.free <- b
	}
	l.order = make(chan *Batch, cfg.Prefetch)
	l.jobs = make(chan *Batch, cfg.Prefetch)
	l.done = make(chan struct{})
	l.statsT0 = time.Now()
	l.wg.Add(1 + cfg.Workers)
	go l.dispatch(st)
	for range cfg.Workers {
		go l.work()
	}
	return l, nil
}

// BatchesPerEpoch is the number of batches each rank gets per epoch.
func (l *Loader) BatchesPerEpoch() int { return l.perEpoch }

// ImagesPerEpoch is the number of images each rank sees per epoch.
func (l *Loader) ImagesPerEpoch() int {
	if l.cfg.DropLast {
		return l.perEpoch * l.cfg.BatchSize
	}
	return l.perRank
}

// rankIndices returns this rank's dataset indices for an epoch, in visiting order.
func (l *Loader) rankIndices(epoch int) []int {
	n, w, r := l.ds.N, l.cfg.World, l.cfg.Rank
	var perm []int
	if l.cfg.Shuffle {
		perm = EpochPermutation(n, l.cfg.Seed, epoch)
	} else {
		perm = make([]int, n)
		for i := range perm {
			perm[i] = i
		}
	}
	if w == 1 {
		return perm
	}
	out := make([]int, l.perRank)
	for k := range out {
		out[k] = perm[r+w*k]
	}
	return out
}

// dispatch enumerates batch positions in order, hands each to a worker and queues it for Next.
func (l *Loader) dispatch(start Position) {
	defer l.wg.Done()
	defer close(l.order)
	defer close(l.jobs)
	bs := l.cfg.BatchSize
	for epoch := start.Epoch; l.cfg.Epochs == 0 || epoch < l.cfg.Epochs; epoch++ {
		idx := l.rankIndices(epoch)
		first := 0
		if epoch == start.Epoch {
			first = start.Index
		}
		for b := first; b < l.perEpoch; b++ {
			var buf *Batch
			select {
			case buf = <-l.free:
			case <-l.done:
				return
			}
			lo, hi := b*bs, min((b+1)*bs, len(idx))
			buf.Indices = append(buf.Indices[:0], idx[lo:hi]...)
			buf.N = hi - lo
			buf.Pos = Position{epoch, b}
			buf.EpochEnd = b == l.perEpoch-1
			if buf.EpochEnd {
				buf.Next = Position{epoch + 1, 0}
			} else {
				buf.Next = Position{epoch, b + 1}
			}
			select {
			case l.order <- buf:
			case <-l.done:
				return
			}
			select {
			case l.jobs <- buf:
			case <-l.done:
				return
			}
		}
	}
}

// work fills batches: gathers the images (applying the n_bits shift), labels and attributes.
func (l *Loader) work() {
	defer l.wg.Done()
	ds := l.ds
	sz, na := ds.ImageSize(), ds.NumAttrs
	for {
		var b *Batch
		select {
		case b = <-l.jobs:
		case <-l.done:
			return
		}
		if b == nil {
			return
		}
		b.Images = b.Images[:b.N*sz]
		for k, i := range b.Indices {
			dst, src := b.Images[k*sz:(k+1)*sz], ds.Images[i*sz:(i+1)*sz]
			if l.shift == 0 {
				copy(dst, src)
			} else {
				for j, v := range src {
					dst[j] = v >> l.shift
				}
			}
		}
		if ds.Labels != nil {
			b.Labels = b.Labels[:b.N]
			for k, i := range b.Indices {
				b.Labels[k] = ds.Labels[i]
			}
		}
		if ds.Attrs != nil {
			b.Attrs = b.Attrs[:b.N*na]
			for k, i := range b.Indices {
				copy(b.Attrs[k*na:(k+1)*na], ds.Attrs[i*na:(i+1)*na])
			}
		}
		b.ready <- struct{}{}
	}
}

// Next returns the next batch, or io.EOF after the configured epochs. It first releases the batch
// returned by the previous call. The time it blocks waiting for a batch is added to Stats().Wait.
func (l *Loader) Next() (*Batch, error) {
	if l.closed {
		return nil, ErrLoaderClosed
	}
	if l.held != nil {
		l.Release(l.held)
	}
	if l.exhausted {
		return nil, io.EOF
	}
	t0 := time.Now()
	b, ok := <-l.order
	if !ok {
		l.exhausted = true
		l.addWait(time.Since(t0), 0)
		return nil, io.EOF
	}
	<-b.ready
	l.addWait(time.Since(t0), b.N)
	l.held = b
	l.pos = b.Next
	return b, nil
}

func (l *Loader) addWait(d time.Duration, n int) {
	l.mu.Lock()
	l.stats.Wait += d
	if n > 0 {
		l.stats.Batches++
		l.stats.Images += int64(n)
	}
	l.mu.Unlock()
}

// Release hands batch b back for reuse before the next call to Next. Releasing a batch that is not
// the current one (or twice) does nothing.
func (l *Loader) Release(b *Batch) {
	if b == nil || b != l.held {
		return
	}
	l.held = nil
	l.free <- b // capacity Prefetch+1 holds every buffer, so this never blocks
}

// Position is the resume point: the position after the last batch Next returned (Start before the
// first call).
func (l *Loader) Position() Position { return l.pos }

// Stats returns the wait-time accounting so far.
func (l *Loader) Stats() LoaderStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Elapsed = time.Since(l.statsT0)
	return s
}

// ResetStats zeroes the accounting, e.g. after warm-up or at each log line.
func (l *Loader) ResetStats() {
	l.mu.Lock()
	l.stats = LoaderStats{}
	l.statsT0 = time.Now()
	l.mu.Unlock()
}

// Close stops the background goroutines and waits for them. Batches become invalid.
func (l *Loader) Close() {
	if l.closed {
		return
	}
	l.closed = true
	close(l.done)
	l.wg.Wait()
}
