package train

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResumeKeepsLogsConsistent checks the log rewrite on resume: rows written after the checkpoint
// the run resumes from are dropped, since the resumed run writes them again.
func TestResumeKeepsLogsConsistent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "steps.csv")
	body := strings.Join(stepColumns, ",") + "\n"
	for s := 1; s <= 5; s++ {
		body += fmt.Sprintf("0,%d,1.5,1.5,0,0.05,100,0,%d\n", s, s)
	}
	body += "0,6,1.4" // torn by a kill
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := openCSV(path, stepColumns, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.write(0, 4, 1.25, 1.25, 0.0, 0.05, 99.5, 0.0, 4.5); err != nil {
		t.Fatal(err)
	}
	l.close()
	if got := csvColumn(t, path, "step"); len(got) != 4 || got[3] != 4 || got[2] != 3 {
		t.Errorf("steps after resume at 3: %v, want 1 2 3 4", got)
	}
	if _, err := openCSV(path, metricColumns, -1); err == nil {
		t.Errorf("a file with another header was accepted")
	}
}

// TestCSVTornRowAndBadFiles checks that a row torn mid-write (what a killed run leaves) is dropped,
// that a malformed row in the middle is an error naming the file and row, and that ReadCSVColumns
// reads what write wrote.
func TestCSVTornRowAndBadFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "train.csv")
	l, err := openCSV(path, metricColumns, 0)
	if err != nil {
		t.Fatal(err)
	}
	for s := 1; s <= 3; s++ {
		if err := l.write(0, s, 2.5/float64(s), 2.0/float64(s), 0.0, 0.5, float64(s)); err != nil {
			t.Fatal(err)
		}
	}
	l.close()
	cols, err := ReadCSVColumns(path, "step", "bits_x")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cols) != "[[1 2 3] [2 1 0.6666667]]" {
		t.Errorf("ReadCSVColumns: %v", cols)
	}
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(b, []byte("1,4,0.6")...), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err = openCSV(path, metricColumns, 3); err != nil {
		t.Fatalf("a torn last row: %v", err)
	}
	l.close()
	if head, rows := readCSV(t, path); len(rows) != 3 || len(head) != len(metricColumns) {
		t.Errorf("after dropping the torn row: %d rows", len(rows))
	}
	lines := strings.Split(string(b), "\n")
	lines[2] = "0,2"
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openCSV(path, metricColumns, 3); err == nil || !strings.Contains(err.Error(), "row 3 has 2 fields") {
		t.Errorf("a short row in the middle: %v", err)
	}
	if _, err := ReadCSVColumns(path, "nosuch"); err == nil || !strings.Contains(err.Error(), `no column "nosuch"`) {
		t.Errorf("a missing column: %v", err)
	}
}
