#!/usr/bin/env bash
# Accelerator check (see benchmarks/gpu_check.py): writes OUT_DIR/gpu_check.md (default: $OUT, else runs/gpu_check).
#
#   bash benchmarks/gpu_check.sh [--cpu-smoke] [OUT_DIR]
#
# Uses the python3 on PATH with the JAX build it has (a CUDA one on a GPU machine). Installs only what
# fusionjax imports and is missing (ml_collections, dm-pix, ...): from wheels in $FUSIONJAX_WHEELS (default:
# .whl/ in the repository) when present, for machines without network, else from PyPI. Sized to end within
# about eight minutes on one GPU (--budget_s in gpu_check.py); --cpu-smoke runs the same code at tiny sizes.
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
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ ${#smoke[@]} -gt 0 ]; then export JAX_PLATFORMS=cpu; fi

missing=$(python3 - <<'PY'
import importlib.util
need = {"ml_collections": "ml_collections", "dm_pix": "dm-pix", "optax": "optax", "flax": "flax",
        "orbax.checkpoint": "orbax-checkpoint", "PIL": "pillow", "scipy": "scipy", "absl": "absl-py"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod.split(".")[0]) is None))
PY
)
if [ -n "$missing" ]; then
  wheels="${FUSIONJAX_WHEELS:-.whl}"
  echo "Installing: $missing" >&2
  if ls "$wheels"/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/fusionjax_site "$wheels"/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/fusionjax_site"
  else
    python3 -m pip install -q $missing
  fi
fi
python3 -c "import jax; print('JAX', jax.__version__, jax.devices())"
python3 benchmarks/gpu_check.py --out "$out/gpu_check.md" "${smoke[@]}" 2>&1 | tee "$out/gpu_check.log"
