package collective

import (
	"fmt"

	"dlf/tensor"
	"dlf/tensor/cuda"
	"dlf/tensor/cuda/cu"
)

// NewBackendRing is NewDeviceRing over the GPUs of CUDA backends, one backend per rank (several
// backends opened on one GPU make virtual ranks), so that callers above the tensor layer never
// handle the driver bindings.
func NewBackendRing(bes []*cuda.Backend, opt Options) (*DeviceRing, error) {
	devs := make([]*cu.Device, len(bes))
	for r, be := range bes {
		if be == nil {
			return nil, fmt.Errorf("collective: rank %d has no backend", r)
		}
		devs[r] = be.Device()
	}
	return NewDeviceRing(devs, opt)
}

// AllReduceTensors is AllReduce over one float32 tensor per rank, each on its rank's CUDA backend.
// It synchronises each backend's stream first, so the tensors hold their final values.
func (g *DeviceRing) AllReduceTensors(ts []*tensor.Tensor, op Op) error {
	if len(ts) != len(g.ranks) {
		return fmt.Errorf("collective: %d tensors for %d ranks", len(ts), len(g.ranks))
	}
	ptrs := make([]cu.DevicePtr, len(ts))
	n := -1
	for r, t := range ts {
		p, be, err := cuda.DevicePtr(t)
		if err != nil {
			return fmt.Errorf("collective: rank %d: %w", r, err)
		}
		if t.DType() != tensor.Float32 || (n >= 0 && t.Numel() != n) {
			return fmt.Errorf("collective: rank %d: want float32 tensors of one size, got %v %v", r, t.DType(), t.Shape())
		}
		if err := be.Sync(); err != nil {
			return fmt.Errorf("collective: rank %d: %w", r, err)
		}
		ptrs[r], n = p, t.Numel()
	}
	return g.AllReduce(ptrs, n, op)
}
