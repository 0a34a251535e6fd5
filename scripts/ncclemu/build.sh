#!/usr/bin/env bash
# build.sh [OUT_DIR]: builds OUT_DIR/libnccl_emu.so (default bin/cudaemu under the repository
# root), the NCCL emulator that goes with the CUDA driver emulator: NCCL's entry points over POSIX
# shared memory, for the multi-process tests of tensor/collective/nccl and train on machines without
# a GPU (nccl.cpp says what it models). Load it with DLF_LIBNCCL=OUT_DIR/libnccl_emu.so. The build
# is skipped when the library is newer than its source and this script. Needs g++ (C++17); CXX
# overrides it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/bin/cudaemu}
CXX=${CXX:-g++}
command -v "$CXX" >/dev/null 2>&1 || { echo "ncclemu: no C++ compiler '$CXX' (install g++)" >&2; exit 1; }
mkdir -p "$out"
lib=$out/libnccl_emu.so
if [ -f "$lib" ] && [ "$lib" -nt "$here/nccl.cpp" ] && [ "$lib" -nt "$here/build.sh" ]; then
  echo "ncclemu: $lib is up to date"
  exit 0
fi
tmp=$(mktemp "$out/.libnccl_emu.so.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# -fvisibility=hidden: only the nccl* entry points are exported; --no-undefined: a missing symbol
# fails here, not at dlopen. Linked against librt for shm_open (part of libc since glibc 2.34).
"$CXX" -std=c++17 -O2 -g -fPIC -shared -pthread -fvisibility=hidden -Wall -Wextra -Wno-unused-parameter \
  -o "$tmp" "$here/nccl.cpp" -Wl,--no-undefined -Wl,-soname,libnccl.so.2 -lrt
mv -f "$tmp" "$lib"
trap - EXIT
echo "ncclemu: built $lib"
