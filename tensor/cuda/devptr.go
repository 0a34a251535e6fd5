package cuda

import (
	"fmt"

	"dlf/tensor"
	"dlf/tensor/cuda/cu"
)

// DevicePtr returns the device address of t's storage and the backend that owns it, so that other
// packages (tensor/collective's device reducer) can queue copies and kernels on that memory without
// a host round trip. Work on the address must be ordered after the backend's stream (Stream) by a
// stream synchronisation or an event. Unlike the backend's internal accessor it reports misuse as
// an error: a nil tensor, a released one, or one that belongs to another backend.
func DevicePtr(t *tensor.Tensor) (cu.DevicePtr, *Backend, error) {
	if t == nil {
		return 0, nil, fmt.Errorf("cuda: DevicePtr of a nil tensor")
	}
	be, ok := t.Backend().(*Backend)
	if !ok {
		return 0, nil, fmt.Errorf("cuda: DevicePtr: tensor %v belongs to backend %s, not a CUDA backend", t, t.Backend().Name())
	}
	buf := t.Buffer()
	if buf == nil {
		return 0, nil, fmt.Errorf("cuda: DevicePtr: tensor %v is released (or was never allocated)", t)
	}
	bb, ok := buf.(*buffer)
	if !ok {
		return 0, nil, fmt.Errorf("cuda: DevicePtr: tensor %v has a %T buffer, not a CUDA one", t, buf)
	}
	return bb.ptr, be, nil
}
