package data

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// TFRecord framing (TensorFlow, tensorflow/core/lib/io/record_writer.h and the tf.io "TFRecord
// format details" guide): each record is
//
//	uint64 length (little-endian)
//	uint32 masked_crc32c(length bytes)
//	byte   data[length]
//	uint32 masked_crc32c(data)
//
// where masked_crc = ((crc >> 15) | (crc << 17)) + 0xa282ead8, with CRC-32C (Castagnoli).
const tfrecordMaskDelta = 0xa282ead8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskedCRC computes TFRecord's masked CRC-32C of b.
func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return ((c >> 15) | (c << 17)) + tfrecordMaskDelta
}

// TFRecordReader reads the records of one TFRecord stream in order, checking both CRCs.
type TFRecordReader struct {
	r      *bufio.Reader
	name   string
	size   int64 // stream length, or -1 when unknown
	off    int64 // offset of the next record
	record int   // index of the next record
}

// NewTFRecordReader wraps r; name labels errors and size is the stream length or -1 when unknown.
func NewTFRecordReader(r io.Reader, name string, size int64) *TFRecordReader {
	return &TFRecordReader{r: bufio.NewReaderSize(r, 1<<16), name: name, size: size}
}

// Next returns the next record's payload (a fresh slice), or io.EOF after the last record.
func (t *TFRecordReader) Next() ([]byte, error) {
	var hdr [12]byte
	k, err := io.ReadFull(t.r, hdr[:])
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, errRec(t.name, t.record, t.off, "truncated record header: %d of 12 bytes", k)
	}
	n := binary.LittleEndian.Uint64(hdr[0:8])
	if got, want := maskedCRC(hdr[0:8]), binary.LittleEndian.Uint32(hdr[8:12]); got != want {
		return nil, errRec(t.name, t.record, t.off, "length CRC mismatch (stored 0x%08x, computed 0x%08x): corrupt or not a TFRecord file", want, got)
	}
	if n > uint64(maxBytes) {
		return nil, errRec(t.name, t.record, t.off, "record length %d is absurdly large", n)
	}
	avail := int64(-1)
	if t.size >= 0 {
		avail = t.size - t.off - 12 - 4
		if int64(n) > avail {
			return nil, errRec(t.name, t.record, t.off, "record length %d runs past the end of the %d-byte file", n, t.size)
		}
	}
	data, got, err := readExact(t.r, int64(n), avail)
	if err != nil {
		return nil, errRec(t.name, t.record, t.off+12+got, "record data (%d bytes): %v", n, err)
	}
	var foot [4]byte
	if _, err := io.ReadFull(t.r, foot[:]); err != nil {
		return nil, errRec(t.name, t.record, t.off+12+int64(n), "truncated data CRC: %v", readErr(err))
	}
	if got, want := maskedCRC(data), binary.LittleEndian.Uint32(foot[:]); got != want {
		return nil, errRec(t.name, t.record, t.off, "data CRC mismatch (stored 0x%08x, computed 0x%08x)", want, got)
	}
	t.off += 16 + int64(n)
	t.record++
	return data, nil
}

// Offset is the byte offset of the next record; Record its index.
func (t *TFRecordReader) Offset() int64 { return t.off }

// Record is the index of the next record.
func (t *TFRecordReader) Record() int { return t.record }

// WriteTFRecord appends one framed record holding data to w.
func WriteTFRecord(w io.Writer, data []byte) error {
	var hdr [12]byte
	binary.LittleEndian.PutUint64(hdr[0:8], uint64(len(data)))
	binary.LittleEndian.PutUint32(hdr[8:12], maskedCRC(hdr[0:8]))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	var foot [4]byte
	binary.LittleEndian.PutUint32(foot[:], maskedCRC(data))
	_, err := w.Write(foot[:])
	return err
}

// openSized opens path and returns it with its size.
func openSized(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("data: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("data: %w", err)
	}
	return f, st.Size(), nil
}
