#!/usr/bin/env bash
# cpu-replicas.sh: training throughput of the CPU default model (mnist preset at depth 8, width 64,
# batch 64) as one replica using every thread (--num_gpus 1) against the default's one replica per
# core (docs/perf.md, "Two cores: a replica per core"). Rounds alternate the two so machine noise
# hits both; each run trains STEPS steps and the rate is taken from its steps.csv between step 100
# (after the data-dependent init and warm-up) and its last row.
#
#   scripts/cpu-replicas.sh DATA_DIR [ROUNDS] [STEPS]    (DATA_DIR holds MNIST: bin/driver data fetch)
set -euo pipefail
data=${1:?MNIST directory}; rounds=${2:-2}; steps=${3:-600}
bin=${DRIVER:-bin/driver}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
rate() { awk -F, 'NR > 1 && $2 >= 100 { if (!s0) { s0 = $2; t0 = $9 } s = $2; t = $9 } END { printf "%.1f", (s - s0) * 64 / (t - t0) }' "$1/steps.csv"; }
for r in $(seq "$rounds"); do
  for mode in one per-core; do
    flags=(); [ "$mode" = one ] && flags=(--num_gpus 1)
    "$bin" train --problem mnist --data_dir "$data" --results_dir "$tmp/$mode-$r" --max_steps "$steps" \
      --print_per_steps 50 --sample_per_epochs 0 "${flags[@]}" >"$tmp/$mode-$r.log" 2>&1
    echo "round $r $mode: $(grep -m1 '^device:' "$tmp/$mode-$r.log" | sed 's/^device: *//'): $(rate "$tmp/$mode-$r") images/s"
  done
done
