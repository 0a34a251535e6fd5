package data

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// The idx format (LeCun, http://yann.lecun.com/exdb/mnist/, "FILE FORMATS FOR THE MNIST DATABASE"):
// a big-endian magic number whose first two bytes are zero, third byte the element type and fourth
// byte the number of dimensions; then one big-endian uint32 per dimension; then the elements in
// row-major order. MNIST and Fashion-MNIST use type 0x08 (unsigned byte): images are 0x00000803
// (N, rows, cols) and labels 0x00000801 (N).
const (
	idxTypeUbyte  = 0x08
	idxMagicImage = 0x00000803
	idxMagicLabel = 0x00000801
)

// IdxArray is a decoded unsigned-byte idx file: its dimensions and row-major elements.
type IdxArray struct {
	Dims []int
	Data []uint8
}

// ReadIdxFile reads an idx file of unsigned bytes, transparently gunzipping it when it starts with
// the gzip magic.
func ReadIdxFile(path string) (*IdxArray, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return ReadIdx(f, path, st.Size())
}

// ReadIdx decodes an unsigned-byte idx stream (raw or gzip) from r; name labels errors and size is
// the stream length in bytes, or -1 when unknown.
func ReadIdx(r io.Reader, name string, size int64) (*IdxArray, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var src io.Reader = br
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, errAt(name, 0, "bad gzip header: %v", err)
		}
		defer zr.Close()
		src = bufio.NewReaderSize(zr, 1<<16)
		size = -1 // the header cannot be checked against the compressed length
	}
	var magic [4]byte
	if _, err := io.ReadFull(src, magic[:]); err != nil {
		return nil, errAt(name, 0, "truncated idx magic number: %v", readErr(err))
	}
	if magic[0] != 0 || magic[1] != 0 {
		return nil, errAt(name, 0, "bad idx magic 0x%08x: first two bytes must be zero", binary.BigEndian.Uint32(magic[:]))
	}
	if magic[2] != idxTypeUbyte {
		return nil, errAt(name, 2, "idx element type 0x%02x not supported, want 0x08 (unsigned byte)", magic[2])
	}
	nd := int(magic[3])
	if nd < 1 || nd > 4 {
		return nil, errAt(name, 3, "idx has %d dimensions, want 1 to 4", nd)
	}
	dims := make([]int, nd)
	var hdr [16]byte
	if _, err := io.ReadFull(src, hdr[:4*nd]); err != nil {
		return nil, errAt(name, 4, "truncated idx header (%d dimensions): %v", nd, readErr(err))
	}
	for i := range dims {
		dims[i] = int(binary.BigEndian.Uint32(hdr[4*i:]))
	}
	n, ok := mulInt(dims...)
	if !ok {
		return nil, errAt(name, 4, "dimensions %v overflow the %d-byte limit", dims, maxBytes)
	}
	hdrLen := int64(4 + 4*nd)
	avail := int64(-1)
	if size >= 0 {
		avail = size - hdrLen
		if int64(n) != avail {
			return nil, errAt(name, hdrLen, "header dimensions %v need %d data bytes but the file has %d", dims, n, avail)
		}
	}
	buf, got, err := readExact(src, int64(n), avail)
	if err != nil {
		return nil, errAt(name, hdrLen+got, "idx data %v: %v", dims, err)
	}
	// Reading to EOF makes gzip verify its CRC and catches trailing bytes the header does not cover.
	var one [1]byte
	if k, err := io.ReadFull(src, one[:]); k > 0 {
		return nil, errAt(name, hdrLen+int64(n), "trailing bytes after the %v elements the header declares", dims)
	} else if err != io.EOF {
		return nil, errAt(name, hdrLen+int64(n), "after idx data: %v", err)
	}
	return &IdxArray{Dims: dims, Data: buf}, nil
}

// readErr normalises short reads to a message a user can act on.
func readErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("file ends early: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// LoadIdx reads an MNIST-style pair: an images file (magic 0x803, N×H×W) and, when labelsPath is not
// empty, a labels file (magic 0x801, N). The result has C = 1.
func LoadIdx(imagesPath, labelsPath string) (*Dataset, error) {
	img, err := ReadIdxFile(imagesPath)
	if err != nil {
		return nil, err
	}
	if len(img.Dims) != 3 {
		return nil, errAt(imagesPath, 0, "idx magic 0x%08x, want 0x%08x (3-D unsigned-byte images)", 0x800|len(img.Dims), idxMagicImage)
	}
	if img.Dims[1] == 0 || img.Dims[2] == 0 {
		return nil, errAt(imagesPath, 8, "image size %d×%d is empty", img.Dims[1], img.Dims[2])
	}
	ds := &Dataset{N: img.Dims[0], H: img.Dims[1], W: img.Dims[2], C: 1, Images: img.Data, Source: imagesPath}
	if labelsPath == "" {
		return ds, nil
	}
	lab, err := ReadIdxFile(labelsPath)
	if err != nil {
		return nil, err
	}
	if len(lab.Dims) != 1 {
		return nil, errAt(labelsPath, 0, "idx magic 0x%08x, want 0x%08x (1-D unsigned-byte labels)", 0x800|len(lab.Dims), idxMagicLabel)
	}
	if lab.Dims[0] != ds.N {
		return nil, errf(labelsPath, "%d labels but %s has %d images", lab.Dims[0], imagesPath, ds.N)
	}
	ds.Labels = make([]int32, ds.N)
	for i, v := range lab.Data {
		ds.Labels[i] = int32(v)
	}
	return ds, nil
}

// WriteIdxImages writes d's images as an idx3 unsigned-byte file (magic 0x803). d must have C = 1.
func WriteIdxImages(w io.Writer, d *Dataset) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if d.C != 1 {
		return fmt.Errorf("data: idx images hold one channel, dataset has %d", d.C)
	}
	var hdr [16]byte
	binary.BigEndian.PutUint32(hdr[0:], idxMagicImage)
	binary.BigEndian.PutUint32(hdr[4:], uint32(d.N))
	binary.BigEndian.PutUint32(hdr[8:], uint32(d.H))
	binary.BigEndian.PutUint32(hdr[12:], uint32(d.W))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(d.Images)
	return err
}

// WriteIdxLabels writes labels as an idx1 unsigned-byte file (magic 0x801); each must be in [0,255].
func WriteIdxLabels(w io.Writer, labels []int32) error {
	buf := make([]byte, 8+len(labels))
	binary.BigEndian.PutUint32(buf[0:], idxMagicLabel)
	binary.BigEndian.PutUint32(buf[4:], uint32(len(labels)))
	for i, l := range labels {
		if l < 0 || l > 255 {
			return fmt.Errorf("data: label %d at index %d does not fit an idx unsigned byte", l, i)
		}
		buf[8+i] = byte(l)
	}
	_, err := w.Write(buf)
	return err
}
