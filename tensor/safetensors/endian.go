package safetensors

import "unsafe"

// littleEndian reports whether the host stores numbers little-endian, the format's byte order (all
// of dlf's targets do). Tensor data is then copied as raw bytes instead of element by element, which
// makes encoding and extraction run at memory-copy speed.
func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

// dataBytes views the memory of a []float32 or []float64 as bytes (no copy).
func dataBytes(data any) []byte {
	switch d := data.(type) {
	case []float32:
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(d))), 4*len(d))
	case []float64:
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(d))), 8*len(d))
	}
	return nil
}
