package cuda

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"dlf/kernels"
	"dlf/tensor"
	"dlf/tensor/cuda/cu"
)

// Backend is tensor.Backend on one CUDA device (Float32 only). It is safe for concurrent use: ops
// from several goroutines are serialised on the device worker.
type Backend struct {
	dev     *cu.Device
	ownsDev bool // Close closes dev (New opened it)
	k       *kernels.Kernels
	stream  cu.Stream
	name    string
	poison  bool
	// tile, when set (WithTile), replaces the tiling policy of GEMM and the convolutions.
	tile *tile

	alloc allocator

	// Free may run on any goroutine (GC cleanups); it queues here and the worker applies the queue
	// at its next job, so the free lists are only ever touched on the worker.
	pendingMu sync.Mutex
	pending   []*buffer

	failed atomic.Bool
	errMu  sync.Mutex
	err    error
	closed atomic.Bool
}

// Backend implements tensor.Backend.
var _ tensor.Backend = (*Backend)(nil)

// Option configures New and NewOnDevice.
type Option func(*Backend)

// WithPoison makes Alloc fill every new buffer with NaN (one memset each), so that reads of memory
// no op has written show up as NaN. For tests and bug hunts.
func WithPoison(on bool) Option { return func(b *Backend) { b.poison = on } }

// New opens CUDA device ordinal, loads every kernel and creates the backend's stream. Without a
// driver or a device it returns an error matching cu.ErrNoLibrary or cu.ErrNoDevice (errors.Is),
// saying so. Close releases everything.
func New(ordinal int, opts ...Option) (*Backend, error) {
	dev, err := cu.Open(ordinal)
	if err != nil {
		switch {
		case errors.Is(err, cu.ErrNoLibrary):
			return nil, fmt.Errorf("cuda: cannot use GPU %d: no CUDA driver on this machine (install the NVIDIA driver, or use the CPU backend): %w", ordinal, err)
		case errors.Is(err, cu.ErrNoDevice):
			return nil, fmt.Errorf("cuda: cannot use GPU %d: the CUDA driver finds no device (use the CPU backend): %w", ordinal, err)
		}
		return nil, fmt.Errorf("cuda: open GPU %d: %w", ordinal, err)
	}
	b, err := NewOnDevice(dev, opts...)
	if err != nil {
		_ = dev.Close()
		return nil, err
	}
	b.ownsDev = true
	return b, nil
}

// Tiles lists the block tiles of the GEMM and convolution kernels by name, as WithTile takes them:
// 128x128 (large), 64x64 (small) and 128x32 (narrow), each with an FP32 (gemm.cuh) and a TF32
// (mma.cuh) kernel.
func Tiles() []string { return []string{"128x128", "64x64", "128x32"} }

// WithTile makes every GEMM and convolution use the named block tile (see Tiles) instead of the
// shape-based policy, so that a workbench (dev/cuda) can time and check each kernel variant on any
// shape; "" keeps the policy. Results stay correct for any tile: only speed changes.
func WithTile(name string) Option {
	return func(b *Backend) {
		switch name {
		case "128x128":
			b.tile = &tileL
		case "64x64":
			b.tile = &tileS
		case "128x32":
			b.tile = &tileN
		case "":
			b.tile = nil
		default:
			b.fail("WithTile", fmt.Errorf("cuda: unknown tile %q (have %v)", name, Tiles()))
		}
	}
}

// NewOnDevice builds a backend on an already opened device (tests share one through gputest); Close
// leaves the device open. Several backends may share a device: each has its own stream, kernels and
// allocator, and tensors must not move between them.
func NewOnDevice(dev *cu.Device, opts ...Option) (*Backend, error) {
	b := &Backend{dev: dev, name: fmt.Sprintf("cuda:%d", dev.Ordinal())}
	for _, o := range opts {
		o(b)
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	k, err := kernels.Load(dev)
	if err != nil {
		return nil, fmt.Errorf("cuda: %s: load kernels: %w", b.name, err)
	}
	b.k = k
	err = dev.Do(func() error {
		s, err := cu.StreamCreate()
		b.stream = s
		return err
	})
	if err != nil {
		_ = k.Unload()
		return nil, fmt.Errorf("cuda: %s: create stream: %w", b.name, err)
	}
	b.alloc.wait = func() error { return cu.StreamSynchronize(b.stream) }
	return b, nil
}

// Close waits for queued work, frees the cached memory, destroys the stream and unloads the kernels
// (and closes the device when New opened it). Memory of tensors still alive stays allocated until
// the context goes away. The backend is unusable afterwards.
func (b *Backend) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	var errs []error
	errs = append(errs, b.dev.Do(func() error {
		err := cu.StreamSynchronize(b.stream)
		b.drainFrees()
		err = errors.Join(err, b.alloc.releaseCached())
		return errors.Join(err, cu.StreamDestroy(b.stream))
	}))
	errs = append(errs, b.k.Unload())
	if b.ownsDev {
		errs = append(errs, b.dev.Close())
	}
	b.fail("Close", errors.New("backend closed"))
	return errors.Join(errs...)
}

// Name returns "cuda:<ordinal>".
func (b *Backend) Name() string { return b.name }

// Supports reports true for Float32 only: the kernels are single precision.
func (b *Backend) Supports(dt tensor.DType) bool { return dt == tensor.Float32 }

// Device returns the device the backend runs on.
func (b *Backend) Device() *cu.Device { return b.dev }

// Stream returns the backend's stream; work queued on it from inside Device().Do is ordered with
// the backend's ops.
func (b *Backend) Stream() cu.Stream { return b.stream }

// Err returns the first failure recorded, or nil.
func (b *Backend) Err() error {
	if !b.failed.Load() {
		return nil
	}
	b.errMu.Lock()
	defer b.errMu.Unlock()
	return b.err
}

// Sync waits for all queued work and returns Err (including faults of kernels that ran since the
// last synchronisation).
func (b *Backend) Sync() error {
	b.run("Sync", func() error { return cu.StreamSynchronize(b.stream) })
	return b.Err()
}

// IsFatal reports whether err is a sticky CUDA error (for example 700 CUDA_ERROR_ILLEGAL_ADDRESS or
// 719 CUDA_ERROR_LAUNCH_FAILED): the device context is unusable and the process must restart.
func IsFatal(err error) bool { return cu.IsSticky(err) }

// fail records err (the first one wins) under the op's name.
func (b *Backend) fail(op string, err error) {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	if b.err == nil {
		if cu.IsSticky(err) {
			b.err = fmt.Errorf("%s: %s: FATAL: %w", b.name, op, err)
		} else {
			b.err = fmt.Errorf("%s: %s: %w", b.name, op, err)
		}
		b.failed.Store(true)
	}
}

// run executes fn on the device worker unless the backend has failed, and records fn's error.
// Pending frees are applied first, so fn may allocate from blocks freed since the last op.
func (b *Backend) run(op string, fn func() error) {
	if b.failed.Load() {
		return
	}
	err := b.dev.Do(func() error {
		b.drainFrees()
		return fn()
	})
	if err != nil {
		b.fail(op, err)
	}
}

// dptr returns the device address of t's storage, 0 for a nil t. A released tensor panics: using a
// tensor after Release is a programming error (tensor.Tensor.Release).
func dptr(t *tensor.Tensor) cu.DevicePtr {
	if t == nil {
		return 0
	}
	buf := t.Buffer()
	if buf == nil {
		panic(fmt.Sprintf("cuda: use of a released (or never allocated) tensor %v", t))
	}
	bb, ok := buf.(*buffer)
	if !ok {
		panic(fmt.Sprintf("cuda: tensor %v belongs to backend %s, not a CUDA backend", t, t.Backend().Name()))
	}
	return bb.ptr
}

// Time runs fn (which queues ops on this backend) between two CUDA events on the stream and returns
// the device time between them. It synchronises. Benchmarks and the CLI's bench use it.
func (b *Backend) Time(fn func()) (time.Duration, error) {
	if err := b.Err(); err != nil {
		return 0, err
	}
	var start, end cu.Event
	err := b.dev.Do(func() error {
		var err error
		if start, err = cu.EventCreate(cu.EventDefault); err != nil {
			return err
		}
		if end, err = cu.EventCreate(cu.EventDefault); err != nil {
			return err
		}
		return cu.EventRecord(start, b.stream)
	})
	defer func() {
		_ = b.dev.Do(func() error {
			if start != 0 {
				_ = cu.EventDestroy(start)
			}
			if end != 0 {
				_ = cu.EventDestroy(end)
			}
			return nil
		})
	}()
	if err != nil {
		return 0, fmt.Errorf("%s: timing events: %w", b.name, err)
	}
	fn()
	var ms float32
	err = b.dev.Do(func() error {
		if err := cu.EventRecord(end, b.stream); err != nil {
			return err
		}
		if err := cu.EventSynchronize(end); err != nil {
			return err
		}
		var err error
		ms, err = cu.EventElapsedTime(start, end)
		return err
	})
	if err != nil {
		b.fail("Time", err)
		return 0, b.Err()
	}
	if err := b.Err(); err != nil {
		return 0, err
	}
	return time.Duration(float64(ms) * float64(time.Millisecond)), nil
}

// nanBits is the float32 quiet NaN used to poison buffers.
var nanBits = math.Float32bits(float32(math.NaN()))

// DeviceCount loads the CUDA driver (once) and returns how many GPUs it sees; an error says why no
// GPU can be used (no driver library, no device, a driver too old).
func DeviceCount() (int, error) {
	if err := cu.Init(); err != nil {
		return 0, err
	}
	return cu.DeviceCount()
}
