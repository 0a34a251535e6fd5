package data

import (
	"fmt"
	"strings"
)

// FormatError reports malformed input. It names the file, and where known the record index and byte
// offset, so that a user with a multi-gigabyte dataset can find the bad spot without a debugger.
type FormatError struct {
	File   string // path or name of the input
	Record int    // record/image index, or -1 when not applicable
	Offset int64  // byte offset into the (decompressed) stream, or -1 when unknown
	Msg    string // what was wrong and what was expected
}

// Error formats the location prefix followed by the message.
func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("data: ")
	b.WriteString(e.File)
	if e.Record >= 0 {
		fmt.Fprintf(&b, ": record %d", e.Record)
	}
	if e.Offset >= 0 {
		fmt.Fprintf(&b, " (offset %d)", e.Offset)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// errf builds a FormatError without record or offset information.
func errf(file, format string, args ...any) error {
	return &FormatError{File: file, Record: -1, Offset: -1, Msg: fmt.Sprintf(format, args...)}
}

// errAt builds a FormatError with a byte offset.
func errAt(file string, off int64, format string, args ...any) error {
	return &FormatError{File: file, Record: -1, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// errRec builds a FormatError with a record index and optional offset (-1 when unknown).
func errRec(file string, rec int, off int64, format string, args ...any) error {
	return &FormatError{File: file, Record: rec, Offset: off, Msg: fmt.Sprintf(format, args...)}
}
