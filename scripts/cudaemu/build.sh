#!/usr/bin/env bash
# build.sh [OUT_DIR [KERNELS_DIR]]: builds OUT_DIR/libcuda_emu.so, dlf's CUDA driver emulator, from
# the kernel sources in KERNELS_DIR (default: the repository's kernels/) and the emulator sources
# beside this script. OUT_DIR defaults to bin/cudaemu under the repository root.
#
# Use it through make: `make cuda-emu` builds it, `make emu-test` runs the CUDA backend's tests on it
# (DLF_LIBCUDA=.../libcuda_emu.so REQUIRE_GPU=1). To test a modified copy of the kernels without
# touching kernels/, pass the copy: build.sh /tmp/emu-copy /tmp/kernels-copy.
#
# Each .cu is compiled as C++17 by g++ with emu.h force-included, wrapped by gen_dispatch.py, and
# linked with the fiber scheduler (fiber.cpp: every CUDA thread a fiber, real barriers), the PTX
# reader and the fake driver (driver.cpp: how a wild pointer becomes the sticky error 700) into one
# shared library. It checks kernel logic only: memory ordering, timing, ptxas register allocation
# and real occupancy are not modeled (emu.h lists every gap). Everything happens in a temporary
# directory; the library is then moved into OUT_DIR in one rename, so a test process that still has
# the old one mapped is not disturbed. The build is skipped when OUT_DIR holds a library built from
# the same inputs (sources, compiler version, flags), recorded in libcuda_emu.so.inputs; delete
# that file to force a rebuild.
#
# Needs bash, g++ (C++17; CI and dev machines have g++ 12) and python3. CXX and PYTHON override the
# tools; EMU_CXXFLAGS adds compiler flags.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/bin/cudaemu}
kdir=${2:-$root/kernels}
CXX=${CXX:-g++}
PYTHON=${PYTHON:-python3}

die() { echo "cudaemu: $*" >&2; exit 1; }

command -v "$CXX" >/dev/null 2>&1 || die "no C++ compiler '$CXX' (install g++)"
command -v "$PYTHON" >/dev/null 2>&1 || die "no '$PYTHON' on PATH (gen_dispatch.py needs python3)"
[ -d "$kdir" ] || die "kernel directory $kdir does not exist"
kdir=$(cd "$kdir" && pwd)
shopt -s nullglob
cu=("$kdir"/*.cu)
[ ${#cu[@]} -gt 0 ] || die "no .cu files in $kdir"
mkdir -p "$out"
out=$(cd "$out" && pwd)

# -ffp-contract=off: no a*b+c contraction (nvcc would contract; either choice is within the tests'
# tolerances, and off keeps results independent of the g++ version). -fno-math-errno only lets g++
# inline sqrt. -mfma only when this CPU has FMA (the library runs where it is built): fmaf is then an
# instruction instead of a libm call, with identical results. -fvisibility=hidden: only the cu*
# entry points are exported (the library is opened RTLD_GLOBAL; kernel names must not leak).
flags=(-std=c++17 -O2 -g -fPIC -pthread -fvisibility=hidden -fno-math-errno -ffp-contract=off)
if grep -qw fma /proc/cpuinfo 2>/dev/null; then flags+=(-mfma); fi
# EMU_CXXFLAGS adds flags, e.g. -DEMU_UCONTEXT (portable fiber switch) or -O0 for a debugger.
read -r -a extra <<<"${EMU_CXXFLAGS:-}"
flags+=("${extra[@]}")

# The inputs that determine the library, hashed; identical inputs mean nothing to do.
inputs=$(
  echo "flags ${flags[*]}"
  "$CXX" --version | head -n 1
  (cd "$here" && sha256sum build.sh gen_dispatch.py emu.h runtime.h fiber.cpp ptx.cpp driver.cpp selftest.cpp)
  (cd "$kdir" && sha256sum -- *.cu $(ls -- *.cuh *.h 2>/dev/null || true))
)
hash=$(printf '%s\n' "$inputs" | sha256sum | cut -d' ' -f1)
if [ -f "$out/libcuda_emu.so" ] && [ "$(cat "$out/libcuda_emu.so.inputs" 2>/dev/null | head -n 1)" = "$hash" ]; then
  echo "cudaemu: $out/libcuda_emu.so is up to date (kernels from $kdir)"
  exit 0
fi

start=$(date +%s)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cudaemu.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

"$PYTHON" "$here/gen_dispatch.py" "$kdir" "$tmp"

# Compile every translation unit, at most one job per CPU at a time. -ffile-prefix-map hides the
# temporary directory's name from the debug info, so that the same inputs give the same library.
jobs=$(nproc 2>/dev/null || echo 2)
running=0
failed=0
objs=()
compile() { # src obj extra-flags...
  local src=$1 obj=$2
  shift 2
  if [ "$running" -ge "$jobs" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
  "$CXX" "${flags[@]}" "$@" -ffile-prefix-map="$tmp"=cudaemu-gen -I "$here" -c "$src" -o "$obj" &
  running=$((running + 1))
  objs+=("$obj")
}
for f in "${cu[@]}"; do
  family=$(basename "$f" .cu)
  # -w: warnings in kernel code compiled by g++ are not actionable (nvcc is the real compiler).
  compile "$tmp/k_$family.cpp" "$tmp/k_$family.o" -w -iquote "$kdir" -include "$here/emu.h"
done
compile "$tmp/table.cpp" "$tmp/table.o" -Wall
for f in fiber ptx driver selftest; do
  compile "$here/$f.cpp" "$tmp/$f.o" -Wall -Wextra -Wno-unused-parameter
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
[ "$failed" = 0 ] || die "compilation failed (see the errors above); emu.h may lack a CUDA built-in a kernel uses"

# The scheduler's own semantics (barriers, shuffles, deadlock and fault detection) first.
"$CXX" -pthread -o "$tmp/selftest" "$tmp/selftest.o" "$tmp/fiber.o" "$tmp/ptx.o" -lm
"$tmp/selftest" || die "the emulator's self-test failed (scripts/cudaemu/selftest.cpp)"

# --no-undefined: a CUDA function emu.h lacks fails here, not at dlopen in the middle of a test run.
libobjs=()
for o in "${objs[@]}"; do [ "$o" = "$tmp/selftest.o" ] || libobjs+=("$o"); done
"$CXX" -shared -pthread -o "$tmp/libcuda_emu.so" "${libobjs[@]}" -Wl,--no-undefined -Wl,-soname,libcuda_emu.so -lm
cp "$tmp/libcuda_emu.so" "$out/.libcuda_emu.so.$$"
mv -f "$out/.libcuda_emu.so.$$" "$out/libcuda_emu.so"
{ echo "$hash"; printf '%s\n' "$inputs"; } >"$out/.libcuda_emu.so.inputs.$$"
mv -f "$out/.libcuda_emu.so.inputs.$$" "$out/libcuda_emu.so.inputs"
echo "cudaemu: built $out/libcuda_emu.so from $kdir in $(($(date +%s) - start))s"
