#!/usr/bin/env bash
# Accelerator check (see benchmarks/gpu_check.py): writes OUT_DIR/gpu_check.md (default: $OUT, else runs/gpu_check).
#
#   bash benchmarks/gpu_check.sh [--cpu-smoke] [OUT_DIR]
#
# Uses the python3 on PATH with the JAX build it has, installing what is missing
# (benchmarks/ensure_deps.sh). Sized to end within about eight minutes on one GPU (--budget_s in gpu_check.py); --cpu-smoke runs the same code at tiny sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=()
out=""
for arg in "$@"; do
  case "$arg" in
    --cpu-smoke) smoke=(--cpu_smoke) ;;
    *) out="$arg" ;;
  esac
done
out="${out:-${OUT:-runs/gpu_check}}"
mkdir -p "$out"
if [ ${#smoke[@]} -gt 0 ]; then export JAX_PLATFORMS=cpu; fi
. benchmarks/ensure_deps.sh
python3 benchmarks/gpu_check.py --out "$out/gpu_check.md" "${smoke[@]}" 2>&1 | tee "$out/gpu_check.log"
