package data

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// CIFAR-10 binary version (Krizhevsky, https://www.cs.toronto.edu/~kriz/cifar.html, "Binary version"):
// each file is a sequence of 3073-byte records, one label byte (0-9) followed by 3072 pixel bytes:
// 1024 red, then 1024 green, then 1024 blue values, each plane row-major 32×32. The reader converts
// the planar CHW record to the package's interleaved HWC layout.
const (
	cifarSide    = 32
	cifarRecord  = 1 + 3*cifarSide*cifarSide
	cifarClasses = 10
)

// CIFARTrainFiles and CIFARTestFile are the file names of the CIFAR-10 binary distribution
// (cifar-10-binary.tar.gz unpacks them into cifar-10-batches-bin/).
var CIFARTrainFiles = []string{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"}

// CIFARTestFile is the CIFAR-10 binary test batch file name.
const CIFARTestFile = "test_batch.bin"

// ReadCIFARFile reads one CIFAR-10 binary batch file.
func ReadCIFARFile(path string) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return ReadCIFAR(f, path, st.Size())
}

// ReadCIFAR decodes CIFAR-10 binary records from r into a 32×32×3 Dataset. size is the stream length
// (it must be a whole number of 3073-byte records) or -1 to read until EOF.
func ReadCIFAR(r io.Reader, name string, size int64) (*Dataset, error) {
	return readCIFAR(r, name, size, cifarSide)
}

// readCIFAR parses records of 1 label byte and 3·side·side planar pixels. CIFAR-10 is side 32; the
// side is a parameter only so the fuzz target can drive this same code with tiny records, which the
// fuzzing engine mutates and minimises far faster than 3073-byte ones.
func readCIFAR(r io.Reader, name string, size int64, side int) (*Dataset, error) {
	pixels := side * side
	image := 3 * pixels
	record := 1 + image
	ds := &Dataset{H: side, W: side, C: 3, Source: name}
	if size >= 0 {
		if size%int64(record) != 0 {
			return nil, errf(name, "size %d bytes is not a multiple of the %d-byte CIFAR-10 record (1 label + %d pixels); %d whole records and %d extra bytes", size, record, image, size/int64(record), size%int64(record))
		}
		if size > maxBytes {
			return nil, errf(name, "size %d bytes is absurdly large", size)
		}
		n := int(size / int64(record))
		ds.Images = make([]uint8, 0, n*image)
		ds.Labels = make([]int32, 0, n)
	}
	br := bufio.NewReaderSize(r, 1<<16)
	rec := make([]byte, record)
	for i := 0; ; i++ {
		off := int64(i) * int64(record)
		k, err := io.ReadFull(br, rec)
		if err == io.EOF {
			break
		}
		if err == io.ErrUnexpectedEOF {
			return nil, errRec(name, i, off, "truncated record: %d of %d bytes", k, record)
		}
		if err != nil {
			return nil, errRec(name, i, off, "%v", err)
		}
		if rec[0] >= cifarClasses {
			return nil, errRec(name, i, off, "label byte %d, want 0-%d (is this a CIFAR-100 file?)", rec[0], cifarClasses-1)
		}
		if size >= 0 && off >= size {
			return nil, errRec(name, i, off, "more data than the %d bytes stated", size)
		}
		ds.Labels = append(ds.Labels, int32(rec[0]))
		base := len(ds.Images)
		ds.Images = slices.Grow(ds.Images, image)[:base+image]
		dst := ds.Images[base:]
		planes := rec[1:]
		for p := 0; p < pixels; p++ {
			dst[3*p] = planes[p]
			dst[3*p+1] = planes[pixels+p]
			dst[3*p+2] = planes[2*pixels+p]
		}
		ds.N++
	}
	if ds.N == 0 {
		return nil, errf(name, "no CIFAR-10 records (empty file)")
	}
	return ds, nil
}

// LoadCIFAR reads and concatenates CIFAR-10 binary batch files in the order given.
func LoadCIFAR(paths ...string) (*Dataset, error) {
	parts := make([]*Dataset, 0, len(paths))
	for _, p := range paths {
		d, err := ReadCIFARFile(p)
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

// WriteCIFAR writes d as CIFAR-10 binary records. d must be 32×32×3 with labels in [0,9].
func WriteCIFAR(w io.Writer, d *Dataset) error {
	if d.H != cifarSide || d.W != cifarSide {
		return fmt.Errorf("data: CIFAR-10 records are 32×32×3, dataset is %d×%d×%d", d.H, d.W, d.C)
	}
	return writeCIFAR(w, d)
}

// writeCIFAR writes square RGB images of any side in the CIFAR record layout (see readCIFAR).
func writeCIFAR(w io.Writer, d *Dataset) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if d.H != d.W || d.C != 3 {
		return fmt.Errorf("data: CIFAR-10 records are square RGB, dataset is %d×%d×%d", d.H, d.W, d.C)
	}
	pixels := d.H * d.W
	if d.Labels == nil {
		return fmt.Errorf("data: CIFAR-10 records need labels")
	}
	bw := bufio.NewWriter(w)
	rec := make([]byte, 1+3*pixels)
	for i := 0; i < d.N; i++ {
		if d.Labels[i] < 0 || d.Labels[i] >= cifarClasses {
			return fmt.Errorf("data: label %d at index %d is outside CIFAR-10's 0-9", d.Labels[i], i)
		}
		rec[0] = byte(d.Labels[i])
		img := d.Image(i)
		for p := 0; p < pixels; p++ {
			rec[1+p] = img[3*p]
			rec[1+pixels+p] = img[3*p+1]
			rec[1+2*pixels+p] = img[3*p+2]
		}
		if _, err := bw.Write(rec); err != nil {
			return err
		}
	}
	return bw.Flush()
}
