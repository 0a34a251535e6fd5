package data

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strings"
)

// A tf.train.Example (tensorflow/core/example/example.proto, feature.proto) in protobuf wire format
// (protobuf "Encoding" guide: varint tags field<<3|wiretype; wire types 0 varint, 1 fixed64,
// 2 length-delimited, 5 fixed32):
//
//	Example   { Features features = 1; }
//	Features  { map<string, Feature> feature = 1; }   // map entry: key = 1, value = 2
//	Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
//	BytesList { repeated bytes value = 1; }
//	FloatList { repeated float value = 1 [packed = true]; }
//	Int64List { repeated int64 value = 1 [packed = true]; }
//
// The parser below reads only these messages and skips unknown fields, as protobuf requires.

// FeatureKind says which list a Feature holds.
type FeatureKind int

// Feature kinds, numbered as the oneof fields of tf.train.Feature.
const (
	KindNone  FeatureKind = 0
	KindBytes FeatureKind = 1
	KindFloat FeatureKind = 2
	KindInt64 FeatureKind = 3
)

// Feature is one tf.train.Feature: exactly one of the lists is meaningful, selected by Kind.
// Parsed byte values alias the record buffer.
type Feature struct {
	Kind   FeatureKind
	Bytes  [][]byte
	Floats []float32
	Int64s []int64
}

// Example is a decoded tf.train.Example: feature name → feature.
type Example map[string]*Feature

// wire types
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// pbReader walks one protobuf message.
type pbReader struct {
	b   []byte
	pos int
}

func (p *pbReader) varint() (uint64, error) {
	var v uint64
	for i := 0; i < 10; i++ {
		if p.pos >= len(p.b) {
			return 0, fmt.Errorf("truncated varint at byte %d", p.pos)
		}
		c := p.b[p.pos]
		p.pos++
		if i == 9 && c > 1 {
			return 0, fmt.Errorf("varint overflows 64 bits at byte %d", p.pos-1)
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("varint longer than 10 bytes at byte %d", p.pos)
}

// field reads the next tag and, for length-delimited fields, the payload; fixed and varint values are
// returned in v. Groups (wire types 3, 4) are rejected: tf.train messages never contain them.
func (p *pbReader) field() (num int, wt int, v uint64, payload []byte, err error) {
	tag, err := p.varint()
	if err != nil {
		return 0, 0, 0, nil, err
	}
	num, wt = int(tag>>3), int(tag&7)
	if num == 0 || tag>>3 > 1<<29 {
		return 0, 0, 0, nil, fmt.Errorf("invalid field number %d at byte %d", tag>>3, p.pos)
	}
	switch wt {
	case wireVarint:
		v, err = p.varint()
	case wireFixed64:
		if len(p.b)-p.pos < 8 {
			return 0, 0, 0, nil, fmt.Errorf("truncated fixed64 at byte %d", p.pos)
		}
		v = binary.LittleEndian.Uint64(p.b[p.pos:])
		p.pos += 8
	case wireFixed32:
		if len(p.b)-p.pos < 4 {
			return 0, 0, 0, nil, fmt.Errorf("truncated fixed32 at byte %d", p.pos)
		}
		v = uint64(binary.LittleEndian.Uint32(p.b[p.pos:]))
		p.pos += 4
	case wireBytes:
		var n uint64
		n, err = p.varint()
		if err == nil && n > uint64(len(p.b)-p.pos) {
			err = fmt.Errorf("length %d at byte %d runs past the end of its %d-byte message", n, p.pos, len(p.b))
		}
		if err == nil {
			payload = p.b[p.pos : p.pos+int(n) : p.pos+int(n)]
			p.pos += int(n)
		}
	default:
		err = fmt.Errorf("unsupported wire type %d for field %d at byte %d", wt, num, p.pos)
	}
	return num, wt, v, payload, err
}

func (p *pbReader) done() bool { return p.pos >= len(p.b) }

// ParseExample decodes a serialized tf.train.Example.
func ParseExample(b []byte) (Example, error) {
	ex := Example{}
	top := &pbReader{b: b}
	for !top.done() {
		num, wt, _, feats, err := top.field()
		if err != nil {
			return nil, fmt.Errorf("Example: %v", err)
		}
		if num != 1 {
			continue
		}
		if wt != wireBytes {
			return nil, fmt.Errorf("Example.features has wire type %d, want 2", wt)
		}
		fr := &pbReader{b: feats}
		for !fr.done() {
			num, wt, _, entry, err := fr.field()
			if err != nil {
				return nil, fmt.Errorf("Features: %v", err)
			}
			if num != 1 {
				continue
			}
			if wt != wireBytes {
				return nil, fmt.Errorf("Features.feature has wire type %d, want 2", wt)
			}
			key, f, err := parseFeatureEntry(entry)
			if err != nil {
				return nil, err
			}
			ex[key] = f // map semantics: the last entry for a key wins
		}
	}
	return ex, nil
}

// parseFeatureEntry decodes one map<string, Feature> entry.
func parseFeatureEntry(b []byte) (string, *Feature, error) {
	er := &pbReader{b: b}
	key := ""
	f := &Feature{}
	for !er.done() {
		num, wt, _, payload, err := er.field()
		if err != nil {
			return "", nil, fmt.Errorf("feature entry: %v", err)
		}
		switch num {
		case 1:
			if wt != wireBytes {
				return "", nil, fmt.Errorf("feature key has wire type %d, want 2", wt)
			}
			key = string(payload)
		case 2:
			if wt != wireBytes {
				return "", nil, fmt.Errorf("feature %q value has wire type %d, want 2", key, wt)
			}
			if err := parseFeature(payload, f); err != nil {
				return "", nil, fmt.Errorf("feature %q: %v", key, err)
			}
		}
	}
	return key, f, nil
}

// parseFeature decodes a tf.train.Feature into f; a repeated occurrence of the same list merges
// (protobuf message-merge semantics), a different list replaces it (oneof semantics).
func parseFeature(b []byte, f *Feature) error {
	fr := &pbReader{b: b}
	for !fr.done() {
		num, wt, _, list, err := fr.field()
		if err != nil {
			return err
		}
		if num < 1 || num > 3 {
			continue
		}
		if wt != wireBytes {
			return fmt.Errorf("list field %d has wire type %d, want 2", num, wt)
		}
		kind := FeatureKind(num)
		if f.Kind != kind {
			*f = Feature{Kind: kind}
		}
		lr := &pbReader{b: list}
		for !lr.done() {
			n, wt, v, payload, err := lr.field()
			if err != nil {
				return err
			}
			if n != 1 {
				continue
			}
			switch {
			case kind == KindBytes && wt == wireBytes:
				f.Bytes = append(f.Bytes, payload)
			case kind == KindFloat && wt == wireFixed32:
				f.Floats = append(f.Floats, math.Float32frombits(uint32(v)))
			case kind == KindFloat && wt == wireBytes:
				if len(payload)%4 != 0 {
					return fmt.Errorf("packed float list of %d bytes is not a multiple of 4", len(payload))
				}
				for i := 0; i < len(payload); i += 4 {
					f.Floats = append(f.Floats, math.Float32frombits(binary.LittleEndian.Uint32(payload[i:])))
				}
			case kind == KindInt64 && wt == wireVarint:
				f.Int64s = append(f.Int64s, int64(v))
			case kind == KindInt64 && wt == wireBytes:
				pr := &pbReader{b: payload}
				for !pr.done() {
					x, err := pr.varint()
					if err != nil {
						return fmt.Errorf("packed int64 list: %v", err)
					}
					f.Int64s = append(f.Int64s, int64(x))
				}
			default:
				return fmt.Errorf("list kind %d value has wire type %d", kind, wt)
			}
		}
	}
	return nil
}

// appendVarint appends the protobuf varint encoding of v.
func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendLenField appends field num as a length-delimited payload.
func appendLenField(b []byte, num int, payload []byte) []byte {
	b = appendVarint(b, uint64(num)<<3|wireBytes)
	b = appendVarint(b, uint64(len(payload)))
	return append(b, payload...)
}

// Marshal encodes the Example in protobuf wire format with keys in sorted order (so output is
// deterministic) and numeric lists packed, as TensorFlow writes them.
func (e Example) Marshal() []byte {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var feats []byte
	for _, k := range keys {
		f := e[k]
		var list []byte
		switch f.Kind {
		case KindBytes:
			for _, v := range f.Bytes {
				list = appendLenField(list, 1, v)
			}
		case KindFloat:
			packed := make([]byte, 4*len(f.Floats))
			for i, v := range f.Floats {
				binary.LittleEndian.PutUint32(packed[4*i:], math.Float32bits(v))
			}
			if len(packed) > 0 {
				list = appendLenField(list, 1, packed)
			}
		case KindInt64:
			var packed []byte
			for _, v := range f.Int64s {
				packed = appendVarint(packed, uint64(v))
			}
			if len(packed) > 0 {
				list = appendLenField(list, 1, packed)
			}
		}
		var feat []byte
		if f.Kind != KindNone {
			feat = appendLenField(nil, int(f.Kind), list)
		}
		entry := appendLenField(nil, 1, []byte(k))
		entry = appendLenField(entry, 2, feat)
		feats = appendLenField(feats, 1, entry)
	}
	return appendLenField(nil, 1, feats)
}

// Shape is an image shape H×W×C; the zero value means "unknown, infer it".
type Shape struct{ H, W, C int }

// recordImage is one image decoded from an Example.
type recordImage struct {
	shape    Shape
	pixels   []uint8
	label    int32
	hasLabel bool
	attrs    []int32
}

// exampleImage decodes an Example in one of the two supported layouts, detected by feature names:
//
//   - Glow (openai/glow data_loaders): "data" = one bytes value of uint8 HWC pixels, "shape" =
//     int64[3] (H, W, C; optional when hint is given), "label" = int64[1] (optional), "attr" =
//     int64[40] CelebA attributes (optional).
//   - DLF reference (naturomics/DLF converters): "image" = one bytes value of little-endian float32
//     HWC pixel values that must be whole numbers in [0,255], "label" = int64 (optional). The shape
//     is not stored, so it comes from hint, or is inferred as a square with 3 or else 1 channels.
func exampleImage(ex Example, hint Shape) (*recordImage, error) {
	ri := &recordImage{}
	if f, ok := ex["data"]; ok {
		if f.Kind != KindBytes || len(f.Bytes) != 1 {
			return nil, fmt.Errorf("feature \"data\" must be one bytes value (Glow layout), got kind %d with %d bytes values", f.Kind, len(f.Bytes))
		}
		raw := f.Bytes[0]
		if sf, ok := ex["shape"]; ok {
			if sf.Kind != KindInt64 || len(sf.Int64s) != 3 {
				return nil, fmt.Errorf("feature \"shape\" must be int64[3] (H, W, C), got kind %d with %d int64 values", sf.Kind, len(sf.Int64s))
			}
			for _, d := range sf.Int64s {
				if d <= 0 || d > 1<<20 {
					return nil, fmt.Errorf("feature \"shape\" %v has an invalid dimension", sf.Int64s)
				}
			}
			ri.shape = Shape{int(sf.Int64s[0]), int(sf.Int64s[1]), int(sf.Int64s[2])}
			if hint != (Shape{}) && ri.shape != hint {
				return nil, fmt.Errorf("image shape %dx%dx%d, want %dx%dx%d", ri.shape.H, ri.shape.W, ri.shape.C, hint.H, hint.W, hint.C)
			}
		} else if hint != (Shape{}) {
			ri.shape = hint
		} else {
			s, err := inferSquare(len(raw))
			if err != nil {
				return nil, fmt.Errorf("feature \"data\" without \"shape\": %v", err)
			}
			ri.shape = s
		}
		if n := ri.shape.H * ri.shape.W * ri.shape.C; len(raw) != n {
			return nil, fmt.Errorf("feature \"data\" has %d bytes, want %dx%dx%d = %d", len(raw), ri.shape.H, ri.shape.W, ri.shape.C, n)
		}
		ri.pixels = raw
	} else if f, ok := ex["image"]; ok {
		var vals []float32
		switch {
		case f.Kind == KindBytes && len(f.Bytes) == 1:
			raw := f.Bytes[0]
			if len(raw)%4 != 0 {
				return nil, fmt.Errorf("feature \"image\" has %d bytes, not a whole number of float32 values", len(raw))
			}
			vals = make([]float32, len(raw)/4)
			for i := range vals {
				vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
		case f.Kind == KindFloat:
			vals = f.Floats
		default:
			return nil, fmt.Errorf("feature \"image\" must be one bytes value of float32 data (DLF layout), got kind %d", f.Kind)
		}
		if hint != (Shape{}) {
			ri.shape = hint
		} else {
			s, err := inferSquare(len(vals))
			if err != nil {
				return nil, fmt.Errorf("feature \"image\": %v", err)
			}
			ri.shape = s
		}
		if n := ri.shape.H * ri.shape.W * ri.shape.C; len(vals) != n {
			return nil, fmt.Errorf("feature \"image\" has %d values, want %dx%dx%d = %d", len(vals), ri.shape.H, ri.shape.W, ri.shape.C, n)
		}
		ri.pixels = make([]uint8, len(vals))
		for i, v := range vals {
			if !(v >= 0 && v <= 255) || v != float32(math.Trunc(float64(v))) {
				return nil, fmt.Errorf("feature \"image\" value %g at index %d is not a whole pixel value in [0,255]", v, i)
			}
			ri.pixels[i] = uint8(v)
		}
	} else {
		return nil, fmt.Errorf("no image feature: want \"data\" (Glow layout) or \"image\" (DLF layout), record has %s", featureNames(ex))
	}
	if lf, ok := ex["label"]; ok {
		if lf.Kind != KindInt64 || len(lf.Int64s) != 1 {
			return nil, fmt.Errorf("feature \"label\" must be one int64, got kind %d with %d int64 values", lf.Kind, len(lf.Int64s))
		}
		l := lf.Int64s[0]
		if l < 0 || l > math.MaxInt32 {
			return nil, fmt.Errorf("feature \"label\" %d is not a class index", l)
		}
		ri.label, ri.hasLabel = int32(l), true
	}
	if af, ok := ex["attr"]; ok {
		if af.Kind != KindInt64 || len(af.Int64s) == 0 {
			return nil, fmt.Errorf("feature \"attr\" must be a non-empty int64 list")
		}
		ri.attrs = make([]int32, len(af.Int64s))
		for i, a := range af.Int64s {
			if a < math.MinInt32 || a > math.MaxInt32 {
				return nil, fmt.Errorf("feature \"attr\" value %d out of range", a)
			}
			ri.attrs[i] = int32(a)
		}
	}
	return ri, nil
}

// inferSquare guesses H×W×C for n values as a square with 3 channels, else 1 channel.
func inferSquare(n int) (Shape, error) {
	for _, c := range []int{3, 1} {
		if n%c != 0 {
			continue
		}
		s := int(math.Round(math.Sqrt(float64(n / c))))
		if s > 0 && s*s*c == n {
			return Shape{s, s, c}, nil
		}
	}
	return Shape{}, fmt.Errorf("%d values are neither S·S·3 nor S·S·1; the shape must be given", n)
}

func featureNames(ex Example) string {
	names := make([]string, 0, len(ex))
	for k := range ex {
		names = append(names, fmt.Sprintf("%q", k))
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "no features"
	}
	return "features " + strings.Join(names, ", ")
}

// ReadTFRecordImages decodes every record of one TFRecord stream as an image Example (see
// exampleImage) into a Dataset. hint is the expected shape, or zero to take it from the records.
func ReadTFRecordImages(r io.Reader, name string, size int64, hint Shape) (*Dataset, error) {
	tr := NewTFRecordReader(r, name, size)
	ds := &Dataset{Source: name}
	var shape Shape
	for {
		rec, off := tr.Record(), tr.Offset()
		payload, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		ex, err := ParseExample(payload)
		if err != nil {
			return nil, errRec(name, rec, off, "bad tf.train.Example: %v", err)
		}
		ri, err := exampleImage(ex, hint)
		if err != nil {
			return nil, errRec(name, rec, off, "%v", err)
		}
		if rec == 0 {
			shape = ri.shape
			ds.H, ds.W, ds.C = shape.H, shape.W, shape.C
			if ri.hasLabel {
				ds.Labels = []int32{}
			}
			if ri.attrs != nil {
				ds.NumAttrs = len(ri.attrs)
				ds.Attrs = []int32{}
			}
		} else {
			if ri.shape != shape {
				return nil, errRec(name, rec, off, "image shape %dx%dx%d differs from record 0's %dx%dx%d", ri.shape.H, ri.shape.W, ri.shape.C, shape.H, shape.W, shape.C)
			}
			if ri.hasLabel != (ds.Labels != nil) {
				return nil, errRec(name, rec, off, "label present=%v but record 0 has label present=%v", ri.hasLabel, ds.Labels != nil)
			}
			if len(ri.attrs) != ds.NumAttrs {
				return nil, errRec(name, rec, off, "%d attributes but record 0 has %d", len(ri.attrs), ds.NumAttrs)
			}
		}
		ds.Images = append(ds.Images, ri.pixels...)
		if ri.hasLabel {
			ds.Labels = append(ds.Labels, ri.label)
		}
		ds.Attrs = append(ds.Attrs, ri.attrs...)
		ds.N++
	}
	if ds.N == 0 {
		return nil, errf(name, "no records")
	}
	return ds, nil
}

// LoadTFRecords reads image TFRecord files in the order given and concatenates them.
func LoadTFRecords(hint Shape, paths ...string) (*Dataset, error) {
	parts := make([]*Dataset, 0, len(paths))
	for _, p := range paths {
		f, size, err := openSized(p)
		if err != nil {
			return nil, err
		}
		d, err := ReadTFRecordImages(f, p, size, hint)
		f.Close()
		if err != nil {
			return nil, err
		}
		parts = append(parts, d)
	}
	src := ""
	if len(paths) > 0 {
		src = filepath.Dir(paths[0])
	}
	return concatDatasets(src, parts)
}

// ImageExampleGlow builds a Glow-layout Example for one HWC uint8 image; attrs may be nil and
// label < 0 omits the label.
func ImageExampleGlow(img []uint8, s Shape, label int64, attrs []int64) Example {
	ex := Example{
		"data":  {Kind: KindBytes, Bytes: [][]byte{img}},
		"shape": {Kind: KindInt64, Int64s: []int64{int64(s.H), int64(s.W), int64(s.C)}},
	}
	if label >= 0 {
		ex["label"] = &Feature{Kind: KindInt64, Int64s: []int64{label}}
	}
	if attrs != nil {
		ex["attr"] = &Feature{Kind: KindInt64, Int64s: attrs}
	}
	return ex
}

// ImageExampleDLF builds a DLF-reference-layout Example: the pixels as raw little-endian float32
// bytes under "image" and the label under "label" (omitted when label < 0).
func ImageExampleDLF(img []uint8, label int64) Example {
	raw := make([]byte, 4*len(img))
	for i, v := range img {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(float32(v)))
	}
	ex := Example{"image": {Kind: KindBytes, Bytes: [][]byte{raw}}}
	if label >= 0 {
		ex["label"] = &Feature{Kind: KindInt64, Int64s: []int64{label}}
	}
	return ex
}
