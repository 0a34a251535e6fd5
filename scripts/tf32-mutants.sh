#!/usr/bin/env bash
# tf32-mutants.sh: shows that the TF32 conformance tests catch the mistakes a tensor-core kernel is
# prone to. Each mutant is a one-line change to a copy of kernels/ (the real sources are never
# touched): a wrong A or B fragment index, a missing barrier between pipeline stages, operands not
# rounded with cvt.rna, accumulators stored to the wrong column. For each, the CUDA emulator is
# built from the copy (scripts/cudaemu/build.sh, a few seconds) and the TF32 families of the
# conformance suite run on it; the script fails if any mutant passes, or if a mutation no longer
# applies (the source moved: update the pattern here).
#
# Usage: scripts/tf32-mutants.sh [WORK_DIR]   (make tf32-mutants; part of make emu-test)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${1:-$(mktemp -d "${TMPDIR:-/tmp}/tf32-mutants.XXXXXX")}
mkdir -p "$work"
GO=${GO:-go}

# name | file | the exact line to replace (fixed string) | its replacement
mutants=(
  "a-fragment|mma.cuh|          af[i][1] = __float_as_uint(a0[i * 16 + 8]);             // (row g+8, k t)|          af[i][1] = __float_as_uint(a0[4 * C::SA + i * 16]);"
  "b-fragment|mma.cuh|          bf[j][1] = __float_as_uint(b0[4 * C::SB + j * 8]); // (k t+4, column g)|          bf[j][1] = __float_as_uint(b0[j * 8 + 1]);"
  "stage-barrier|mma.cuh|      __syncthreads();  // stage end|"
  "no-cvt-rna|mma.cuh|        tf32_round4(ra);  // next stage|"
  "store-column|mma.cuh|      epi.store2(m + i * 16 + 8, n + j * 8, acc[i][j][2], acc[i][j][3]);|      epi.store2(m + i * 16 + 8, n + j * 8, acc[i][j][3], acc[i][j][2]);"
)

status=0
for m in "${mutants[@]}"; do
  IFS='|' read -r name file from to <<<"$m"
  dir="$work/$name"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$root"/kernels/*.cu "$root"/kernels/*.cuh "$dir/"
  n=$(grep -cxF -- "$from" "$dir/$file" || true)
  if [ "$n" != 1 ]; then
    echo "tf32-mutants: $name: the line to mutate occurs $n times in kernels/$file (want 1): $from"
    status=1
    continue
  fi
  FROM="$from" TO="$to" python3 - "$dir/$file" <<'PY'
import os, sys
p = sys.argv[1]
s = open(p).read().split("\n")
s = [os.environ["TO"] if l == os.environ["FROM"] else l for l in s]
open(p, "w").write("\n".join(s))
PY
  "$root/scripts/cudaemu/build.sh" "$dir/emu" "$dir" >"$dir/build.log" 2>&1 || { echo "tf32-mutants: $name: the emulator did not build:"; tail -20 "$dir/build.log"; status=1; continue; }
  if (cd "$root" && DLF_LIBCUDA="$dir/emu/libcuda_emu.so" REQUIRE_GPU=1 BACKENDTEST_SEED=1 $GO test -count=1 \
      -run 'TestConformance/(GemmTF32|Conv2DTF32|Conv2DBackwardDataTF32|Conv2DBackwardWeightsTF32)/' ./tensor/cuda/ >"$dir/test.log" 2>&1); then
    echo "tf32-mutants: $name: SURVIVED (the TF32 conformance tests pass on the mutated kernels)"
    status=1
  else
    caught=$(grep -c "outside tolerance" "$dir/test.log" || true)
    first=$(grep -m1 -o "TestConformance/[^:]*" "$dir/test.log" || true)
    echo "tf32-mutants: $name: caught ($caught failing comparisons; first: $first)"
  fi
done
exit $status
