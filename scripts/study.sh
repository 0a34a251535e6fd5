#!/usr/bin/env bash
# study.sh: the DLF-vs-Glow learning-speed study of issue 15 (docs/results.md, "Study"). Every run
# trains one core (GOMAXPROCS=1) for the same wall-clock budget on the same data order (seed), with
# the CPU default model size (depth 8, width 64, batch 64, 2 levels), and evaluates the first 2000 test
# images every 500 steps and at each epoch end. Two runs at a time on a 2-core machine. Every run keeps
# its activations for the backward pass (--recompute=false, DLF's preset default; Glow's presets
# rebuild them by inversion, which costs Glow ~1.5x per step and overflowed on Fashion-MNIST), so
# seconds compare the same memory strategy.
# `bin/driver compare` then plots test bits/dim against images seen and training seconds and
# tabulates what each run needs to reach given bits/dim.
#
#   scripts/study.sh DATA_ROOT OUT_DIR [RUN...]    (DATA_ROOT holds mnist/ and fashion-mnist/)
#   The fast recipe initialises DLF's hyper-network actnorms from data (--init data); the *-id models
#   keep the identity init the study's first DLF rows were measured with.
#   BUDGET=20m by default. RUN names: <dataset>/<model>/<recipe>, e.g. mnist/dlf-k2/fast; no RUN: all.
#   JOBS=2 runs at a time by default; with CPUS="1" (a taskset list) every run is pinned there, so
#   JOBS=1 CPUS=1 leaves core 0 free for other work. While the file $OUT_DIR/pause exists no new run
#   starts (a quiet window for a two-core measurement between runs).
set -euo pipefail
data=${1:?data root (bin/driver data fetch --data_dir DATA mnist; ... fashion-mnist)}; out=${2:?output dir}; shift 2
bin=${DRIVER:-bin/driver}
budget=${BUDGET:-20m}
jobs=${JOBS:-2}
mkdir -p "$out"
pin=()
[ -n "${CPUS:-}" ] && pin=(taskset -c "$CPUS")
declare -A models=(
  [dlf-k2]="--num_parts 2 --decomposition 0"
  [dlf-k2-inverse]="--num_parts 2 --decomposition 1"
  [dlf-k4]="--num_parts 4 --decomposition 0"
  [dlf-affine]="--num_parts 2 --affine_coupling"
  [dlf-k2-data]="--num_parts 2 --decomposition 0 --init data"
  [dlf-affine-id]="--num_parts 2 --affine_coupling --init identity"
  [glow]="--preset glow-DATASET"
)
all=()
for ds in mnist fashion-mnist; do
  for m in dlf-k2 dlf-k2-inverse dlf-k4 dlf-affine glow; do all+=("$ds/$m/fast"); done
  for m in dlf-k2 glow; do all+=("$ds/$m/reference"); done
done
[ $# -gt 0 ] && all=("$@")
run() {
  local ds m rc; IFS=/ read -r ds m rc <<<"$1"
  local args=${models[$m]:?unknown model $m}
  args=${args//DATASET/$ds}
  mkdir -p "$out/$ds"
  # shellcheck disable=SC2086
  GOMAXPROCS=1 "${pin[@]}" "$bin" train --problem "$ds" --data_dir "$data/$ds" --results_dir "$out/$ds/$m-$rc" --recipe "$rc" \
    --depth 8 --width 64 --batch_size 64 $args --max_time "$budget" --valid_per_steps 500 --test_subset 2000 \
    --print_per_steps 100 --recompute=false >"$out/$ds/$m-$rc.log" 2>&1
}
i=0
for r in "${all[@]}"; do
  while [ -e "$out/pause" ]; do sleep 10; done
  run "$r" &
  i=$((i + 1))
  if [ $((i % jobs)) = 0 ]; then wait; fi
done
wait
for ds in mnist fashion-mnist; do
  dirs=()
  for d in "$out/$ds"/*/; do [ -f "$d/test.csv" ] && dirs+=("${d%/}=$(basename "$d")"); done
  [ ${#dirs[@]} -gt 0 ] && "$bin" compare --out_prefix "$out/$ds-study" --title "$ds: test bits/dim, one core, $budget each" "${dirs[@]}"
done
