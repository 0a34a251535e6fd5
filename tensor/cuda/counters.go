package cuda

import (
	"sync/atomic"

	"dlf/tensor/cuda/cu"
)

// Counters are the driver-call counts of cu.Counters plus Reads: downloads of tensors from a CUDA
// backend (Item, Float32s, Float64s, Download), each of which waits for the backend's stream. A
// training step that keeps the GPU busy makes none between print points.
type Counters struct {
	cu.Counters
	Reads uint64
}

var reads atomic.Uint64

// ReadCounters returns the counts since the process started; subtract two readings for the calls
// in between.
func ReadCounters() Counters { return Counters{Counters: cu.ReadCounters(), Reads: reads.Load()} }

// Sub returns c − o, field by field.
func (c Counters) Sub(o Counters) Counters {
	return Counters{Counters: c.Counters.Sub(o.Counters), Reads: c.Reads - o.Reads}
}
