package data

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// The .npy format (NumPy NEP 1, "A Simple File Format for NumPy Arrays", numpy.lib.format):
// the 6-byte magic "\x93NUMPY", a major and minor version byte, a little-endian header length
// (uint16 for version 1, uint32 for versions 2 and 3), then an ASCII Python dict literal with keys
// 'descr' (dtype string such as '|u1' or '<i8'), 'fortran_order' and 'shape' (a tuple), padded with
// spaces and ended by '\n'. The raw array bytes follow. A .npz file is a zip archive of .npy members.
const npyMagic = "\x93NUMPY"

// maxNpyHeader bounds the header dict; NumPy itself refuses headers above 10000 bytes by default.
const maxNpyHeader = 1 << 16

// NpyArray is a decoded .npy array: its shape, dtype and raw element bytes (C order).
type NpyArray struct {
	Shape []int
	// Descr is the dtype string from the header, e.g. "|u1", "<i8".
	Descr     string
	kind      byte // 'u' unsigned, 'i' signed, 'b' bool, 'f' float
	itemSize  int
	bigEndian bool
	Data      []byte
}

// Len is the number of elements, the product of Shape.
func (a *NpyArray) Len() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

// parseDescr validates a dtype string and fills kind, itemSize and byte order.
func (a *NpyArray) parseDescr() error {
	d := a.Descr
	if len(d) < 3 {
		return fmt.Errorf("dtype %q not supported", d)
	}
	order, kind, sz := d[0], d[1], d[2:]
	n, err := strconv.Atoi(sz)
	if err != nil || (n != 1 && n != 2 && n != 4 && n != 8) {
		return fmt.Errorf("dtype %q not supported (item size %q)", d, sz)
	}
	switch kind {
	case 'u', 'i':
	case 'b':
		if n != 1 {
			return fmt.Errorf("dtype %q not supported", d)
		}
	case 'f':
		if n != 4 && n != 8 {
			return fmt.Errorf("dtype %q not supported (floats must be 4 or 8 bytes)", d)
		}
	default:
		return fmt.Errorf("dtype %q not supported (want an integer, bool or float type such as '|u1' or '<i8')", d)
	}
	switch order {
	case '<', '|', '=':
	case '>':
		a.bigEndian = n > 1
	default:
		return fmt.Errorf("dtype %q has unknown byte order %q", d, order)
	}
	if order == '|' && n > 1 {
		return fmt.Errorf("dtype %q: '|' (not applicable) byte order on a multi-byte type", d)
	}
	a.kind, a.itemSize = kind, n
	return nil
}

// Uint8 returns the elements of a '|u1' array (no copy).
func (a *NpyArray) Uint8() ([]uint8, error) {
	if a.kind != 'u' || a.itemSize != 1 {
		return nil, fmt.Errorf("dtype %s, want unsigned bytes '|u1'", a.Descr)
	}
	return a.Data, nil
}

// Int64 converts the elements of an integer or bool array to int64. Unsigned 8-byte values above
// MaxInt64 are an error rather than a silent wrap.
func (a *NpyArray) Int64() ([]int64, error) {
	if a.kind == 'f' {
		return nil, fmt.Errorf("dtype %s is floating point, want integers", a.Descr)
	}
	n := a.Len()
	out := make([]int64, n)
	var bo binary.ByteOrder = binary.LittleEndian
	if a.bigEndian {
		bo = binary.BigEndian
	}
	for i := 0; i < n; i++ {
		b := a.Data[i*a.itemSize:]
		var u uint64
		switch a.itemSize {
		case 1:
			u = uint64(b[0])
		case 2:
			u = uint64(bo.Uint16(b))
		case 4:
			u = uint64(bo.Uint32(b))
		case 8:
			u = bo.Uint64(b)
		}
		if a.kind == 'i' {
			shift := 64 - 8*a.itemSize
			out[i] = int64(u<<shift) >> shift // sign-extend
		} else {
			if u > math.MaxInt64 {
				return nil, fmt.Errorf("element %d = %d does not fit int64", i, u)
			}
			out[i] = int64(u)
		}
	}
	return out, nil
}

// ReadNpy decodes one .npy stream. name labels errors; size is the stream length or -1 when unknown
// (the data is then read in growing chunks so a lying header cannot force a huge allocation).
func ReadNpy(r io.Reader, name string, size int64) (*NpyArray, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var pre [10]byte
	if k, err := io.ReadFull(br, pre[:8]); err != nil {
		return nil, errAt(name, int64(k), "truncated npy preamble: %v", readErr(err))
	}
	if string(pre[:6]) != npyMagic {
		return nil, errAt(name, 0, "bad npy magic %q, want %q", pre[:6], npyMagic)
	}
	major := pre[6]
	var hlen int64
	off := int64(8)
	switch major {
	case 1:
		if _, err := io.ReadFull(br, pre[8:10]); err != nil {
			return nil, errAt(name, 8, "truncated npy header length: %v", readErr(err))
		}
		hlen = int64(binary.LittleEndian.Uint16(pre[8:10]))
		off = 10
	case 2, 3:
		var l [4]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return nil, errAt(name, 8, "truncated npy header length: %v", readErr(err))
		}
		hlen = int64(binary.LittleEndian.Uint32(l[:]))
		off = 12
	default:
		return nil, errAt(name, 6, "npy version %d.%d not supported, want 1.x, 2.x or 3.x", major, pre[7])
	}
	if hlen > maxNpyHeader {
		return nil, errAt(name, off, "npy header length %d exceeds %d", hlen, maxNpyHeader)
	}
	if size >= 0 && off+hlen > size {
		return nil, errAt(name, off, "npy header length %d runs past the end of the %d-byte file", hlen, size)
	}
	hdr := make([]byte, hlen)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return nil, errAt(name, off, "truncated npy header (%d bytes): %v", hlen, readErr(err))
	}
	a, err := parseNpyHeader(string(hdr))
	if err != nil {
		return nil, errAt(name, off, "bad npy header %q: %v", strings.TrimSpace(string(hdr)), err)
	}
	off += hlen
	nElem, ok := mulInt(a.Shape...)
	if !ok {
		return nil, errAt(name, off, "shape %v is absurdly large", a.Shape)
	}
	nBytes, ok := mulInt(nElem, a.itemSize)
	if !ok {
		return nil, errAt(name, off, "shape %v of %s is absurdly large", a.Shape, a.Descr)
	}
	avail := int64(-1)
	if size >= 0 {
		avail = size - off
		if avail != int64(nBytes) {
			return nil, errAt(name, off, "shape %v of %s needs %d data bytes but %d follow the header", a.Shape, a.Descr, nBytes, avail)
		}
	}
	a.Data, _, err = readExact(br, int64(nBytes), avail)
	if err != nil {
		return nil, errAt(name, off, "npy data (shape %v, %s): %v", a.Shape, a.Descr, err)
	}
	// Reading to EOF lets a zip member verify its CRC and exposes bytes the header does not cover.
	var one [1]byte
	if k, err := io.ReadFull(br, one[:]); k > 0 {
		return nil, errAt(name, off+int64(nBytes), "trailing bytes after the array data (shape %v, %s)", a.Shape, a.Descr)
	} else if err != io.EOF {
		return nil, errAt(name, off+int64(nBytes), "after npy data: %v", err)
	}
	return a, nil
}

// parseNpyHeader parses the Python dict literal of an npy header. It accepts exactly the grammar
// NumPy writes: string keys, and values that are strings, True/False, or tuples of integers
// (optionally with Python 2's 'L' suffix, which old files such as Chrabaszcz et al.'s carry).
func parseNpyHeader(h string) (*NpyArray, error) {
	p := &pyLit{s: h}
	if !p.eat('{') {
		return nil, fmt.Errorf("want '{' at byte %d", p.i)
	}
	a := &NpyArray{}
	seen := map[string]bool{}
	for {
		if p.eat('}') {
			break
		}
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		if !p.eat(':') {
			return nil, fmt.Errorf("want ':' after key %q at byte %d", key, p.i)
		}
		if seen[key] {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		switch key {
		case "descr":
			if a.Descr, err = p.str(); err != nil {
				return nil, fmt.Errorf("descr: %v", err)
			}
		case "fortran_order":
			b, err := p.boolean()
			if err != nil {
				return nil, fmt.Errorf("fortran_order: %v", err)
			}
			if b {
				return nil, fmt.Errorf("fortran_order True not supported; save the array in C order")
			}
		case "shape":
			if a.Shape, err = p.tuple(); err != nil {
				return nil, fmt.Errorf("shape: %v", err)
			}
		default:
			return nil, fmt.Errorf("unexpected key %q", key)
		}
		if p.eat(',') {
			continue
		}
		if !p.eat('}') {
			return nil, fmt.Errorf("want ',' or '}' at byte %d", p.i)
		}
		break
	}
	p.space()
	if p.i != len(p.s) {
		return nil, fmt.Errorf("unexpected text after the dict at byte %d", p.i)
	}
	for _, k := range []string{"descr", "fortran_order", "shape"} {
		if !seen[k] {
			return nil, fmt.Errorf("missing key %q", k)
		}
	}
	if err := a.parseDescr(); err != nil {
		return nil, err
	}
	return a, nil
}

// pyLit is a cursor over a Python literal.
type pyLit struct {
	s string
	i int
}

func (p *pyLit) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\n' || p.s[p.i] == '\t' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *pyLit) eat(c byte) bool {
	p.space()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str parses a quoted string without escapes (npy keys and dtypes never need them).
func (p *pyLit) str() (string, error) {
	p.space()
	if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
		return "", fmt.Errorf("want a quoted string at byte %d", p.i)
	}
	q := p.s[p.i]
	j := strings.IndexByte(p.s[p.i+1:], q)
	if j < 0 {
		return "", fmt.Errorf("unterminated string at byte %d", p.i)
	}
	v := p.s[p.i+1 : p.i+1+j]
	if strings.ContainsRune(v, '\\') {
		return "", fmt.Errorf("escapes in string %q not supported", v)
	}
	p.i += j + 2
	return v, nil
}

func (p *pyLit) boolean() (bool, error) {
	p.space()
	switch {
	case strings.HasPrefix(p.s[p.i:], "True"):
		p.i += 4
		return true, nil
	case strings.HasPrefix(p.s[p.i:], "False"):
		p.i += 5
		return false, nil
	}
	return false, fmt.Errorf("want True or False at byte %d", p.i)
}

// tuple parses "(a, b, ...)", "(a,)" or "()" of non-negative integers.
func (p *pyLit) tuple() ([]int, error) {
	if !p.eat('(') {
		return nil, fmt.Errorf("want '(' at byte %d", p.i)
	}
	dims := []int{}
	for {
		if p.eat(')') {
			return dims, nil
		}
		p.space()
		j := p.i
		for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
			j++
		}
		if j == p.i {
			return nil, fmt.Errorf("want a non-negative integer at byte %d", p.i)
		}
		v, err := strconv.ParseInt(p.s[p.i:j], 10, 64)
		if err != nil || v > maxBytes {
			return nil, fmt.Errorf("dimension %q out of range", p.s[p.i:j])
		}
		p.i = j
		if p.i < len(p.s) && p.s[p.i] == 'L' {
			p.i++
		}
		if len(dims) >= 32 {
			return nil, fmt.Errorf("more than 32 dimensions")
		}
		dims = append(dims, int(v))
		if p.eat(',') {
			continue
		}
		if !p.eat(')') {
			return nil, fmt.Errorf("want ',' or ')' at byte %d", p.i)
		}
		return dims, nil
	}
}

// NewNpyUint8 wraps data as a '|u1' array of the given shape.
func NewNpyUint8(shape []int, data []uint8) (*NpyArray, error) {
	a := &NpyArray{Shape: append([]int(nil), shape...), Descr: "|u1", kind: 'u', itemSize: 1, Data: data}
	if n, ok := mulInt(shape...); !ok || n != len(data) {
		return nil, fmt.Errorf("data: npy shape %v does not match %d bytes", shape, len(data))
	}
	return a, nil
}

// NewNpyInt64 encodes vals as a little-endian '<i8' array of the given shape.
func NewNpyInt64(shape []int, vals []int64) (*NpyArray, error) {
	if n, ok := mulInt(shape...); !ok || n != len(vals) {
		return nil, fmt.Errorf("data: npy shape %v does not match %d values", shape, len(vals))
	}
	b := make([]byte, 8*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
	}
	return &NpyArray{Shape: append([]int(nil), shape...), Descr: "<i8", kind: 'i', itemSize: 8, Data: b}, nil
}

// WriteNpy writes a as a version 1.0 .npy stream, header padded so the data starts on a 64-byte
// boundary as NumPy does.
func WriteNpy(w io.Writer, a *NpyArray) error {
	var sh strings.Builder
	sh.WriteByte('(')
	for i, d := range a.Shape {
		if i > 0 {
			sh.WriteString(", ")
		}
		sh.WriteString(strconv.Itoa(d))
	}
	if len(a.Shape) == 1 {
		sh.WriteByte(',')
	}
	sh.WriteByte(')')
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", a.Descr, sh.String())
	total := 10 + len(dict) + 1
	pad := (64 - total%64) % 64
	hdr := dict + strings.Repeat(" ", pad) + "\n"
	if len(hdr) > math.MaxUint16 {
		return fmt.Errorf("data: npy header too long")
	}
	var pre [10]byte
	copy(pre[:], npyMagic)
	pre[6], pre[7] = 1, 0
	binary.LittleEndian.PutUint16(pre[8:], uint16(len(hdr)))
	if _, err := w.Write(pre[:]); err != nil {
		return err
	}
	if _, err := io.WriteString(w, hdr); err != nil {
		return err
	}
	_, err := w.Write(a.Data)
	return err
}

// WriteNpz writes the arrays as members "<key>.npy" of a zip archive, in sorted key order; compress
// selects deflate (np.savez_compressed) instead of store (np.savez).
func WriteNpz(w io.Writer, arrays map[string]*NpyArray, compress bool) error {
	keys := make([]string, 0, len(arrays))
	for k := range arrays {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	zw := zip.NewWriter(w)
	for _, k := range keys {
		m := zip.Store
		if compress {
			m = zip.Deflate
		}
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: k + ".npy", Method: m})
		if err != nil {
			return err
		}
		if err := WriteNpy(fw, arrays[k]); err != nil {
			return err
		}
	}
	return zw.Close()
}

// ReadNpz decodes the named members (keys without ".npy") of an .npz archive held in r; with no
// keys it decodes every member. A missing key is an error listing the keys present.
func ReadNpz(r io.ReaderAt, size int64, name string, keys ...string) (map[string]*NpyArray, error) {
	z, err := openNpz(r, size, name)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		keys = z.keys
	}
	out := make(map[string]*NpyArray, len(keys))
	for _, k := range keys {
		a, err := z.read(k)
		if err != nil {
			return nil, err
		}
		out[k] = a
	}
	return out, nil
}

// npzArchive indexes the members of an opened npz archive by key.
type npzArchive struct {
	name    string
	size    int64
	members map[string]*zip.File
	keys    []string
}

func openNpz(r io.ReaderAt, size int64, name string) (*npzArchive, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, errf(name, "not a valid npz (zip) archive: %v", err)
	}
	z := &npzArchive{name: name, size: size, members: map[string]*zip.File{}}
	for _, f := range zr.File {
		k := strings.TrimSuffix(f.Name, ".npy")
		if _, dup := z.members[k]; dup {
			return nil, errf(name, "npz member %q appears twice", f.Name)
		}
		z.members[k] = f
		z.keys = append(z.keys, k)
	}
	return z, nil
}

func (z *npzArchive) has(key string) bool { _, ok := z.members[key]; return ok }

func (z *npzArchive) read(key string) (*NpyArray, error) {
	f, ok := z.members[key]
	if !ok {
		return nil, errf(z.name, "npz has no array %q (it has %v)", key, z.keys)
	}
	mname := z.name + ":" + f.Name
	rc, err := f.Open()
	if err != nil {
		return nil, errf(mname, "cannot open npz member: %v", err)
	}
	defer rc.Close()
	// A stored member's declared size is bounded by the archive, so it can be trusted to size
	// buffers; a compressed member's cannot (zip bombs), so it is read in growing chunks.
	msize := int64(-1)
	if f.Method == zip.Store && f.UncompressedSize64 == f.CompressedSize64 && f.CompressedSize64 <= uint64(z.size) {
		msize = int64(f.UncompressedSize64)
	}
	return ReadNpy(rc, mname, msize)
}

// ReadNpzFile opens path and decodes the named members as ReadNpz does.
func ReadNpzFile(path string, keys ...string) (map[string]*NpyArray, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return ReadNpz(f, st.Size(), path, keys...)
}

// npzImages turns an npz's 'data' and 'labels' arrays into a Dataset. 'data' is either (N, 3·S·S)
// rows of CHW-planar bytes, as Chrabaszcz et al. distribute downsampled ImageNet (side S taken from
// side, or inferred when side is 0), or (N, H, W, C) bytes. 'labels', when present, holds 1-based
// class ids (their convention) and is stored 0-based.
func npzImages(arrs map[string]*NpyArray, name string, side int) (*Dataset, error) {
	da := arrs["data"]
	raw, err := da.Uint8()
	if err != nil {
		return nil, errf(name, "array 'data': %v", err)
	}
	ds := &Dataset{Source: name}
	switch len(da.Shape) {
	case 2:
		n, d := da.Shape[0], da.Shape[1]
		s := side
		if s == 0 {
			s = int(math.Round(math.Sqrt(float64(d) / 3)))
		}
		if s <= 0 || 3*s*s != d {
			if side > 0 {
				return nil, errf(name, "array 'data' rows have %d values, want 3·%d·%d = %d (CHW planar)", d, side, side, 3*side*side)
			}
			return nil, errf(name, "array 'data' rows have %d values, not 3·S·S for any square side S", d)
		}
		ds.N, ds.H, ds.W, ds.C = n, s, s, 3
		ds.Images = make([]uint8, len(raw))
		plane := s * s
		for i := 0; i < n; i++ {
			src := raw[i*d : (i+1)*d]
			dst := ds.Images[i*d : (i+1)*d]
			for p := 0; p < plane; p++ {
				dst[3*p] = src[p]
				dst[3*p+1] = src[plane+p]
				dst[3*p+2] = src[2*plane+p]
			}
		}
	case 4:
		ds.N, ds.H, ds.W, ds.C = da.Shape[0], da.Shape[1], da.Shape[2], da.Shape[3]
		if ds.H == 0 || ds.W == 0 || (ds.C != 1 && ds.C != 3) {
			return nil, errf(name, "array 'data' shape %v, want (N, H, W, 1 or 3)", da.Shape)
		}
		if side > 0 && (ds.H != side || ds.W != side) {
			return nil, errf(name, "array 'data' images are %d×%d, want %d×%d", ds.H, ds.W, side, side)
		}
		ds.Images = raw
	default:
		return nil, errf(name, "array 'data' has shape %v, want (N, 3·H·W) or (N, H, W, C)", da.Shape)
	}
	if la, ok := arrs["labels"]; ok {
		labs, err := la.Int64()
		if err != nil {
			return nil, errf(name, "array 'labels': %v", err)
		}
		if len(labs) != ds.N {
			return nil, errf(name, "array 'labels' has %d values (shape %v) but 'data' has %d images", len(labs), la.Shape, ds.N)
		}
		ds.Labels = make([]int32, ds.N)
		for i, l := range labs {
			if l < 1 || l > math.MaxInt32 {
				return nil, errRec(name, i, -1, "label %d, want a 1-based class id (Chrabaszcz et al. convention)", l)
			}
			ds.Labels[i] = int32(l - 1)
		}
	}
	return ds, nil
}

// LoadNpz reads downsampled-ImageNet style .npz files (see npzImages) and concatenates them in the
// order given. side is the expected image side (32, 64) or 0 to infer it.
func LoadNpz(side int, paths ...string) (*Dataset, error) {
	parts := make([]*Dataset, 0, len(paths))
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("data: %w", err)
		}
		d, err := decodeNpzImages(f, st.Size(), p, side)
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

// decodeNpzImages reads the 'data' and optional 'labels' members of one npz archive.
func decodeNpzImages(r io.ReaderAt, size int64, name string, side int) (*Dataset, error) {
	z, err := openNpz(r, size, name)
	if err != nil {
		return nil, err
	}
	all := map[string]*NpyArray{}
	for _, k := range []string{"data", "labels"} {
		if k == "labels" && !z.has(k) {
			continue
		}
		if all[k], err = z.read(k); err != nil {
			return nil, err
		}
	}
	return npzImages(all, name, side)
}

// DecodeNpzImages decodes an in-memory npz archive as LoadNpz does for one file.
func DecodeNpzImages(b []byte, name string, side int) (*Dataset, error) {
	return decodeNpzImages(bytes.NewReader(b), int64(len(b)), name, side)
}
