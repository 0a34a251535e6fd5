#!/usr/bin/env bash
# Installs the pinned CUDA toolchain (nvcc 11.8 from Debian bookworm's non-free component); with
# --torch, Debian's CPU PyTorch plus OpenBLAS for the twin tests and side-by-side benchmarks; with
# --mpi, Open MPI (mpirun and libmpi.so.40) for the multi-process tests.
# Idempotent: every step is skipped when what it installs is already there. Needs root.
set -euo pipefail

want_torch=0
want_mpi=0
for a in "$@"; do
  case "$a" in
    --torch) want_torch=1 ;;
    --mpi) want_mpi=1 ;;
    *) echo "install-toolchain.sh: unknown argument $a (known: --torch, --mpi)" >&2; exit 2 ;;
  esac
done

need_update=0
pkgs=()
if ! command -v nvcc >/dev/null 2>&1; then
  # nvidia-cuda-toolkit lives in non-free; add a sources entry naming it once.
  src=/etc/apt/sources.list.d/dlf-nonfree.sources
  if [ ! -f "$src" ]; then
    cat >"$src" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  need_update=1
  pkgs+=(nvidia-cuda-toolkit)
fi
if [ "$want_torch" = 1 ] && ! /usr/bin/python3 -c 'import torch' >/dev/null 2>&1; then
  need_update=1
  pkgs+=(python3-torch libopenblas0-pthread python3-numpy)
fi
if [ "$want_mpi" = 1 ] && ! command -v mpirun >/dev/null 2>&1; then
  need_update=1
  pkgs+=(openmpi-bin libopenmpi3)
fi
if [ "${#pkgs[@]}" -eq 0 ]; then
  echo "install-toolchain: nothing to install"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-toolchain: need root to install ${pkgs[*]}" >&2
  exit 1
fi
[ "$need_update" = 1 ] && apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
echo "install-toolchain: installed ${pkgs[*]}"
command -v nvcc >/dev/null && nvcc --version | tail -n 2
