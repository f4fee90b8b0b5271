r"""EFRUFN's contraction terms compared on stage 1, and Anderson vs Broyden on the shipped weights.

Two tables (README, "Training"):

1. ``--runs``: stage-1 workdirs trained with the same seed, steps and data but different loss terms
   (``loss.fixed_point`` γ, ``loss.jacobian`` γ_J). For each: the training metrics of its last
   logged steps (loss, 1 − SSIM, relative residual, wall time per step) and, on synthetic multi-focus
   pairs made from images training never sees (``DATA/more_natural``; stage 1 reads only
   ``clean_natural``), 1 − SSIM, the solver's relative residual, the Jacobian penalty
   ``||df/dz||²_F / dim z`` and the power-iteration spectral radius of ``df/dz`` at the solution z*
   of the final parameters. The runs behind the README's table::

     for args in "a_fixed_point 1 0" "b_jacobian 0 1" "c_both 1 1"; do set -- $args
       nice -n 10 python train.py --config=configs/mfif.py:cpu --config.num_steps=200 \
         --config.data.data_dir=/work/shared/data --workdir=/tmp/jac_runs/$1 \
         --config.loss.fixed_point=$2 --config.loss.jacobian=$3 --config.log_every=10
     done
     python benchmarks/jacobian_comparison.py --data_dir=/work/shared/data \
         --runs a=/tmp/jac_runs/a_fixed_point b=/tmp/jac_runs/b_jacobian c=/tmp/jac_runs/c_both

2. ``--solvers``: the shipped stages (``fusionjax/weights/efrufn_cpu``) solved on a crop of their
   shipped sample pair with Anderson, Broyden and plain iteration at equal iteration counts (tol 0,
   so every solve runs its whole budget): the best relative residual reached after k iterations (what
   ``keep_best`` returns) and the time per iteration. ``python benchmarks/jacobian_comparison.py
   --solvers``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fusionjax import checkpoints, data, deq, losses, models
from fusionjax.color import rgb_to_ycrcb
from fusionjax.models import ops, unfolding
from fusionjax.train import logging as train_logging

SHIPPED = Path(__file__).resolve().parents[1] / "fusionjax" / "weights" / "efrufn_cpu"
#: The shipped sample pair of each stage's task (fusionjax.data.sample_pair names).
STAGE_SAMPLES = {"mfif": "lytro", "meif": "mefb", "ivf": "tno"}


def _luma(image: np.ndarray) -> np.ndarray:
  if image.shape[-1] == 1:
    return image.astype(np.float32)
  return np.clip(rgb_to_ycrcb(image), 0.0, 1.0)[..., :1].astype(np.float32)


def validation_pairs(data_dir: str, count: int, patch: int, seed: int) -> list[dict]:
  """Synthetic multi-focus pairs (as in stage 1's pipeline) from held-back images.

  ``count`` images spread over ``DATA/more_natural`` (sorted), one centred ``patch`` crop each,
  blurred with the stage-1 defaults; returns dicts of (1, patch, patch, 1) ``y1``, ``y2``,
  ``reference``.
  """
  from fusionjax.imageio import load_image  # pylint: disable=import-outside-toplevel

  images = data.list_images(Path(data_dir) / "more_natural", validate=False)
  chosen = images[:: max(len(images) // count, 1)][:count]
  options = data.default_data_config("mfif").multi_focus
  rng = np.random.default_rng(seed)
  pairs = []
  for path in chosen:
    image = load_image(path, fold_grey=False)
    if image.ndim == 2:
      image = image[..., None]
    top, left = (image.shape[0] - patch) // 2, (image.shape[1] - patch) // 2
    crop = image[top : top + patch, left : left + patch]
    near, far, reference, _ = data.multi_focus_pair(
      crop,
      rng,
      sigma_range=tuple(options.sigma_range),
      mask_fraction_range=tuple(options.mask_fraction_range),
      mask_cells_range=tuple(options.mask_cells_range),
      gamma=float(options.gamma),
    )
    pairs.append(
      {k: _luma(v)[None] for k, v in (("y1", near), ("y2", far), ("reference", reference))}
    )
  return pairs


class _DiagnosedEFRUFN(unfolding.EFRUFN):
  """EFRUFN whose call also returns its map's Jacobian estimates at the solution z*.

  The map is the one of ``EFRUFN.__call__`` (state (F - F2, M), the unit's parameters and F1, F2 as
  its args), on the same parameters; the caller checks that the fused image equals EFRUFN's.
  """

  num_power_iter: int = 50  # power iterations of the spectral radius

  @nn.compact
  def __call__(self, y1, y2, key):  # pylint: disable=arguments-differ
    return _solution_diagnostics(self, y1, y2, key, self.num_power_iter)


def _solution_diagnostics(module: unfolding.EFRUFN, y1, y2, key, num_power_iter: int):
  """The forward pass of ``module`` plus ``jacobian_penalty`` and ``spectral_radius`` at z*."""
  height, width = y1.shape[1], y1.shape[2]
  f1, f2 = module._encode(y1, y2)  # pylint: disable=protected-access
  use_mask = module.variant != "no_mask"
  free_unit = unfolding.UFUnit(**module.unit_kwargs(use_mask), parent=None)
  params = module.variables["params"]["uf"]

  def step(z, args):
    unit_params, f1_, f2_ = args
    f_new, m_new = free_unit.apply(
      {"params": unit_params}, f1_, f2_ + z[0], z[1] if use_mask else None, f2_
    )
    d_new = (f_new - f2_).astype(jnp.float32)
    return (d_new, m_new.astype(jnp.float32)) if use_mask else (d_new,)

  z0 = (jnp.zeros_like(f2),) + ((jnp.zeros(f2.shape[:3] + (1,), jnp.float32),) if use_mask else ())
  solver, backward = module.solver_and_backward()
  solution = deq.fixed_point(
    step, z0, (params, f1, f2), solver=solver, backward=backward, batch_axis=0
  )
  args = (params, f1, f2)
  penalty_key, radius_key = jax.random.split(key)
  penalty = deq.jacobian_penalty(step, solution.value, args, penalty_key, num_samples=4)
  radius = deq.spectral_radius(step, solution.value, args, radius_key, num_iter=num_power_iter)
  fused = module._decode(f2 + solution.value[0], height, width)  # pylint: disable=protected-access
  return fused, solution.stats, penalty, radius


_COMPILED = {}


def _compiled(model, num_power_iter: int):
  """Jitted diagnostics and forward of ``model``, shared by runs of the same architecture."""
  key = (model, num_power_iter)
  if key not in _COMPILED:
    fields = {
      f.name: getattr(model, f.name)
      for f in dataclasses.fields(model)
      if f.init and f.name not in ("parent", "name")
    }
    diagnosed = _DiagnosedEFRUFN(num_power_iter=num_power_iter, **fields)
    _COMPILED[key] = (jax.jit(diagnosed.apply), jax.jit(model.apply))
  return _COMPILED[key]


def evaluate_run(workdir: str, pairs: list[dict], seed: int, num_power_iter: int) -> dict:
  """Validation numbers of a workdir's latest checkpoint on ``pairs`` (means over the pairs)."""
  loaded = checkpoints.load_fusion_model(workdir, expected_task="mfif")
  variables = {"params": loaded.params}
  diagnose, fuse = _compiled(loaded.model, num_power_iter)
  rows = []
  for index, pair in enumerate(pairs):
    # spectral_radius uses forward mode, which the CPU's custom-VJP depthwise convolution lacks.
    with ops.implementations(depthwise_conv2d="xla"):
      fused, stats, penalty, radius = diagnose(
        variables, pair["y1"], pair["y2"], jax.random.fold_in(jax.random.key(seed), index)
      )
    if index == 0:  # the replicated map is EFRUFN's own
      np.testing.assert_allclose(fused, fuse(variables, pair["y1"], pair["y2"]), atol=1e-5)
    rows.append(
      {
        "ssim_loss": float(losses.ssim_loss(fused, pair["reference"])),
        "rel_residual": float(np.mean(stats.rel_residual)),
        "iterations": float(np.mean(stats.num_steps)),
        "jacobian": float(penalty),
        "radius": float(radius),
      }
    )
  summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
  summary["radius_max"] = float(np.max([r["radius"] for r in rows]))
  summary["step"] = loaded.step
  return summary


def training_summary(workdir: str, last: int) -> dict:
  """Means of the last ``last`` logged records of ``metrics.jsonl`` (loss terms, residual, s/step)."""
  records = [r for r in train_logging.read_metrics(workdir) if "loss" in r][-last:]
  keys = ("loss", "ssim_loss", "fixed_point", "jacobian", "deq_rel_residual", "steps_per_sec")
  summary = {
    k: float(np.mean([r[k] for r in records])) for k in keys if all(k in r for r in records)
  }
  if "steps_per_sec" in summary:
    summary["s_per_step"] = float(
      np.mean([1.0 / r["steps_per_sec"] for r in records if r["steps_per_sec"]])
    )
  summary["last_step"] = records[-1]["step"] if records else None
  return summary


def _fmt(value, spec=".3g"):
  return "—" if value is None else format(value, spec)


def _wait_for_step(workdir: str, step: int | None, poll_s: float = 20.0) -> None:
  """Blocks until ``workdir`` has a checkpoint of at least ``step`` (a run still training)."""
  while step is not None:
    try:
      if int(checkpoints.read_metadata(workdir)["step"]) >= step:
        return
    except (FileNotFoundError, ValueError):
      pass
    time.sleep(poll_s)


def comparison_table(
  runs: list[tuple[str, str]],
  data_dir: str,
  count: int,
  patch: int,
  seed: int,
  last: int,
  num_power_iter: int,
  wait_for_step: int | None = None,
) -> str:
  pairs = validation_pairs(data_dir, count, patch, seed)
  lines = [
    f"Training: means of the last {last} logged steps. Validation: {len(pairs)} synthetic multi-focus "
    f"pairs of {patch} px from DATA/more_natural (never trained on), final parameters.",
    "",
    "| run | step | train loss | train 1 − SSIM | train γ term | train γ_J term | train rel. residual "
    "| s/step | val 1 − SSIM | val rel. residual | val ‖∂f/∂z‖²_F/dim | val spectral radius (mean / max) |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  print("\n".join(lines), flush=True)  # each row as soon as its run is evaluated
  for name, workdir in runs:
    _wait_for_step(workdir, wait_for_step)
    train = training_summary(workdir, last)
    val = evaluate_run(workdir, pairs, seed, num_power_iter)
    lines.append(
      f"| {name} | {val['step']} | {_fmt(train.get('loss'), '.4f')} | {_fmt(train.get('ssim_loss'), '.4f')} "
      f"| {_fmt(train.get('fixed_point'))} | {_fmt(train.get('jacobian'))} "
      f"| {_fmt(train.get('deq_rel_residual'), '.2e')} | {_fmt(train.get('s_per_step'), '.2f')} "
      f"| {val['ssim_loss']:.4f} | {val['rel_residual']:.2e} | {val['jacobian']:.3g} "
      f"| {val['radius']:.3f} / {val['radius_max']:.3f} |"
    )
    print(lines[-1], flush=True)
  return "\n".join(lines)


def _centre_crop(array: np.ndarray, size: int) -> np.ndarray:
  top, left = max((array.shape[0] - size) // 2, 0), max((array.shape[1] - size) // 2, 0)
  return array[top : top + size, left : left + size]


def solver_table(iterations: tuple[int, ...], crop: int, repeats: int) -> str:
  """Best relative residual after k iterations and time per iteration, per shipped stage and solver."""
  budget = max(iterations)
  solvers = {
    "Anderson (m=5)": dict(solver="anderson", anderson_history=5),
    "Broyden (memory=5)": dict(solver="broyden", broyden_memory=5),
    f"Broyden (memory={budget})": dict(solver="broyden", broyden_memory=budget),
    "plain iteration": dict(solver="fixed_point"),
  }
  header = " | ".join(f"rel. residual after {k}" for k in iterations)
  lines = [
    f"Shipped stages on a {crop} px centre crop of their sample pair, tol 0 ({budget} iterations), "
    f"best residual so far (keep_best); time per iteration: median of {repeats} solves / {budget}.",
    "",
    f"| stage | solver | {header} | ms / iteration |",
    "|---|---|" + "---|" * len(iterations) + "---|",
  ]
  compiled = {}
  for stage, sample in STAGE_SAMPLES.items():
    loaded = checkpoints.load_fusion_model(SHIPPED / stage, expected_task=stage)
    sources = data.load_pair(data.sample_pair(sample)).sources
    y1, y2 = (_luma(_centre_crop(s, crop))[None] for s in sources[:2])
    for name, options in solvers.items():
      config = dict(loaded.metadata["model"], max_iter=budget, tol=0.0, **options)
      if name not in compiled:  # the three stages share one architecture: one compile per solver
        model = models.create_model(config)
        compiled[name] = (
          model,
          jax.jit(
            lambda v, a, b, model=model: model.apply(v, a, b, mutable=["intermediates"])[1][
              "intermediates"
            ]["solver_stats"][0]
          ),
        )
      model, solve = compiled[name]
      if models.create_model(config) != model:
        raise ValueError(f"stage {stage}'s architecture differs from the first stage's.")
      variables = {"params": loaded.params}
      stats = jax.block_until_ready(solve(variables, y1, y2))
      times = []
      for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(solve(variables, y1, y2))
        times.append(time.perf_counter() - start)
      trace = np.asarray(stats.trace)[0]  # (budget,) one image
      best = np.minimum.accumulate(np.where(np.isfinite(trace), trace, np.inf))
      cells = " | ".join(f"{best[k - 1]:.2e}" for k in iterations)
      lines.append(f"| {stage} | {name} | {cells} | {1e3 * np.median(times) / budget:.1f} |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--runs", nargs="*", default=(), metavar="NAME=WORKDIR", help="stage-1 workdirs to compare"
  )
  parser.add_argument("--data_dir", default=None, help="data root with more_natural/ (for --runs)")
  parser.add_argument("--num_pairs", type=int, default=8)
  parser.add_argument(
    "--patch", type=int, default=64, help="validation crop (the :cpu training crop)"
  )
  parser.add_argument("--last", type=int, default=5, help="logged training records averaged")
  parser.add_argument(
    "--power_iter", type=int, default=50, help="power iterations of the spectral radius"
  )
  parser.add_argument(
    "--solvers", action="store_true", help="Anderson vs Broyden on the shipped weights"
  )
  parser.add_argument("--iterations", type=int, nargs="+", default=(3, 5, 10, 20))
  parser.add_argument("--crop", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--wait_for_step",
    type=int,
    default=None,
    help="wait for each run's checkpoint of this step (runs still training)",
  )
  flags = parser.parse_args()
  if not flags.runs and not flags.solvers:
    parser.error("nothing to do: pass --runs NAME=WORKDIR ... and/or --solvers")
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}\n")
  if flags.runs:
    if flags.data_dir is None:
      parser.error("--runs needs --data_dir (the root holding more_natural/)")
    runs = [tuple(item.split("=", 1)) for item in flags.runs]
    comparison_table(
      runs,
      flags.data_dir,
      flags.num_pairs,
      flags.patch,
      flags.seed,
      flags.last,
      flags.power_iter,
      flags.wait_for_step,
    )
    print(flush=True)
  if flags.solvers:
    print(solver_table(tuple(flags.iterations), flags.crop, flags.repeats))


if __name__ == "__main__":
  main()
