#!/usr/bin/env bash
# Runs dlf's GPU checks on a machine with an NVIDIA GPU and no Go toolchain, from the repository root,
# using the binaries `make gpu-check` cross-built into bin/gpu/:
#   1. every GPU package's tests (driver bindings, kernels, CUDA backend) with REQUIRE_GPU=1, so a
#      missing device fails instead of skipping, and the GPU-named tests of every other package;
#   2. compute-sanitizer memcheck over the kernel tests, and racecheck over kernels that use shared memory;
#   3. the benchmarks: go test -bench of the CUDA backend, `driver bench`, and the PyTorch twin if present.
# Logs go to $OUT (or bin/gpu-logs) and a summary table is printed last. Budget: under 6 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
CARRIED=${BIN:-bin/gpu}
LOG=${OUT:-bin/gpu-logs}
mkdir -p "$LOG"
export REQUIRE_GPU=1 GOTRACEBACK=crash
[ -d "$CARRIED" ] || { echo "gpu-check: $CARRIED missing: run 'make gpu-check' and carry bin/gpu"; exit 2; }
# `make gpu-check` gzips the binaries to fit the device tool's carry limit: unpack them here.
BIN=$(mktemp -d /tmp/dlf-gpu.XXXXXX)
trap 'rm -rf "$BIN"' EXIT
for f in "$CARRIED"/*; do
  case "$f" in
    *.gz) gunzip -c "$f" >"$BIN/$(basename "$f" .gz)" && chmod +x "$BIN/$(basename "$f" .gz)" ;;
    *) ln -s "$(realpath "$f")" "$BIN/$(basename "$f")" ;;
  esac
done
# MNIST as `make gpu-check` copied it (this machine has no Go module cache to fetch it from).
export DLF_TEST_MNIST=$BIN/data/mnist
# NCCL: $DLF_LIBNCCL, else the system's libnccl.so.2, else the one PyTorch's wheel ships.
if [ -z "${DLF_LIBNCCL:-}" ]; then
  for c in $(ldconfig -p 2>/dev/null | awk '/libnccl\.so\.2/ {print $NF}') /opt/torch/.venv/lib/python3*/site-packages/nvidia/nccl/lib/libnccl.so.2; do
    [ -f "$c" ] && { export DLF_LIBNCCL=$c; break; }
  done
fi
echo "NCCL: ${DLF_LIBNCCL:-none found}" 
start=$(date +%s)
rows=()

# run NAME LIMIT_S CMD...: runs a step under a time limit, logs it, records a summary row.
run() {
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s) rc
  echo "=== $name: $*" | tee -a "$LOG/summary.log"
  timeout --signal=KILL "$limit" "$@" >"$LOG/$name.log" 2>&1; rc=$?
  local dt=$(( $(date +%s) - t0 ))
  # Notes: top-level pass/fail/skip counts and the first failing tests, so the table stays one line a step.
  local pass fail skip first note
  pass=$(grep -c '^--- PASS' "$LOG/$name.log"); fail=$(grep -c '^--- FAIL' "$LOG/$name.log")
  skip=$(grep -c '^--- SKIP' "$LOG/$name.log")
  first=$(grep -Eo '^--- FAIL: [^ ]+' "$LOG/$name.log" | head -n 3 | sed 's/--- FAIL: //' | tr '\n' ' ')
  note="pass $pass fail $fail skip $skip${first:+; failing: $first}"
  [ "$rc" = 137 ] && note="timed out after ${limit}s; $note"
  grep -q 'ERROR SUMMARY' "$LOG/$name.log" && note="$(grep -Eo 'ERROR SUMMARY: [0-9]+ errors?' "$LOG/$name.log" | tail -n1); $note"
  rows+=("$(printf '%-28s %-5s %5ss  %s' "$name" "$([ $rc = 0 ] && echo ok || echo FAIL:$rc)" "$dt" "$note")")
  tail -n 5 "$LOG/$name.log"
}

find_tool() {
  for c in "$1" /usr/local/cuda/bin/$1 /usr/local/cuda-*/bin/$1 /opt/nvidia/*/bin/$1; do
    command -v "$c" >/dev/null 2>&1 && { command -v "$c"; return; }
    [ -x "$c" ] && { echo "$c"; return; }
  done
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "nvidia-smi failed"; } | tee "$LOG/device.txt"

# 1. Tests. Packages that talk to the GPU run whole; the rest run only their GPU-named tests, so
#    the CPU-only suites (already run by CI) don't spend device time.
for t in "$BIN"/*.test; do
  name=$(basename "$t" .test)
  case "$name" in
    cu|kernels|cuda|nccl) run "test-$name" 150 "$t" -test.count=1 -test.v -test.timeout 140s ;;
    *) run "test-$name" 120 "$t" -test.count=1 -test.v -test.timeout 110s -test.run 'GPU|CUDA|Cuda' ;;
  esac
done

# 2. Sanitizers over the kernel tests.
san=$(find_tool compute-sanitizer)
if [ -n "$san" ] && [ -x "$BIN/cuda.test" ]; then
  run memcheck 150 "$san" --tool memcheck --error-exitcode 9 --print-limit 20 "$BIN/cuda.test" -test.count=1 -test.run 'Conformance|Parity'
  run racecheck 120 "$san" --tool racecheck --error-exitcode 9 --print-limit 20 "$BIN/cuda.test" -test.count=1 -test.run 'Conformance/.*(Gemm|Conv|Reduce|ActNorm|Affine|Gaussian)'
  [ -x "$BIN/kernels.test" ] && run memcheck-kernels 60 "$san" --tool memcheck --error-exitcode 9 "$BIN/kernels.test" -test.count=1
else
  rows+=("$(printf '%-28s %-5s %5ss  %s' sanitizers skip 0 "compute-sanitizer not found or no cuda.test")")
fi

# 3. Benchmarks.
[ -x "$BIN/cuda.test" ] && run bench-cuda 90 "$BIN/cuda.test" -test.run NONE -test.bench . -test.benchtime 200ms
# The kernel workbench (issue 14): every GEMM/convolution variant, FP32 and TF32 × three tiles, on the
# presets' convolution shapes at their training batches: GFLOP/s, % of the FP32 and TF32 peaks, and
# a check against float64 (the table is in workbench.log).
[ -x "$BIN/workbench" ] && run workbench 120 "$BIN/workbench" -shapes model -reps 10 -check 256
if [ -x "$BIN/driver" ] && "$BIN/driver" bench --help >/dev/null 2>&1; then
  run driver-bench 90 "$BIN/driver" bench --device cuda --json-out "$LOG/bench.json"
  # The training step against the PyTorch twin at the same precision (TF32 convolutions: cuDNN's
  # default and dlf's; FP32: both switched off), mnist and cifar10 presets.
  for prec in tf32 fp32; do
    for p in mnist cifar10; do
      run "compare-$p-$prec" 90 "$BIN/driver" bench --device cuda --preset $p --precision $prec --compare --iters 10 --profile_iters 1 \
        --reference reference/dlf_torch.py --json-out "$LOG/compare-$p-$prec.json"
    done
  done
  # Step accounting (issue 13): launches, host-blocking calls, allocations per training step and the
  # step's wall time on the GPU, for the presets users train.
  run bench-host 120 "$BIN/driver" bench --host --presets mnist,cifar10,imagenet64 --steps 9 --print_every 4
  run bench-host-eager 120 "$BIN/driver" bench --host --cuda_graph=false --presets mnist,cifar10,imagenet64 --steps 9 --print_every 4
  # The ring all-reduce (issue 8): virtual ranks on one GPU unless the machine has several, over
  # peer/device-to-device copies and over pinned host memory.
  for n in 2 4; do
    run "allreduce-n$n" 60 "$BIN/driver" bench --allreduce --device cuda --num_gpus $n --iters 10 --warmup 2 --json-out "$LOG/allreduce-n$n.json"
  done
  run allreduce-n2-host 60 "$BIN/driver" bench --allreduce --device cuda --num_gpus 2 --transport host --max_bytes $((64 << 20)) --iters 5 --warmup 1
  # Data-parallel training against one replica, same per-replica batch: images/s of each.
  if [ -d "$BIN/data/mnist" ]; then
    # The mnist preset's training step, one CUDA graph replay per step against eager launches
    # (images/s in steps.csv; the losses must agree bit for bit).
    for g in true false; do
      run "train-graph-$g" 90 "$BIN/driver" train --device cuda --cuda_graph=$g --problem mnist --data_dir "$BIN/data/mnist" \
        --results_dir "$LOG/graph-$g" --train_subset 8192 --test_subset 256 --sample_per_epochs 0 --max_steps 40 --print_per_steps 10
    done
    for n in 1 2; do
      virt=(); [ $n -gt 1 ] && virt=(--virtual_gpus)
      run "train-ddp-n$n" 60 "$BIN/driver" train --device cuda --problem mnist --data_dir "$BIN/data/mnist" \
        --results_dir "$LOG/ddp-n$n" --num_gpus $n "${virt[@]}" --batch_size 64 --train_subset 8192 --test_subset 256 \
        --sample_per_epochs 0 --max_steps 60 --print_per_steps 20
    done
  fi
fi
# NCCL (issue 16): the all-reduce and a short training run in a world of one GPU, then two ranks
# started as torchrun would start them (on a one-GPU machine NCCL may refuse two ranks on one GPU:
# the log says so).
if [ -x "$BIN/driver" ] && [ -n "${DLF_LIBNCCL:-}" ]; then
  run nccl-allreduce-n1 60 "$BIN/driver" bench --allreduce --device cuda --transport nccl --iters 10 --warmup 2 --json-out "$LOG/nccl-allreduce-n1.json"
  if [ -d "$BIN/data/mnist" ]; then
    run train-nccl-n1 60 "$BIN/driver" train --device cuda --dist nccl --problem mnist --data_dir "$BIN/data/mnist" \
      --results_dir "$LOG/nccl-n1" --batch_size 64 --train_subset 8192 --test_subset 256 --sample_per_epochs 0 --max_steps 60 --print_per_steps 20
  fi
  nccl2() {
    local port=$((29500 + RANDOM % 1000)) r pids=() rc=0
    for r in 0 1; do
      RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port NCCL_DEBUG=WARN \
        "$BIN/driver" bench --allreduce --device cuda --transport nccl --iters 10 --warmup 2 &
      pids+=($!)
    done
    for r in "${pids[@]}"; do wait "$r" || rc=$?; done
    return $rc
  }
  export -f nccl2; export BIN
  run nccl-allreduce-n2 90 bash -c nccl2
else
  rows+=("$(printf '%-28s %-5s %5ss  %s' nccl skip 0 "no libnccl.so.2 found (set DLF_LIBNCCL)")")
fi
py=$(command -v /opt/torch/.venv/bin/python3 || command -v python3)
if [ -f reference/dlf_torch.py ] && [ -n "$py" ] && "$py" -c 'import torch' 2>/dev/null; then
  run torch-twin 90 "$py" reference/dlf_torch.py --bench --device cuda
fi

echo
echo "== gpu-check summary ($(cat "$LOG/device.txt" | head -n1); $(( $(date +%s) - start ))s total) =="
printf '%-28s %-5s %6s  %s\n' step status time notes
printf '%s\n' "${rows[@]}" | tee "$LOG/summary.txt"
grep -q FAIL "$LOG/summary.txt" && exit 1
exit 0
