// Command gen regenerates kernels/table_gen.go and kernels/<module>_gen.go from the kernels/*.cu
// sources, after optionally compiling each source to PTX with nvcc.
//
//	go run ./kernels/gen                 # from the repository root
//	go run ./gen -dir . -nvcc nvcc       # go generate, in kernels/
//	go run ./kernels/gen -check          # CI: fail if a generated file is stale
//
// It parses every extern "C" __global__ signature, checks each .ptx module
// against its .cu (same kernels, same parameter count, order and widths,
// header .version 7.8 / .target sm_80), and writes the typed launchers.
// Errors name file:line.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"dlf/kernels/internal/kgen"
)

// nvccFlags are the pinned compile flags (DESIGN.md "Kernels and the GPU
// workflow"): PTX for compute_80, no -lineinfo (it embeds absolute paths).
var nvccFlags = []string{"-ptx", "-arch=compute_80", "-O3"}

func main() {
	dir := flag.String("dir", "", "directory holding the .cu files (default: ./kernels if present, else .)")
	nvcc := flag.String("nvcc", "", "compile each .cu to .ptx with this nvcc first (empty: use the committed .ptx)")
	check := flag.Bool("check", false, "do not write; exit 1 if a generated file is out of date")
	flag.Parse()
	if err := run(*dir, *nvcc, *check); err != nil {
		fmt.Fprintln(os.Stderr, "kernels/gen:", err)
		os.Exit(1)
	}
}

func run(dir, nvcc string, check bool) error {
	if dir == "" {
		dir = "."
		if fi, err := os.Stat("kernels"); err == nil && fi.IsDir() {
			dir = "kernels"
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.cu"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no .cu files in %s", dir)
	}
	sort.Strings(files)
	if nvcc != "" {
		for _, f := range files {
			ptx := strings.TrimSuffix(f, ".cu") + ".ptx"
			args := append(append([]string{}, nvccFlags...), "-o", filepath.Base(ptx), filepath.Base(f))
			cmd := exec.Command(nvcc, args...)
			cmd.Dir = dir
			cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s %s (in %s): %w", nvcc, strings.Join(args, " "), dir, err)
			}
		}
	}
	var srcs []kgen.Source
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		srcs = append(srcs, kgen.Source{File: filepath.Base(f), Text: string(b)})
	}
	kernels, modules, err := kgen.ParseSources(srcs)
	if err != nil {
		return err
	}
	if err := checkPTX(dir, kernels, modules); err != nil {
		return err
	}
	generated, err := kgen.Generate(kernels, modules)
	if err != nil {
		return err
	}
	return writeGenerated(dir, generated, check)
}

// writeGenerated writes the generated files that changed and deletes generated files no module
// produces any more (a .cu that was removed or renamed); with check it writes nothing and reports
// what is out of date.
func writeGenerated(dir string, files map[string][]byte, check bool) error {
	var stale []string
	old, _ := filepath.Glob(filepath.Join(dir, "*_gen.go"))
	for _, path := range old {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if _, ok := files[filepath.Base(path)]; !ok && bytes.HasPrefix(b, []byte(kgen.Header)) {
			stale = append(stale, path+" (no longer generated)")
			if !check {
				if err := os.Remove(path); err != nil {
					return err
				}
			}
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := filepath.Join(dir, name)
		if prev, _ := os.ReadFile(path); bytes.Equal(prev, files[name]) {
			continue
		}
		stale = append(stale, path)
		if check {
			continue
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, files[name], 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	if check && len(stale) > 0 {
		return fmt.Errorf("out of date: %s: run make kernels (or go generate ./kernels)", strings.Join(stale, ", "))
	}
	return nil
}

// checkPTX verifies every module's PTX against its kernels and rejects
// .ptx files without a .cu (they would be embedded but never loaded).
func checkPTX(dir string, kernels []kgen.Kernel, modules []string) error {
	byModule := map[string][]kgen.Kernel{}
	for _, k := range kernels {
		byModule[k.Module] = append(byModule[k.Module], k)
	}
	known := map[string]bool{}
	var errs []string
	for _, m := range modules {
		known[m+".ptx"] = true
		path := filepath.Join(dir, m+".ptx")
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v (compile %s.cu first: make kernels)", path, err, m))
			continue
		}
		mod, err := kgen.ParsePTX(path, string(b))
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if err := kgen.CheckPTX(path, mod, byModule[m]); err != nil {
			errs = append(errs, err.Error())
		}
	}
	ptxs, _ := filepath.Glob(filepath.Join(dir, "*.ptx"))
	for _, p := range ptxs {
		if !known[filepath.Base(p)] {
			errs = append(errs, fmt.Sprintf("%s has no matching .cu source: delete it", p))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}
