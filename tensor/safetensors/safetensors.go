// Package safetensors reads and writes dlf checkpoints in the safetensors format, so that PyTorch (and
// anything else that speaks the format) can open them unmodified.
//
// # Format
//
// A file is an 8-byte little-endian header length n, n bytes of UTF-8 JSON, then the byte buffer that
// holds every tensor's data. The JSON is an object with one entry per tensor,
//
//	"level0.step3.invconv.weight": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}
//
// where data_offsets is the half-open byte range [begin, end) relative to the start of the buffer, and
// an optional "__metadata__" object mapping strings to strings. This is the layout of the format's
// reference description (huggingface/safetensors, README "Format"). Data is little-endian and
// row-major. dlf writes F32 and F64 tensors; Read accepts every dtype of the format so that files made
// elsewhere can be listed, but only F32 and F64 can be extracted.
//
// dlf keeps the model configuration, the step, optimizer and RNG state and the data-loader position as
// JSON strings in the metadata (see MetaJSON). Tensor names are hierarchical and stable
// ("level0.step3.invconv.weight", "opt.m.<name>", "ema.<name>") so that a checkpoint outlives code
// changes that reorder parameters.
//
// # Durability
//
// Write never modifies an existing checkpoint in place: it writes a temporary file in the destination
// directory, fsyncs it, renames it over the destination and fsyncs the directory. A crash at any point
// leaves either the previous file or the new one, never a mixture; at worst a stale temporary file
// named ".<base>.tmp-*" remains.
//
// # Untrusted input
//
// Read treats a checkpoint as untrusted: the header length is limited (MaxHeaderBytes) and must fit in
// the file, the JSON must be well formed with no duplicate or unknown keys, every tensor's byte range
// must lie in the buffer and match numel × dtype size, and the ranges sorted by offset must tile the
// buffer exactly (no overlap, no gap, no trailing bytes). Extraction checks the dtype and shape the
// caller expects. Every failure is one *Error naming the file and, where there is one, the tensor.
package safetensors

import (
	"fmt"

	"dlf/tensor"
)

// MaxHeaderBytes bounds the JSON header Read accepts (the format's reference reader uses the same
// 100 MB order of limit), so a corrupt length field cannot make the reader allocate gigabytes.
const MaxHeaderBytes = 100 << 20

// metadataKey is the reserved header key of the string→string metadata map.
const metadataKey = "__metadata__"

// dtypeSizes maps the format's dtype codes to element sizes in bytes.
var dtypeSizes = map[string]int{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

// DTypeCode returns the format's code for a tensor dtype: "F32" or "F64".
func DTypeCode(dt tensor.DType) string {
	switch dt {
	case tensor.Float32:
		return "F32"
	case tensor.Float64:
		return "F64"
	}
	panic(fmt.Sprintf("safetensors: no code for dtype %v", dt))
}

// HostTensor is one named tensor in host memory, as Write takes it.
type HostTensor struct {
	// Name is the tensor's key in the header; names must be unique within a file.
	Name string
	// Shape is the row-major shape; its product must equal the length of Data.
	Shape []int
	// Data is a []float32 or []float64 holding the elements.
	Data any
}

// F32 returns a Float32 HostTensor.
func F32(name string, data []float32, shape ...int) HostTensor {
	return HostTensor{Name: name, Shape: shape, Data: data}
}

// F64 returns a Float64 HostTensor.
func F64(name string, data []float64, shape ...int) HostTensor {
	return HostTensor{Name: name, Shape: shape, Data: data}
}

// FromTensor downloads t into a HostTensor of the same dtype and shape.
func FromTensor(name string, t *tensor.Tensor) HostTensor {
	var data any
	switch t.DType() {
	case tensor.Float32:
		data = t.Float32s()
	case tensor.Float64:
		data = t.Float64s()
	default:
		panic(fmt.Sprintf("safetensors: cannot store dtype %v", t.DType()))
	}
	return HostTensor{Name: name, Shape: t.Shape().Clone(), Data: data}
}

// dtypeCode returns the code and element count of Data.
func (h HostTensor) dtypeCode() (string, int, error) {
	switch d := h.Data.(type) {
	case []float32:
		return "F32", len(d), nil
	case []float64:
		return "F64", len(d), nil
	}
	return "", 0, fmt.Errorf("data is %T, want []float32 or []float64", h.Data)
}

// Error is a malformed checkpoint or a mismatch between a checkpoint and what the caller expects.
type Error struct {
	// Path is the file (or the name given to Parse).
	Path string
	// Tensor is the offending tensor's name, or "" when the problem is not about one tensor.
	Tensor string
	// Msg says what is wrong.
	Msg string
}

// Error formats the error as "safetensors: <path>: tensor "<name>": <msg>".
func (e *Error) Error() string {
	if e.Tensor != "" {
		return fmt.Sprintf("safetensors: %s: tensor %q: %s", e.Path, e.Tensor, e.Msg)
	}
	return fmt.Sprintf("safetensors: %s: %s", e.Path, e.Msg)
}

func errorf(path, name, format string, args ...any) *Error {
	return &Error{Path: path, Tensor: name, Msg: fmt.Sprintf(format, args...)}
}
