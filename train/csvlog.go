package train

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"dlf/train/fault"
)

// The CSV logs of a training run. train.csv and test.csv have the reference implementation's columns
// (dlf-spec §6.2: epoch, step, loss, bits_x, bits_y, l2_loss) plus the training wall-clock seconds;
// steps.csv adds a finer-grained row every --print_per_steps steps for the loss curve.
var (
	metricColumns = []string{"epoch", "step", "loss", "bits_x", "bits_y", "l2_loss", "seconds"}
	stepColumns   = []string{"epoch", "step", "loss", "bits_x", "l2_loss", "lr", "images_per_s", "data_wait", "seconds"}
)

// csvLog appends rows to a CSV file with a fixed header. Each row is written and flushed at once, so
// a killed run loses nothing it reported.
type csvLog struct {
	path string
	cols []string
	f    *os.File
}

// openCSV opens path for appending, writing the header if the file is new. keepStep ≥ 0 first drops
// rows whose step column exceeds it: rows written after the checkpoint a run resumes from, which the
// resumed run will write again. A file whose header differs is an error (another tool's file).
func openCSV(path string, cols []string, keepStep int) (*csvLog, error) {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var rows [][]string
	if len(b) > 0 {
		r := csv.NewReader(bytes.NewReader(b))
		r.FieldsPerRecord = -1
		all, err := r.ReadAll()
		if err != nil {
			return nil, fmt.Errorf("%s: %v (delete it or use another --results_dir)", path, err)
		}
		if len(all) == 0 || strings.Join(all[0], ",") != strings.Join(cols, ",") {
			return nil, fmt.Errorf("%s has another header than %s (delete it or use another --results_dir)", path, strings.Join(cols, ","))
		}
		stepCol := slices.Index(cols, "step")
		for i, row := range all[1:] {
			if len(row) != len(cols) {
				// A torn last line from a killed process: drop it, the run writes it again.
				if i == len(all)-2 {
					break
				}
				return nil, fmt.Errorf("%s: row %d has %d fields, want %d", path, i+2, len(row), len(cols))
			}
			step, err := strconv.Atoi(row[stepCol])
			if err != nil {
				return nil, fmt.Errorf("%s: row %d: step %q is not a number", path, i+2, row[stepCol])
			}
			if keepStep < 0 || step <= keepStep {
				rows = append(rows, row)
			}
		}
	}
	// Rewrite only when something changes, through a temporary file so a crash keeps the old log.
	if len(b) == 0 || keepStep >= 0 {
		var buf bytes.Buffer
		w := csv.NewWriter(&buf)
		_ = w.Write(cols)
		_ = w.WriteAll(rows)
		if !bytes.Equal(buf.Bytes(), b) {
			tmp := path + ".tmp"
			if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
				return nil, err
			}
			if err := os.Rename(tmp, path); err != nil {
				return nil, err
			}
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &csvLog{path: path, cols: cols, f: f}, nil
}

// write appends one row of values, formatted compactly (ints as ints, floats with 6 significant
// digits or more when needed).
func (l *csvLog) write(vals ...any) error {
	if l == nil {
		return nil // a rank other than 0 of a multi-process run writes no logs
	}
	if len(vals) != len(l.cols) {
		panic(fmt.Sprintf("csv %s: %d values for %d columns", l.path, len(vals), len(l.cols)))
	}
	row := make([]string, len(vals))
	for i, v := range vals {
		switch x := v.(type) {
		case int:
			row[i] = strconv.Itoa(x)
		case float64:
			row[i] = strconv.FormatFloat(x, 'g', 7, 64)
		default:
			row[i] = fmt.Sprint(x)
		}
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(row) // into memory: cannot fail
	w.Flush()
	// Two writes, with the fault-injection point between them, so that the crash-safety tests can
	// leave the torn line a killed process leaves; openCSV drops it on resume.
	b := buf.Bytes()
	if _, err := l.f.Write(b[:len(b)/2]); err != nil {
		return fmt.Errorf("%s: %v", l.path, err)
	}
	fault.Point(fault.CSVAppend)
	if _, err := l.f.Write(b[len(b)/2:]); err != nil {
		return fmt.Errorf("%s: %v", l.path, err)
	}
	return nil
}

func (l *csvLog) close() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}

// ReadCSVColumns reads the named float columns of a CSV log (missing file: no rows).
func ReadCSVColumns(path string, names ...string) ([][]float64, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return make([][]float64, len(names)), nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	head, err := r.Read()
	if err == io.EOF {
		return make([][]float64, len(names)), nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	idx := make([]int, len(names))
	for i, n := range names {
		if idx[i] = slices.Index(head, n); idx[i] < 0 {
			return nil, fmt.Errorf("%s has no column %q", path, n)
		}
	}
	out := make([][]float64, len(names))
	for {
		row, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		if len(row) != len(head) {
			continue // torn last line
		}
		for i, j := range idx {
			v, err := strconv.ParseFloat(row[j], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: column %s: %q is not a number", path, names[i], row[j])
			}
			out[i] = append(out[i], v)
		}
	}
	return out, nil
}
