package data

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Options adjusts how Open finds and decodes a problem's data.
type Options struct {
	// Path replaces the default directory <dataRoot>/<problem>. It is required for the "folder"
	// problem, where it names the user's image folder.
	Path string
	// Size resizes image-folder images to Size×Size (folder and celeba). For celeba it is also the
	// required side of TFRecord images when > 0.
	Size int
	// CenterCrop crops image-folder images to their centred square before resizing.
	CenterCrop bool
	// Mode is the channel layout for the folder problem (celeba is always RGB).
	Mode ColorMode
	// Workers is the number of image-decoding goroutines (0: GOMAXPROCS).
	Workers int
}

// ProblemInfo describes one registered problem.
type ProblemInfo struct {
	Name string
	// Shape is the required image shape; H = 0 when the shape comes from the data (celeba, folder),
	// with C = 3 for celeba (always RGB) and C = 0 for folder (set by Options.Mode).
	Shape Shape
	// Classes is the number of label classes, or 0 when labels are optional/unknown.
	Classes int
	// Layout says which files Open looks for, relative to the problem directory.
	Layout string
}

var problems = []ProblemInfo{
	{"mnist", Shape{28, 28, 1}, 10, "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]; or *train*.tfrecords / *validation*.tfrecords"},
	{"fashion-mnist", Shape{28, 28, 1}, 10, "same idx files as mnist; or *train*.tfrecords / *validation*.tfrecords"},
	{"cifar10", Shape{32, 32, 3}, 10, "data_batch_1.bin … data_batch_5.bin and test_batch.bin (optionally inside cifar-10-batches-bin/); or *train*.tfrecords / *validation*.tfrecords"},
	{"imagenet32", Shape{32, 32, 3}, 0, "Glow imagenet-oord *train*.tfrecords / *validation*.tfrecords (r05 when resolutions are mixed); or Chrabaszcz et al. *train*.npz / *val*.npz (any depth)"},
	{"imagenet64", Shape{64, 64, 3}, 0, "Glow imagenet-oord *train*.tfrecords / *validation*.tfrecords (r06 when resolutions are mixed); or Chrabaszcz et al. *train*.npz / *val*.npz (any depth)"},
	{"celeba", Shape{0, 0, 3}, 0, "Glow celeba-tfr *train*.tfrecords / *validation*.tfrecords; or PNG/JPEG images in train/ and test/"},
	{"folder", Shape{}, 0, "PNG/JPEG images under Options.Path (recursively), or under Path/train and Path/test; optional labels.csv"},
}

// aliases maps the reference implementation's problem names to ours.
var aliases = map[string]string{"imagenet32x32": "imagenet32", "imagenet64x64": "imagenet64"}

// Problems lists the registered problem names.
func Problems() []string {
	out := make([]string, len(problems))
	for i, p := range problems {
		out[i] = p.Name
	}
	return out
}

// LookupProblem returns the registry entry for name (aliases such as imagenet32x32 accepted).
func LookupProblem(name string) (ProblemInfo, bool) {
	if a, ok := aliases[name]; ok {
		name = a
	}
	for _, p := range problems {
		if p.Name == name {
			return p, true
		}
	}
	return ProblemInfo{}, false
}

// Open loads split ("train" or "test") of problem from <dataRoot>/<problem>/ (or opts.Path),
// trying the layouts listed in the problem's ProblemInfo.Layout in order, and checks the image
// shape the problem requires.
func Open(problem, dataRoot, split string, opts Options) (*Dataset, error) {
	info, ok := LookupProblem(problem)
	if !ok {
		return nil, fmt.Errorf("data: unknown problem %q (known: %s)", problem, strings.Join(Problems(), ", "))
	}
	if split != "train" && split != "test" {
		return nil, fmt.Errorf("data: unknown split %q, want train or test", split)
	}
	dir := opts.Path
	if dir == "" {
		if info.Name == "folder" {
			return nil, fmt.Errorf("data: problem folder needs the image folder path")
		}
		dir = filepath.Join(dataRoot, info.Name)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("data: %s: directory %s not found; expected %s (see data.Fetch)", info.Name, dir, info.Layout)
	}
	var ds *Dataset
	var err error
	switch info.Name {
	case "mnist", "fashion-mnist":
		ds, err = openIdx(info, dir, split)
	case "cifar10":
		ds, err = openCIFAR(info, dir, split)
	case "imagenet32", "imagenet64":
		ds, err = openImageNet(info, dir, split)
	case "celeba":
		ds, err = openCelebA(info, dir, split, opts)
	case "folder":
		ds, err = openFolder(dir, split, opts)
	}
	if err != nil {
		return nil, err
	}
	if err := checkShape(info, ds, opts); err != nil {
		return nil, err
	}
	if err := ds.Validate(); err != nil {
		return nil, err
	}
	return ds, nil
}

// checkShape enforces the problem's image shape and label range.
func checkShape(info ProblemInfo, ds *Dataset, opts Options) error {
	s := info.Shape
	switch {
	case s.H > 0 && (ds.H != s.H || ds.W != s.W || ds.C != s.C):
		return fmt.Errorf("data: %s: %s images are %d×%d×%d, problem %s needs %d×%d×%d", info.Name, ds.Source, ds.H, ds.W, ds.C, info.Name, s.H, s.W, s.C)
	case info.Name == "celeba" && (ds.H != ds.W || ds.C != 3):
		return fmt.Errorf("data: celeba: %s images are %d×%d×%d, want square RGB", ds.Source, ds.H, ds.W, ds.C)
	case info.Name == "celeba" && opts.Size > 0 && ds.H != opts.Size:
		return fmt.Errorf("data: celeba: %s images are %d×%d, want %d×%d", ds.Source, ds.H, ds.W, opts.Size, opts.Size)
	}
	if info.Classes > 0 && ds.Labels != nil {
		for i, l := range ds.Labels {
			if l < 0 || int(l) >= info.Classes {
				return fmt.Errorf("data: %s: %s: image %d has label %d, want 0-%d", info.Name, ds.Source, i, l, info.Classes-1)
			}
		}
	}
	return nil
}

// tfrecordFiles finds the TFRecord files of a split under dir (any depth), in natural sort order.
// As in the reference pipeline, training files match *train*.tfrecords and evaluation files
// *validation*.tfrecords (we also accept *test*.tfrecords), matched on the path below dir.
func tfrecordFiles(dir, split string) ([]string, error) {
	words := []string{"train"}
	if split == "test" {
		words = []string{"validation", "test"}
	}
	return findFiles(dir, ".tfrecords", words)
}

// findFiles walks dir for files with the given extension whose path relative to dir contains one
// of words, returning them in natural order (so batch_2 sorts before batch_10).
func findFiles(dir, ext string, words []string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(strings.ToLower(d.Name()), ext) {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = strings.ToLower(filepath.ToSlash(rel))
		for _, w := range words {
			if strings.Contains(rel, w) {
				out = append(out, p)
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("data: searching %s: %w", dir, err)
	}
	sort.Slice(out, func(i, j int) bool { return naturalLess(out[i], out[j]) })
	return out, nil
}

// naturalLess compares strings treating digit runs as numbers.
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			if da != db {
				return da < db
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitRun(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

func openIdx(info ProblemInfo, dir, split string) (*Dataset, error) {
	prefix := "train"
	if split == "test" {
		prefix = "t10k"
	}
	img := findEither(dir, prefix+"-images-idx3-ubyte")
	lab := findEither(dir, prefix+"-labels-idx1-ubyte")
	if img != "" && lab != "" {
		return LoadIdx(img, lab)
	}
	if files, err := tfrecordFiles(dir, split); err != nil {
		return nil, err
	} else if len(files) > 0 {
		return LoadTFRecords(info.Shape, files...)
	}
	return nil, fmt.Errorf("data: %s: no %s data in %s; expected %s (run data.Fetch(%q, ...))", info.Name, split, dir, info.Layout, info.Name)
}

// findEither returns dir/name.gz or dir/name when present, preferring the gzip file.
func findEither(dir, name string) string {
	for _, n := range []string{name + ".gz", name} {
		if p := filepath.Join(dir, n); fileExists(p) {
			return p
		}
	}
	return ""
}

// cifarPaths returns the CIFAR-10 binary files of a split if all are present, in dir or in its
// cifar-10-batches-bin/ subfolder.
func cifarPaths(dir, split string) []string {
	names := CIFARTrainFiles
	if split == "test" {
		names = []string{CIFARTestFile}
	}
	for _, d := range []string{dir, filepath.Join(dir, "cifar-10-batches-bin")} {
		var ps []string
		for _, n := range names {
			if p := filepath.Join(d, n); fileExists(p) {
				ps = append(ps, p)
			}
		}
		if len(ps) == len(names) {
			return ps
		}
	}
	return nil
}

func openCIFAR(info ProblemInfo, dir, split string) (*Dataset, error) {
	if ps := cifarPaths(dir, split); ps != nil {
		return LoadCIFAR(ps...)
	}
	if files, err := tfrecordFiles(dir, split); err != nil {
		return nil, err
	} else if len(files) > 0 {
		return LoadTFRecords(info.Shape, files...)
	}
	return nil, fmt.Errorf("data: cifar10: no %s data in %s; expected %s", split, dir, info.Layout)
}

// resTag matches Glow's resolution tag in imagenet-oord file names: r05 = 2^5 = 32, r06 = 64.
var resTag = regexp.MustCompile(`(^|[^a-z0-9])r0(\d)([^0-9]|$)`)

// filterResolution keeps the files tagged with the resolution for side when any file is tagged.
func filterResolution(files []string, side int) []string {
	tagged := false
	var keep []string
	for _, f := range files {
		m := resTag.FindStringSubmatch(strings.ToLower(filepath.Base(f)))
		if m == nil {
			continue
		}
		tagged = true
		if e, _ := strconv.Atoi(m[2]); 1<<e == side {
			keep = append(keep, f)
		}
	}
	if !tagged {
		return files
	}
	return keep
}

func openImageNet(info ProblemInfo, dir, split string) (*Dataset, error) {
	files, err := tfrecordFiles(dir, split)
	if err != nil {
		return nil, err
	}
	if files = filterResolution(files, info.Shape.H); len(files) > 0 {
		return LoadTFRecords(info.Shape, files...)
	}
	words := []string{"train"}
	if split == "test" {
		words = []string{"val"}
	}
	if files, err = findFiles(dir, ".npz", words); err != nil {
		return nil, err
	}
	if len(files) > 0 {
		return LoadNpz(info.Shape.H, files...)
	}
	return nil, fmt.Errorf("data: %s: no %s data in %s; expected %s", info.Name, split, dir, info.Layout)
}

func openCelebA(info ProblemInfo, dir, split string, opts Options) (*Dataset, error) {
	files, err := tfrecordFiles(dir, split)
	if err != nil {
		return nil, err
	}
	if len(files) > 0 {
		hint := Shape{}
		if opts.Size > 0 {
			hint = Shape{opts.Size, opts.Size, 3}
		}
		return LoadTFRecords(hint, files...)
	}
	sub := filepath.Join(dir, split)
	if st, err := os.Stat(sub); err == nil && st.IsDir() {
		return LoadFolder(sub, FolderOptions{Size: opts.Size, CenterCrop: opts.CenterCrop, Mode: ModeRGB, Workers: opts.Workers})
	}
	return nil, fmt.Errorf("data: celeba: no %s data in %s; expected %s", split, dir, info.Layout)
}

func openFolder(dir, split string, opts Options) (*Dataset, error) {
	fo := FolderOptions{Size: opts.Size, CenterCrop: opts.CenterCrop, Mode: opts.Mode, Workers: opts.Workers}
	sub := filepath.Join(dir, split)
	if st, err := os.Stat(sub); err == nil && st.IsDir() {
		return LoadFolder(sub, fo)
	}
	if split == "train" {
		if st, err := os.Stat(filepath.Join(dir, "test")); err == nil && st.IsDir() {
			return nil, fmt.Errorf("data: folder: %s has test/ but no train/ subfolder; move the training images into %s", dir, sub)
		}
		return LoadFolder(dir, fo)
	}
	return nil, fmt.Errorf("data: folder: %s has no test/ subfolder; put held-out images in %s or carve a validation split from train", dir, sub)
}
