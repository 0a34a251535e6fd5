#!/usr/bin/env bash
# recipe-runs.sh: the short MNIST runs the default training recipe was chosen from (docs/results.md,
# "Recipe"). Each run trains the CPU default model (mnist preset at depth 8, width 64, batch 64) on one
# core for STEPS optimizer steps and evaluates 2000 test images every 250 steps (test.csv); the data
# order and seed are the same for every run. Two runs at a time fit a 2-core machine.
#
#   scripts/recipe-runs.sh DATA_DIR OUT_DIR NAME...   (names below; STEPS=1500 by default)
set -euo pipefail
data=${1:?data dir (bin/driver data fetch --data_dir DATA mnist)}; out=${2:?output dir}; shift 2
bin=${DRIVER:-bin/driver}
declare -A runs=(
  [reference]="--recipe reference"
  [fast]="--recipe fast"
  [adam2e-3-warm0.2]="--recipe fast --initial_lr 2e-3 --lr 2e-3 --epochs_warmup 0.2"
  [adam2e-3-warm0.2-ema]="--recipe fast --initial_lr 2e-3 --lr 2e-3 --epochs_warmup 0.2 --eval_average"
)
for name in "$@"; do
  [ -n "${runs[$name]:-}" ] || { echo "recipe-runs: unknown run $name (have: ${!runs[*]})"; exit 2; }
  rm -rf "$out/$name"
  # shellcheck disable=SC2086
  GOMAXPROCS=1 "$bin" train --problem mnist --data_dir "$data" --results_dir "$out/$name" --max_steps "${STEPS:-1500}" \
    --valid_per_steps 250 --test_subset 2000 --sample_per_epochs 0 --print_per_steps 50 ${runs[$name]} >"$out/$name.log" 2>&1 &
done
wait
