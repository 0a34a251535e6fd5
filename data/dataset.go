package data

import (
	"errors"
	"fmt"
	"io"
)

// Dataset is an in-memory image set in the package-wide layout: Images holds N images of H×W×C uint8
// values, NHWC, contiguous (image i occupies Images[i*H*W*C : (i+1)*H*W*C]). Labels has N class indices
// (0-based) or is nil when the source has none. Attrs holds N×NumAttrs attribute values (CelebA's 40
// binary attributes, stored as given, e.g. -1/1 or 0/1) or is nil.
type Dataset struct {
	N, H, W, C int
	Images     []uint8
	Labels     []int32
	NumAttrs   int
	Attrs      []int32
	// Source describes where the data came from (file or directory), for messages.
	Source string
}

// ImageSize is the number of bytes of one image, H·W·C.
func (d *Dataset) ImageSize() int { return d.H * d.W * d.C }

// Image returns image i as a slice aliasing d.Images (no copy).
func (d *Dataset) Image(i int) []uint8 {
	sz := d.ImageSize()
	return d.Images[i*sz : (i+1)*sz : (i+1)*sz]
}

// Validate checks that the slice lengths agree with the declared shape, so code downstream can index
// without bounds surprises.
func (d *Dataset) Validate() error {
	if d == nil {
		return errors.New("data: nil dataset")
	}
	if d.N < 0 || d.H <= 0 || d.W <= 0 || d.C <= 0 {
		return fmt.Errorf("data: %s: invalid shape N=%d H=%d W=%d C=%d", d.Source, d.N, d.H, d.W, d.C)
	}
	if want, ok := mulInt(d.N, d.H, d.W, d.C); !ok || len(d.Images) != want {
		return fmt.Errorf("data: %s: %d image bytes, want N·H·W·C = %d·%d·%d·%d", d.Source, len(d.Images), d.N, d.H, d.W, d.C)
	}
	if d.Labels != nil && len(d.Labels) != d.N {
		return fmt.Errorf("data: %s: %d labels for %d images", d.Source, len(d.Labels), d.N)
	}
	if d.Attrs != nil && (d.NumAttrs <= 0 || len(d.Attrs) != d.N*d.NumAttrs) {
		return fmt.Errorf("data: %s: %d attribute values, want %d images × %d attributes", d.Source, len(d.Attrs), d.N, d.NumAttrs)
	}
	return nil
}

// Subset copies the images (and labels/attributes) at the given indices into a new Dataset, in the
// order given. Indices must be in [0, N).
func (d *Dataset) Subset(idx []int) (*Dataset, error) {
	sz := d.ImageSize()
	out := &Dataset{N: len(idx), H: d.H, W: d.W, C: d.C, NumAttrs: d.NumAttrs, Source: d.Source}
	out.Images = make([]uint8, len(idx)*sz)
	if d.Labels != nil {
		out.Labels = make([]int32, len(idx))
	}
	if d.Attrs != nil {
		out.Attrs = make([]int32, len(idx)*d.NumAttrs)
	}
	for k, i := range idx {
		if i < 0 || i >= d.N {
			return nil, fmt.Errorf("data: %s: subset index %d out of range [0,%d)", d.Source, i, d.N)
		}
		copy(out.Images[k*sz:(k+1)*sz], d.Images[i*sz:(i+1)*sz])
		if d.Labels != nil {
			out.Labels[k] = d.Labels[i]
		}
		if d.Attrs != nil {
			copy(out.Attrs[k*d.NumAttrs:(k+1)*d.NumAttrs], d.Attrs[i*d.NumAttrs:(i+1)*d.NumAttrs])
		}
	}
	return out, nil
}

// concatDatasets joins parts that share H, W, C (and label/attribute presence) into one Dataset.
// Parts come from the files of one split, so a mismatch names the offending part's source.
func concatDatasets(source string, parts []*Dataset) (*Dataset, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("data: %s: no data", source)
	}
	if len(parts) == 1 {
		return parts[0], nil
	}
	first := parts[0]
	total, imgBytes := 0, 0
	for _, p := range parts {
		if p.H != first.H || p.W != first.W || p.C != first.C {
			return nil, fmt.Errorf("data: %s: images are %d×%d×%d but %s has %d×%d×%d", source, p.H, p.W, p.C, first.Source, first.H, first.W, first.C)
		}
		if (p.Labels == nil) != (first.Labels == nil) {
			return nil, fmt.Errorf("data: %s: has labels=%v but %s has labels=%v", p.Source, p.Labels != nil, first.Source, first.Labels != nil)
		}
		if (p.Attrs == nil) != (first.Attrs == nil) || p.NumAttrs != first.NumAttrs {
			return nil, fmt.Errorf("data: %s: has %d attributes but %s has %d", p.Source, p.NumAttrs, first.Source, first.NumAttrs)
		}
		total += p.N
		imgBytes += len(p.Images)
	}
	out := &Dataset{N: total, H: first.H, W: first.W, C: first.C, NumAttrs: first.NumAttrs, Source: source}
	out.Images = make([]uint8, 0, imgBytes)
	if first.Labels != nil {
		out.Labels = make([]int32, 0, total)
	}
	if first.Attrs != nil {
		out.Attrs = make([]int32, 0, total*first.NumAttrs)
	}
	for _, p := range parts {
		out.Images = append(out.Images, p.Images...)
		out.Labels = append(out.Labels, p.Labels...)
		out.Attrs = append(out.Attrs, p.Attrs...)
	}
	return out, nil
}

// maxBytes bounds any single allocation derived from a header (1 TiB): far above any real dataset,
// far below int64 overflow, so products of header fields can be checked without wrapping.
const maxBytes = int64(1) << 40

// mulInt multiplies non-negative ints, reporting false if any is negative or the product exceeds
// maxBytes. Header fields go through this before they size anything.
func mulInt(xs ...int) (int, bool) {
	p := int64(1)
	for _, x := range xs {
		if x < 0 {
			return 0, false
		}
		if x == 0 {
			p = 0
			continue
		}
		if p > maxBytes/int64(x) {
			return 0, false
		}
		p *= int64(x)
	}
	return int(p), true
}

// readChunk is the growth step for reads whose length comes from a header that cannot be checked
// against a known stream size (e.g. inside gzip): memory then grows only as real bytes arrive.
const readChunk = 16 << 20

// readExact reads exactly n bytes. When avail >= 0 it is the number of bytes known to remain in r and
// a larger n fails before allocating; otherwise the buffer grows in readChunk steps so a lying header
// cannot force a huge allocation. Short input returns io.ErrUnexpectedEOF with the count read.
func readExact(r io.Reader, n int64, avail int64) ([]byte, int64, error) {
	if n < 0 || n > maxBytes {
		return nil, 0, fmt.Errorf("length %d out of range", n)
	}
	if avail >= 0 && n > avail {
		return nil, 0, fmt.Errorf("needs %d bytes but only %d remain: %w", n, avail, io.ErrUnexpectedEOF)
	}
	if avail >= 0 || n <= readChunk {
		buf := make([]byte, n)
		got, err := io.ReadFull(r, buf)
		if err != nil {
			return nil, int64(got), shortErr(err, int64(got), n)
		}
		return buf, n, nil
	}
	buf := make([]byte, 0, readChunk)
	for int64(len(buf)) < n {
		step := min(n-int64(len(buf)), readChunk)
		if int64(cap(buf)-len(buf)) < step {
			nb := make([]byte, len(buf), min(int64(cap(buf))*2, n))
			copy(nb, buf)
			buf = nb
		}
		got, err := io.ReadFull(r, buf[len(buf):len(buf)+int(step)])
		buf = buf[:len(buf)+got]
		if err != nil {
			return nil, int64(len(buf)), shortErr(err, int64(len(buf)), n)
		}
	}
	return buf, n, nil
}

// shortErr turns a ReadFull error into one that says how far the data got.
func shortErr(err error, got, want int64) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated: got %d of %d bytes: %w", got, want, io.ErrUnexpectedEOF)
	}
	return err
}
