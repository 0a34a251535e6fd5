package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"unicode/utf8"

	"dlf/tensor"
)

// Entry describes one tensor of a File.
type Entry struct {
	// Name is the tensor's key.
	Name string
	// DType is the format's dtype code ("F32", "F64", "BF16", …).
	DType string
	// Shape is the tensor's shape (empty for a scalar).
	Shape []int
	// Begin and End are the byte range [Begin, End) in the data buffer.
	Begin, End int
}

// Numel returns the number of elements.
func (e Entry) Numel() int {
	n := 1
	for _, d := range e.Shape {
		n *= d
	}
	return n
}

// File is a parsed, validated checkpoint held in memory.
type File struct {
	// Path is the file it was read from (or the name given to Parse); errors name it.
	Path string
	// Meta is the "__metadata__" map (empty when the file has none).
	Meta map[string]string

	entries map[string]Entry
	order   []string // names by ascending offset
	data    []byte   // the byte buffer after the header (nil after ReadHeader)
	dataLen int      // its length, which the layout is checked against
}

// Read reads and validates the checkpoint at path. See the package comment for what is checked.
func Read(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	size := st.Size()
	var pre [8]byte
	if _, err := io.ReadFull(f, pre[:]); err != nil {
		return nil, errorf(path, "", "file of %d bytes is too short for the 8-byte header length", size)
	}
	n := binary.LittleEndian.Uint64(pre[:])
	if err := checkHeaderLen(path, n, uint64(size)); err != nil {
		return nil, err
	}
	// The size is known to be sane only now, so the whole file is read in one allocation.
	buf := make([]byte, size)
	copy(buf, pre[:])
	if _, err := io.ReadFull(f, buf[8:]); err != nil {
		return nil, errorf(path, "", "reading %d bytes: %v (file changed while reading?)", size, err)
	}
	return Parse(path, buf)
}

// ReadHeader reads and validates the header of the checkpoint at path against the file's size —
// everything Read checks except that the data bytes can be read — without reading the data: the
// metadata, names, dtypes and shapes of a large checkpoint, and a truncated file caught, at the
// cost of one small read. The tensors' data cannot be accessed through the result.
func ReadHeader(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	size := st.Size()
	var pre [8]byte
	if _, err := io.ReadFull(f, pre[:]); err != nil {
		return nil, errorf(path, "", "file of %d bytes is too short for the 8-byte header length", size)
	}
	n := binary.LittleEndian.Uint64(pre[:])
	if err := checkHeaderLen(path, n, uint64(size)); err != nil {
		return nil, err
	}
	header := make([]byte, n)
	if _, err := io.ReadFull(f, header); err != nil {
		return nil, errorf(path, "", "reading the %d-byte header: %v (file changed while reading?)", n, err)
	}
	return parse(path, header, nil, int(uint64(size)-8-n))
}

func checkHeaderLen(path string, n, size uint64) error {
	if n > MaxHeaderBytes {
		return errorf(path, "", "header length %d exceeds the limit of %d bytes (corrupt file?)", n, MaxHeaderBytes)
	}
	if n > size-8 {
		return errorf(path, "", "header length %d exceeds the %d bytes after the length field (truncated file?)", n, size-8)
	}
	return nil
}

// Parse validates a complete checkpoint held in b; path is used in error messages only. The File
// keeps a reference to b.
func Parse(path string, b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, errorf(path, "", "file of %d bytes is too short for the 8-byte header length", len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if err := checkHeaderLen(path, n, uint64(len(b))); err != nil {
		return nil, err
	}
	return parse(path, b[8:8+n], b[8+n:], len(b)-8-int(n))
}

// parse validates a header against a data buffer of dataLen bytes (data may be nil: header only).
func parse(path string, header, data []byte, dataLen int) (*File, error) {
	f := &File{Path: path, Meta: map[string]string{}, entries: map[string]Entry{}, data: data, dataLen: dataLen}
	if err := f.parseHeader(header); err != nil {
		return nil, err
	}
	return f, f.checkLayout()
}

// parseHeader walks the JSON with the token reader rather than unmarshalling into a map, so that
// duplicate keys (which a map would silently collapse) are caught.
func (f *File) parseHeader(h []byte) error {
	if len(h) == 0 || h[0] != '{' {
		return errorf(f.Path, "", "header does not start with '{'")
	}
	if !utf8.Valid(h) {
		return errorf(f.Path, "", "header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(h))
	dec.UseNumber()
	p := &headerParser{dec: dec, path: f.Path}
	if err := p.delim('{', ""); err != nil {
		return err
	}
	seenMeta := false
	for dec.More() {
		key, err := p.key("")
		if err != nil {
			return err
		}
		if key == metadataKey {
			if seenMeta {
				return errorf(f.Path, "", "%q appears twice", metadataKey)
			}
			seenMeta = true
			if err := p.meta(f.Meta); err != nil {
				return err
			}
			continue
		}
		if key == "" {
			return errorf(f.Path, "", "a tensor has an empty name")
		}
		if _, dup := f.entries[key]; dup {
			return errorf(f.Path, key, "appears twice in the header")
		}
		e, err := p.entry(key)
		if err != nil {
			return err
		}
		f.entries[key] = e
	}
	if err := p.delim('}', ""); err != nil {
		return err
	}
	// Only the padding spaces the format allows may follow the object.
	if tok, err := dec.Token(); err != io.EOF {
		return errorf(f.Path, "", "unexpected %v after the header object (err %v)", tok, err)
	}
	return nil
}

// checkLayout checks each tensor's byte range and that the ranges tile the buffer.
func (f *File) checkLayout() error {
	for _, e := range f.entries {
		size := dtypeSizes[e.DType]
		numel := 1
		for _, d := range e.Shape {
			if d != 0 && numel > math.MaxInt/size/d {
				return errorf(f.Path, e.Name, "shape %v is too large", e.Shape)
			}
			numel *= d
		}
		if e.Begin > e.End || e.End > f.dataLen {
			return errorf(f.Path, e.Name, "data_offsets [%d, %d) are outside the %d-byte data buffer", e.Begin, e.End, f.dataLen)
		}
		if e.End-e.Begin != numel*size {
			return errorf(f.Path, e.Name, "data_offsets [%d, %d) hold %d bytes, but %s %v needs %d", e.Begin, e.End, e.End-e.Begin, e.DType, e.Shape, numel*size)
		}
		f.order = append(f.order, e.Name)
	}
	slices.SortFunc(f.order, func(a, b string) int {
		ea, eb := f.entries[a], f.entries[b]
		if ea.Begin != eb.Begin {
			return ea.Begin - eb.Begin
		}
		if ea.End != eb.End {
			return ea.End - eb.End
		}
		return bytes.Compare([]byte(a), []byte(b))
	})
	pos := 0
	for _, name := range f.order {
		e := f.entries[name]
		if e.Begin != pos {
			if e.Begin < pos {
				return errorf(f.Path, name, "data_offsets [%d, %d) overlap the previous tensor, which ends at %d", e.Begin, e.End, pos)
			}
			return errorf(f.Path, name, "data_offsets [%d, %d) leave a gap after byte %d", e.Begin, e.End, pos)
		}
		pos = e.End
	}
	if pos != f.dataLen {
		return errorf(f.Path, "", "tensors cover %d bytes but the data buffer has %d (trailing bytes)", pos, f.dataLen)
	}
	return nil
}

// headerParser reads the header's tokens and reports errors against the file and tensor.
type headerParser struct {
	dec  *json.Decoder
	path string
}

func (p *headerParser) token(name string) (json.Token, error) {
	tok, err := p.dec.Token()
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, errorf(p.path, name, "malformed header JSON at header byte %d: %v", se.Offset, err)
		}
		return nil, errorf(p.path, name, "malformed header JSON: %v", err)
	}
	return tok, nil
}

func (p *headerParser) delim(want json.Delim, name string) error {
	tok, err := p.token(name)
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return errorf(p.path, name, "header JSON has %v where %q was expected", tok, string(want))
	}
	return nil
}

func (p *headerParser) key(name string) (string, error) {
	tok, err := p.token(name)
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", errorf(p.path, name, "header JSON has %v where a key was expected", tok)
	}
	return s, nil
}

func (p *headerParser) str(name, field string) (string, error) {
	tok, err := p.token(name)
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", errorf(p.path, name, "%s is %v, want a string", field, tok)
	}
	return s, nil
}

// ints reads an array of non-negative integers that fit in an int.
func (p *headerParser) ints(name, field string) ([]int, error) {
	if err := p.delim('[', name); err != nil {
		return nil, errorf(p.path, name, "%s is not an array", field)
	}
	out := []int{}
	for p.dec.More() {
		tok, err := p.token(name)
		if err != nil {
			return nil, err
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, errorf(p.path, name, "%s holds %v, want an integer", field, tok)
		}
		v, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil || v < 0 || v > math.MaxInt {
			return nil, errorf(p.path, name, "%s holds %s, want a non-negative integer", field, num)
		}
		out = append(out, int(v))
	}
	return out, p.delim(']', name)
}

func (p *headerParser) entry(name string) (Entry, error) {
	e := Entry{Name: name}
	if err := p.delim('{', name); err != nil {
		return e, errorf(p.path, name, "header value is not an object")
	}
	var haveDType, haveShape, haveOffsets bool
	for p.dec.More() {
		field, err := p.key(name)
		if err != nil {
			return e, err
		}
		switch field {
		case "dtype":
			if haveDType {
				return e, errorf(p.path, name, "dtype appears twice")
			}
			haveDType = true
			if e.DType, err = p.str(name, "dtype"); err != nil {
				return e, err
			}
			if _, ok := dtypeSizes[e.DType]; !ok {
				return e, errorf(p.path, name, "unknown dtype %q", e.DType)
			}
		case "shape":
			if haveShape {
				return e, errorf(p.path, name, "shape appears twice")
			}
			haveShape = true
			if e.Shape, err = p.ints(name, "shape"); err != nil {
				return e, err
			}
		case "data_offsets":
			if haveOffsets {
				return e, errorf(p.path, name, "data_offsets appears twice")
			}
			haveOffsets = true
			off, err := p.ints(name, "data_offsets")
			if err != nil {
				return e, err
			}
			if len(off) != 2 {
				return e, errorf(p.path, name, "data_offsets has %d values, want [begin, end]", len(off))
			}
			e.Begin, e.End = off[0], off[1]
		default:
			return e, errorf(p.path, name, "unknown field %q", field)
		}
	}
	if !haveDType || !haveShape || !haveOffsets {
		return e, errorf(p.path, name, "entry lacks dtype, shape or data_offsets")
	}
	return e, p.delim('}', name)
}

func (p *headerParser) meta(m map[string]string) error {
	if err := p.delim('{', ""); err != nil {
		return errorf(p.path, "", "%s is not an object", metadataKey)
	}
	for p.dec.More() {
		k, err := p.key("")
		if err != nil {
			return err
		}
		if _, dup := m[k]; dup {
			return errorf(p.path, "", "metadata key %q appears twice", k)
		}
		v, err := p.str("", "metadata value of "+strconv.Quote(k))
		if err != nil {
			return err
		}
		m[k] = v
	}
	return p.delim('}', "")
}

// Names returns the tensor names in file order (ascending data offset).
func (f *File) Names() []string { return slices.Clone(f.order) }

// Entry returns the description of the named tensor.
func (f *File) Entry(name string) (Entry, bool) {
	e, ok := f.entries[name]
	return e, ok
}

// Raw returns the named tensor's bytes as stored (little-endian), for bit-exact comparisons and
// hashing; the slice aliases the file's buffer and must not be modified.
func (f *File) Raw(name string) ([]byte, error) {
	e, ok := f.entries[name]
	if !ok {
		return nil, errorf(f.Path, name, "not in the checkpoint")
	}
	if f.data == nil {
		return nil, errorf(f.Path, name, "only the header was read (ReadHeader)")
	}
	return f.data[e.Begin:e.End], nil
}

// lookup finds name and checks its dtype code and shape against the caller's expectation.
func (f *File) lookup(name, code string, shape []int) (Entry, error) {
	e, ok := f.entries[name]
	if !ok {
		return e, errorf(f.Path, name, "not in the checkpoint")
	}
	if e.DType != code {
		return e, errorf(f.Path, name, "dtype is %s, want %s", e.DType, code)
	}
	if !slices.Equal(e.Shape, shape) {
		return e, errorf(f.Path, name, "shape is %v, want %v", e.Shape, shape)
	}
	if f.data == nil {
		return e, errorf(f.Path, name, "only the header was read (ReadHeader)")
	}
	return e, nil
}

// Float32 returns the named F32 tensor's data, which must have exactly the given shape.
func (f *File) Float32(name string, shape []int) ([]float32, error) {
	e, err := f.lookup(name, "F32", shape)
	if err != nil {
		return nil, err
	}
	b := f.data[e.Begin:e.End]
	out := make([]float32, len(b)/4)
	readData(out, b, littleEndian())
	return out, nil
}

// Float64 returns the named F64 tensor's data, which must have exactly the given shape.
func (f *File) Float64(name string, shape []int) ([]float64, error) {
	e, err := f.lookup(name, "F64", shape)
	if err != nil {
		return nil, err
	}
	b := f.data[e.Begin:e.End]
	out := make([]float64, len(b)/8)
	readData(out, b, littleEndian())
	return out, nil
}

// readData fills out ([]float32 or []float64) from little-endian bytes b of the same size. With raw
// set (a little-endian host) it is one memory copy; otherwise each element is converted.
func readData(out any, b []byte, raw bool) {
	if raw {
		copy(dataBytes(out), b)
		return
	}
	switch o := out.(type) {
	case []float32:
		for i := range o {
			o[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case []float64:
		for i := range o {
			o[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
	}
}

// Tensor returns the named tensor's data as []float32 or []float64 according to dt, checking dtype
// and shape.
func (f *File) Tensor(name string, dt tensor.DType, shape []int) (any, error) {
	switch dt {
	case tensor.Float32:
		return f.Float32(name, shape)
	case tensor.Float64:
		return f.Float64(name, shape)
	}
	return nil, errorf(f.Path, name, "cannot extract dtype %v", dt)
}

// Load uploads the named tensor into dst, whose dtype and shape it must match.
func (f *File) Load(name string, dst *tensor.Tensor) error {
	data, err := f.Tensor(name, dst.DType(), dst.Shape())
	if err != nil {
		return err
	}
	dst.Upload(data)
	return nil
}

// MetaJSON decodes the metadata value under key, a JSON document, into v.
func (f *File) MetaJSON(key string, v any) error {
	s, ok := f.Meta[key]
	if !ok {
		return errorf(f.Path, "", "metadata has no %q", key)
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return errorf(f.Path, "", "metadata %q: %v", key, err)
	}
	return nil
}
