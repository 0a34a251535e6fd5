#!/usr/bin/env bash
# Assembles every PTX file given for sm_80 and sm_90 with ptxas -v and prints one row per kernel:
# registers, stack frame and spill bytes for each architecture. Exits non-zero when ptxas rejects a
# file, or when a kernel spills on sm_80 and docs/perf.md does not name it (DESIGN: no spills unless
# the perf notes explain why).
set -uo pipefail
PTXAS=${PTXAS:-ptxas}
command -v "$PTXAS" >/dev/null || { echo "ptxas-report: ptxas not found (install nvidia-cuda-toolkit)"; exit 1; }
[ "$#" -gt 0 ] || { echo "ptxas-report: no PTX files given"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
status=0
for arch in sm_80 sm_90; do
  for f in "$@"; do
    if ! "$PTXAS" -arch=$arch -v "$f" -o /dev/null >"$tmp/$arch.$(basename "$f").log" 2>&1; then
      echo "ptxas-report: ptxas -arch=$arch rejected $f:"; cat "$tmp/$arch.$(basename "$f").log"; status=1
    fi
  done
  # ptxas prints, per function: "Compiling entry function 'NAME' for 'sm_80'", then
  # "Function properties for NAME" / "N bytes stack frame, N bytes spill stores, N bytes spill loads",
  # then "Used N registers, ...".
  cat "$tmp"/$arch.*.log 2>/dev/null | awk -v arch=$arch '
    function num(re,   m) { if (match($0, re)) { m = substr($0, RSTART, RLENGTH); gsub(/[^0-9]/, "", m); return m + 0 } return 0 }
    /Compiling entry function/ { match($0, /function .[^ ]+. for/); k = substr($0, RSTART + 10, RLENGTH - 15) }
    /bytes stack frame/ { st = num("[0-9]+ bytes stack"); ss = num("[0-9]+ bytes spill stores"); sl = num("[0-9]+ bytes spill loads") }
    /Used [0-9]+ registers/ { if (k != "") print k, arch, num("Used [0-9]+ registers"), st, ss, sl; k = ""; st = ss = sl = 0 }
  ' >>"$tmp/rows"
done
printf '%-40s %9s %9s %9s %9s %9s %9s\n' kernel sm80_regs sm80_stack sm80_spill sm90_regs sm90_stack sm90_spill
sort "$tmp/rows" | awk '
  { key=$1; if ($2=="sm_80") { r80[key]=$3; st80[key]=$4; sp80[key]=$5+$6 } else { r90[key]=$3; st90[key]=$4; sp90[key]=$5+$6 }; keys[key]=1 }
  END { for (k in keys) printf "%-40s %9s %9s %9s %9s %9s %9s\n", k, r80[k], st80[k], sp80[k], r90[k], st90[k], sp90[k] }
' | sort | tee "$tmp/table"
while read -r k r80 st80 sp80 rest; do
  if [ "${sp80:-0}" != 0 ] && ! grep -q "$k" docs/perf.md 2>/dev/null; then
    echo "ptxas-report: $k spills $sp80 bytes on sm_80 and docs/perf.md does not explain why"; status=1
  fi
done <"$tmp/table"
exit $status
