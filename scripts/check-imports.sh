#!/usr/bin/env bash
# check-imports.sh: the import graph of dlf's packages (not their tests) points one way, and only
# the CUDA layer touches the raw driver bindings. Run by CI (make check-imports).
#
#   layer 0  tensor, tensor/*, kernels          the tensor library and its backends
#   layer 1  autodiff, autodiff/*               the tape and optimizers
#   layer 2  dlf, data                          the model and the data readers
#   layer 3  train, train/*, bench              the training engine and the benchmarks (not each other)
#   layer 4  driver, dev/*                      the CLI and the kernel workbench (dev/cuda)
#
# A package may import packages of its own layer or below. dlf/tensor/cuda/cu (purego bindings) may
# be imported only by tensor/cuda, tensor/collective (and its nccl), kernels (the generated launchers) and cu's own
# test helper gputest.
set -euo pipefail
cd "$(dirname "$0")/.."
go list -f '{{.ImportPath}}:{{range .Imports}} {{.}}{{end}}' ./... | python3 -c '
import sys
def layer(p):
    p = p.removeprefix("dlf/")
    top = p.split("/")[0]
    return {"tensor": 0, "kernels": 0, "autodiff": 1, "dlf": 2, "data": 2, "train": 3, "bench": 3, "driver": 4, "dev": 4}.get(top)
raw_ok = {"dlf/tensor/cuda", "dlf/tensor/collective", "dlf/tensor/collective/nccl", "dlf/kernels", "dlf/tensor/cuda/cu/gputest"}
bad = []
for line in sys.stdin:
    pkg, _, imps = line.strip().partition(":")
    for imp in imps.split():
        if not imp.startswith("dlf/"):
            continue
        if imp == "dlf/tensor/cuda/cu" and pkg not in raw_ok:
            bad.append(f"{pkg} imports the raw driver bindings {imp}; go through tensor/cuda or tensor/collective")
        lp, li = layer(pkg), layer(imp)
        if lp is None or li is None:
            bad.append(f"{pkg} -> {imp}: a package outside the layer table (scripts/check-imports.sh)")
        elif li > lp:
            bad.append(f"{pkg} (layer {lp}) imports {imp} (layer {li}): imports must point down")
        elif lp == li == 3 and pkg.split("/")[1] != imp.split("/")[1]:
            bad.append(f"{pkg} imports {imp}: train and bench are siblings")
for b in bad:
    print("check-imports:", b)
if bad:
    sys.exit(1)
print("check-imports: the import graph points one way; only tensor/cuda, tensor/collective and kernels import cu")
'
