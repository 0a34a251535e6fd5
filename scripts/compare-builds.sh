#!/usr/bin/env bash
# compare-builds.sh BASE [HEAD]: checks that a refactoring changed no number. Builds bin/driver at
# two revisions (default HEAD: the working tree), trains the same 20 steps with each on the CPU, on
# the CUDA emulator (make cuda-emu) and with two data-parallel ranks (CPU goroutines, and virtual
# CUDA ranks on the emulator), and compares the steps.csv losses and the step-20 checkpoint's tensor
# bytes. Then it times a 200-step CPU run of each build, alternating, $ROUNDS rounds (7), and prints the
# medians and their ratio. Needs MNIST (driver data fetch) and g++ for the emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: compare-builds.sh BASE [HEAD]}
head=${2:-}
work=$(mktemp -d)
trap 'git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add -q "$work/base" "$base"
(cd "$work/base" && CGO_ENABLED=0 go build -o "$work/driver-base" ./driver)
if [ -n "$head" ]; then
  git worktree add -q "$work/head" "$head"
  (cd "$work/head" && CGO_ENABLED=0 go build -o "$work/driver-head" ./driver)
else
  CGO_ENABLED=0 go build -o "$work/driver-head" ./driver
fi
make -s cuda-emu >/dev/null
export DLF_LIBCUDA=$PWD/bin/cudaemu/libcuda_emu.so
data=$work/data
"$work/driver-head" data fetch --data_dir "$data" mnist >/dev/null
common=(--data_dir "$data/mnist" --depth 2 --width 16 --batch_size 16 --print_per_steps 1 --num_samples 4
  --temperatures 0.7 --train_subset 160 --test_subset 32 --max_steps 20)
tensors() {
  python3 - "$1" <<'PY'
import sys, struct, json, hashlib
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
print(hashlib.sha256(b''.join(b[8 + n + h[k]['data_offsets'][0]:8 + n + h[k]['data_offsets'][1]]
                              for k in sorted(x for x in h if x != '__metadata__'))).hexdigest()[:16])
PY
}
status=0
for run in "cpu:--device cpu" "cuda-emulator:--device cuda" "cpu-2-ranks:--device cpu --num_gpus 2 --batch_size 8" \
           "cuda-emulator-2-virtual-ranks:--device cuda --num_gpus 2 --virtual_gpus --batch_size 8"; do
  name=${run%%:*}; read -r -a flags <<<"${run#*:}"
  for v in base head; do
    "$work/driver-$v" train "${common[@]}" "${flags[@]}" --results_dir "$work/$v-$name" >"$work/$v-$name.log" 2>&1
  done
  lb=$(cut -d, -f2-5 "$work/base-$name/steps.csv" | sha256sum | cut -c1-12)
  lh=$(cut -d, -f2-5 "$work/head-$name/steps.csv" | sha256sum | cut -c1-12)
  tb=$(tensors "$work/base-$name/checkpoints/step-000000020.safetensors")
  th=$(tensors "$work/head-$name/checkpoints/step-000000020.safetensors")
  verdict=identical; [ "$lb$tb" = "$lh$th" ] || { verdict=DIFFERENT; status=1; }
  echo "$name: losses $lb / $lh, step-20 tensors $tb / $th: $verdict"
done
for _ in $(seq 1 "${ROUNDS:-7}"); do
  for v in base head; do
    rm -rf "$work/t-$v"; s=$(date +%s.%N)
    "$work/driver-$v" train --device cpu "${common[@]}" --max_steps 200 --sample_per_epochs 0 --test_per_epochs 1000 --results_dir "$work/t-$v" >/dev/null 2>&1
    echo "$v $(echo "$(date +%s.%N) - $s" | bc)"
  done
done | python3 -c '
import sys, statistics as st
t = {"base": [], "head": []}
for l in sys.stdin:
    v, s = l.split(); t[v].append(float(s))
b, h = st.median(t["base"]), st.median(t["head"])
fb, fh = min(t["base"]), min(t["head"])
n = len(t["base"])
print(f"200-step CPU run, {n} alternating rounds: median base {b:.3f} s, head {h:.3f} s, head/base {h/b:.3f}; fastest base {fb:.3f} s, head {fh:.3f} s")'
exit $status
