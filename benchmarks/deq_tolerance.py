r"""How many solver iterations the shipped EFRUFN stages take, and what stopping early costs.

For each shipped stage and the sample pairs of its task (``fusionjax/data/samples``; the MEIF stage
also serves the medical pairs), the fused luma is computed with the stage's own solver budget and
with larger budgets at several tolerances, and compared with a tightly converged reference solve
(``--ref_iter`` iterations, tolerance 1e-6). Printed per pair: iterations taken, the relative
residual reached, and the largest / mean absolute difference from the reference in grey levels
(0-255). Images are cropped to ``--crop`` pixels per side to keep the run short.

Usage::

  python benchmarks/deq_tolerance.py [--crop 256] [--tols 1e-2,3e-3,1e-3,1e-4] [--max_iter 30]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from fusionjax import color, imageio, models, runtime, stages, weights  # noqa: E402
from fusionjax.data import sample_pairs  # noqa: E402
from fusionjax.models import stats as solver_stats  # noqa: E402

PAIRS = {
  "ivf": ("tno",),
  "mfif": ("lytro",),
  "meif": ("mefb", "harvard_mri_ct", "harvard_mri_spect"),
}


def _solve(model_config: dict, params, y1, y2, max_iter: int, tol: float):
  model = models.create_model(dict(model_config, max_iter=max_iter, tol=tol))

  def run(p, a, b):
    fused, aux = model.apply({"params": p}, a, b, mutable=["intermediates"])
    stats = solver_stats.find_solver_stats(aux["intermediates"])
    return fused, stats.num_steps, stats.rel_residual

  fused, steps, residual = jax.jit(run)(params, y1, y2)
  return (
    np.asarray(fused[0, ..., 0]),
    int(np.asarray(steps).max()),
    float(np.asarray(residual).max()),
  )


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--crop", type=int, default=256)
  parser.add_argument("--tols", default="1e-2,3e-3,1e-3,1e-4")
  parser.add_argument("--max_iter", type=int, default=30)
  parser.add_argument("--ref_iter", type=int, default=60)
  args = parser.parse_args(argv)
  runtime.configure()
  tols = [float(t) for t in args.tols.split(",")]
  print(
    "| stage | pair | max_iter | tol | iterations | rel. residual | max diff (grey) | mean diff (grey) |"
  )
  print("|---|---|---:|---:|---:|---:|---:|---:|")
  for stage, names in PAIRS.items():
    fusion_model = stages.load_fusion_model(weights.shipped_checkpoint(stage))
    config = dict(fusion_model.metadata["model"])
    for name in names:
      lumas = [
        color.split_luma_chroma(imageio.load_image(p))[0][: args.crop, : args.crop]
        for p in sample_pairs.sample_pair(name).sources
      ]
      y1, y2 = (np.asarray(y)[None] for y in lumas)
      reference, ref_steps, ref_res = _solve(
        config, fusion_model.params, y1, y2, args.ref_iter, 1e-6
      )
      budgets = [(int(config["max_iter"]), float(config["tol"]), "shipped")] + [
        (args.max_iter, t, "") for t in tols
      ]
      for max_iter, tol, label in budgets:
        fused, steps, res = _solve(config, fusion_model.params, y1, y2, max_iter, tol)
        diff = 255.0 * np.abs(fused - reference)
        print(
          f"| {stage} | {name} | {max_iter}{' (' + label + ')' if label else ''} | {tol:g} | {steps} | "
          f"{res:.2e} | {diff.max():.2f} | {diff.mean():.3f} |",
          flush=True,
        )
      print(
        f"| {stage} | {name} | {args.ref_iter} (reference) | 1e-06 | {ref_steps} | {ref_res:.2e} | 0 | 0 |",
        flush=True,
      )


if __name__ == "__main__":
  main()
