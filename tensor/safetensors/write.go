package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// Write stores tensors and meta as a safetensors file at path, atomically: the data goes to a
// temporary file in the same directory, which is fsynced, renamed over path, and the directory is
// fsynced, so a crash at any moment leaves either the old file or the complete new one. Tensors are
// laid out in the order given; the output is a deterministic function of the arguments.
func Write(path string, tensors []HostTensor, meta map[string]string) error {
	return write(path, tensors, meta, writeHooks{})
}

// Stage is a point of an atomic Write at which a crash leaves a distinct state on disk.
type Stage int

const (
	// Written: the temporary file holds all the data but is not fsynced.
	Written Stage = iota
	// Synced: the temporary file is fsynced and closed, not yet renamed over the destination.
	Synced
	// Renamed: the destination holds the new file; its directory entry is not yet fsynced.
	Renamed
)

// WriteObserved is Write that calls observe at each Stage, so that crash-safety tests can stop the
// process exactly there (train/fault).
func WriteObserved(path string, tensors []HostTensor, meta map[string]string, observe func(Stage)) error {
	return write(path, tensors, meta, writeHooks{observe: observe})
}

// writeHooks let tests simulate failures at the points where a real crash could happen.
type writeHooks struct {
	// wrap, when set, wraps the temporary file's writer (e.g. to fail after k bytes).
	wrap func(io.Writer) io.Writer
	// beforeRename, when set, runs after the temporary file is complete and synced and before the
	// rename; an error aborts the write as a crash at that point would.
	beforeRename func(tmp string) error
	// observe, when set, is called at each Stage.
	observe func(Stage)
}

func (h writeHooks) at(s Stage) {
	if h.observe != nil {
		h.observe(s)
	}
}

func write(path string, tensors []HostTensor, meta map[string]string, hooks writeHooks) (err error) {
	header, err := encodeHeader(tensors, meta)
	if err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp makes the file private (0600); checkpoints are ordinary data files.
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("safetensors: writing %s: %w", path, err)
	}
	var w io.Writer = f
	if hooks.wrap != nil {
		w = hooks.wrap(w)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if err := writeBody(bw, header, tensors); err != nil {
		return fmt.Errorf("safetensors: writing %s (temporary %s): %w", path, tmp, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("safetensors: writing %s (temporary %s): %w", path, tmp, err)
	}
	hooks.at(Written)
	if err := f.Sync(); err != nil {
		return fmt.Errorf("safetensors: syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("safetensors: closing %s: %w", tmp, err)
	}
	hooks.at(Synced)
	if hooks.beforeRename != nil {
		if err := hooks.beforeRename(tmp); err != nil {
			return fmt.Errorf("safetensors: writing %s: %w", path, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("safetensors: renaming %s to %s: %w", tmp, path, err)
	}
	renamed = true
	hooks.at(Renamed)
	// The rename is durable only once the directory entry is on disk.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("safetensors: syncing directory of %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("safetensors: syncing directory of %s: %w", path, err)
	}
	return nil
}

// Encode writes tensors and meta in the safetensors format to w (no temporary file, no fsync).
func Encode(w io.Writer, tensors []HostTensor, meta map[string]string) error {
	header, err := encodeHeader(tensors, meta)
	if err != nil {
		return fmt.Errorf("safetensors: encoding: %w", err)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if err := writeBody(bw, header, tensors); err != nil {
		return fmt.Errorf("safetensors: encoding: %w", err)
	}
	return bw.Flush()
}

// encodeHeader validates the tensors and returns the length prefix and JSON header, padded with
// spaces so the data buffer starts 8-byte aligned (as the format's reference writer does; readers
// that map the file can then view F64 data in place).
func encodeHeader(tensors []HostTensor, meta map[string]string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	sep := func() {
		if !first {
			b.WriteByte(',')
		}
		first = false
	}
	str := func(s string) {
		q, _ := json.Marshal(s) // strings always marshal
		b.Write(q)
	}
	if len(meta) > 0 {
		sep()
		str(metadataKey)
		b.WriteString(":{")
		keys := make([]string, 0, len(meta))
		for k := range meta {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			str(k)
			b.WriteByte(':')
			str(meta[k])
		}
		b.WriteByte('}')
	}
	seen := make(map[string]bool, len(tensors))
	off := 0
	for _, t := range tensors {
		if t.Name == "" {
			return nil, fmt.Errorf("a tensor has an empty name")
		}
		if t.Name == metadataKey {
			return nil, fmt.Errorf("tensor name %q is reserved for metadata", t.Name)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("tensor %q appears twice", t.Name)
		}
		seen[t.Name] = true
		code, n, err := t.dtypeCode()
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		numel := 1
		for _, d := range t.Shape {
			if d < 0 {
				return nil, fmt.Errorf("tensor %q: negative dimension in shape %v", t.Name, t.Shape)
			}
			numel *= d
		}
		if numel != n {
			return nil, fmt.Errorf("tensor %q: shape %v holds %d elements but the data has %d", t.Name, t.Shape, numel, n)
		}
		end := off + n*dtypeSizes[code]
		sep()
		str(t.Name)
		b.WriteString(`:{"dtype":`)
		str(code)
		b.WriteString(`,"shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	b.WriteByte('}')
	for (8+b.Len())%8 != 0 {
		b.WriteByte(' ')
	}
	out := make([]byte, 8, 8+b.Len())
	binary.LittleEndian.PutUint64(out, uint64(b.Len()))
	return append(out, b.Bytes()...), nil
}

// writeBody writes the header and then every tensor's little-endian data.
func writeBody(w io.Writer, header []byte, tensors []HostTensor) error {
	if _, err := w.Write(header); err != nil {
		return err
	}
	for _, t := range tensors {
		if err := writeData(w, t.Data, littleEndian()); err != nil {
			return err
		}
	}
	return nil
}

// writeData writes a []float32 or []float64 in little-endian order. With raw set (a little-endian
// host) the elements' memory is written as it is; otherwise each element is converted.
func writeData(w io.Writer, data any, raw bool) error {
	if raw {
		_, err := w.Write(dataBytes(data))
		return err
	}
	var chunk [8 * 1024]byte
	switch d := data.(type) {
	case []float32:
		for len(d) > 0 {
			n := min(len(d), len(chunk)/4)
			for i, v := range d[:n] {
				binary.LittleEndian.PutUint32(chunk[4*i:], math.Float32bits(v))
			}
			if _, err := w.Write(chunk[:4*n]); err != nil {
				return err
			}
			d = d[n:]
		}
	case []float64:
		for len(d) > 0 {
			n := min(len(d), len(chunk)/8)
			for i, v := range d[:n] {
				binary.LittleEndian.PutUint64(chunk[8*i:], math.Float64bits(v))
			}
			if _, err := w.Write(chunk[:8*n]); err != nil {
				return err
			}
			d = d[n:]
		}
	}
	return nil
}
