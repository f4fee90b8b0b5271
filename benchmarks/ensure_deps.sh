# Sourced by benchmarks/gpu_check.sh and results/train_gpu.sh (not run on its own): makes the python3 on
# PATH able to import fusionjax from this checkout, keeping the JAX build that machine has (a CUDA one on a
# GPU machine). Installs only the packages fusionjax imports and that are missing (ml_collections, dm-pix,
# ...): from wheels in $FUSIONJAX_WHEELS (default: .whl/ in the repository) when present, for machines
# without network, else from PyPI. Expects to be sourced from the repository root.
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fusionjax_missing=$(python3 - <<'PY'
import importlib.util
need = {"ml_collections": "ml_collections", "dm_pix": "dm-pix", "optax": "optax", "flax": "flax",
        "orbax.checkpoint": "orbax-checkpoint", "PIL": "pillow", "scipy": "scipy", "absl": "absl-py",
        "jaxopt": "jaxopt", "tqdm": "tqdm"}
print(" ".join(pkg for mod, pkg in need.items() if importlib.util.find_spec(mod.split(".")[0]) is None))
PY
)
if [ -n "$fusionjax_missing" ]; then
  fusionjax_wheels="${FUSIONJAX_WHEELS:-.whl}"
  echo "Installing: $fusionjax_missing" >&2
  if ls "$fusionjax_wheels"/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/fusionjax_site "$fusionjax_wheels"/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/fusionjax_site"
  else
    python3 -m pip install -q $fusionjax_missing
  fi
fi
python3 -c "import jax; print('JAX', jax.__version__, jax.devices())"
