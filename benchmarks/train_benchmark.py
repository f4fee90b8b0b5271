r"""Train-step speed of each stage at the full configs' patch and batch size.

For each stage (MFIF, MEIF with teacher and ColorNet, IVF with teacher) this builds the same
device-parallel step that ``train.py`` runs, from ``configs/<stage>.py`` (full network, 8 crops of
128 px unless overridden), on random inputs of the training shapes (data loading is not timed), and
reports:

- ``compile_s``: lowering + XLA compilation of the step;
- ``steps_per_sec``: over ``--steps`` steps after one warm-up step (compilation excluded);
- ``temp_mib``: XLA's temporary buffer size of the compiled step (training memory besides params).

Usage (from the repository root; a few minutes on a 2-core CPU)::

  python benchmarks/train_benchmark.py --steps 2 [--stages mfif,meif,ivf] [--model efrufn]
      [--batch_size 8 --patch_size 128] [--config_arg cpu] [--out results.json]
      [--parallel pmap,jit] [--num_devices N]

``--parallel`` names the data-parallel implementations to time (``--config.parallel``; both by
default, one line each, compiled first and then timed in turns) over ``--num_devices`` devices
(default: all); ``--repeats`` times ``--steps`` steps that many times and keeps the fastest. The comparison of
``docs/multihost.md`` forces 2 CPU devices (XLA reads the flag at start)::

  XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_PLATFORMS=cpu \
      python benchmarks/train_benchmark.py --config_arg smoke --stages mfif --steps 20 --repeats 5
  XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_PLATFORMS=cpu \
      python benchmarks/train_benchmark.py --config_arg cpu --stages mfif --steps 5 --repeats 3

``--loss_scales --data_dir DATA`` instead prints the size of each unweighted loss term for the plain
average of the two sources on real training crops (64 crops of 128 px per stage, or of
``--patch_size``), the yardstick
behind the loss weights λ, β1, β2 in ``configs/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))  # `configs` lives at the repository root.

import jax  # noqa: E402
import numpy as np  # noqa: E402

from fusionjax import models  # noqa: E402
from fusionjax.evaluation import cost  # noqa: E402
from fusionjax.train import loop, parallel, state as train_state, steps as train_steps  # noqa: E402


def _config(stage: str, config_arg: str | None = None):
  module = __import__(f"configs.{stage}", fromlist=["get_config"])
  return module.get_config(config_arg)


def _batch(task: str, batch_size: int, patch: int, rng: np.random.Generator) -> dict:
  shape = (batch_size, patch, patch, 1)
  batch = {"y1": rng.random(shape, np.float32), "y2": rng.random(shape, np.float32)}
  if task in ("mfif", "meif"):
    batch["reference"] = rng.random(shape, np.float32)
  if task == "meif":
    for key in ("crcb1", "crcb2", "reference_crcb"):
      batch[key] = rng.random(shape[:3] + (2,), np.float32)
  return batch


class _CompiledStage:
  """One stage's train step, compiled for one data-parallel implementation, ready to be timed."""

  def __init__(
    self,
    stage: str,
    *,
    batch_size: int | None,
    patch_size: int | None,
    model_name: str | None,
    config_arg: str | None,
    compiler_options: dict | None,
    mode: str,
    num_devices: int | None,
  ):
    config = _config(stage, config_arg)
    if model_name:
      config.model.name = model_name
    batch_size = batch_size or int(config.data.batch_size)
    patch = patch_size or int(config.data.patch_size)
    model = models.create_model(config.model)
    colornet = (
      models.ColorNet(**config.colornet.to_dict()) if config.get("train_colornet") else None
    )
    optimizer = train_state.make_optimizer(config.optimizer, int(config.num_steps))
    colornet_optimizer = (
      train_state.make_optimizer(config.optimizer, int(config.num_steps)) if colornet else None
    )
    rng = jax.random.PRNGKey(0)
    host_state = jax.device_get(
      jax.jit(
        lambda r: train_state.init_train_state(
          r,
          model=model,
          optimizer=optimizer,
          patch_size=patch,
          colornet=colornet,
          colornet_optimizer=colornet_optimizer,
        )
      )(rng)
    )
    teacher = None
    if stage != "mfif":
      # The teacher has the same architecture here; its weights do not change the cost.
      teacher = models.create_model(config.model)
      teacher_params = host_state["params"]
    weights = train_steps.LossWeights(
      gradient_transfer=float(config.loss.lambda_gt) if teacher else 0.0,
      texture=float(config.loss.beta1),
      structure=float(config.loss.beta2),
      fixed_point=loop.fixed_point_weight(config),
    )
    step_fn = train_steps.make_train_step(
      stage,
      model,
      optimizer,
      weights,
      teacher_model=teacher,
      colornet=colornet,
      colornet_optimizer=colornet_optimizer,
    )
    self.dp = parallel.make_data_parallel(mode, num_devices)
    self.state = self.dp.replicate(host_state)
    self.frozen = (self.dp.replicate(teacher_params),) if teacher else ()
    data_rng = np.random.default_rng(0)
    self.batches = [self.dp.shard(_batch(stage, batch_size, patch, data_rng)) for _ in range(2)]

    start = time.perf_counter()
    self.compiled = (
      self.dp.compile_step(step_fn)
      .lower(self.state, self.batches[0], *self.frozen)
      .compile(compiler_options=compiler_options or {})
    )
    compile_s = time.perf_counter() - start
    memory = self.compiled.memory_analysis()
    self.state, self.metrics = self.compiled(self.state, self.batches[0], *self.frozen)  # warm-up
    jax.block_until_ready(self.metrics)
    self.info = {
      "stage": stage,
      "model": config.model.name,
      "parallel": self.dp.mode,
      "devices": self.dp.num_devices,
      "batch_size": batch_size,
      "patch_size": patch,
      "params": cost.count_parameters(host_state["params"]),
      "compile_s": round(compile_s, 2),
      "temp_mib": round(memory.temp_size_in_bytes / 2**20, 1) if memory is not None else None,
    }

  def time(self, steps: int) -> float:
    """Seconds for ``steps`` steps (dispatch to the last result on the host)."""
    start = time.perf_counter()
    for i in range(steps):
      self.state, self.metrics = self.compiled(self.state, self.batches[i % 2], *self.frozen)
    jax.block_until_ready((self.state, self.metrics))
    return time.perf_counter() - start

  def result(self, steps: int, times: list[float]) -> dict:
    elapsed = min(times)  # Other programs sharing the CPU only ever slow a repeat down.
    metrics = self.dp.unreplicate(self.metrics)
    return {
      **self.info,
      "steps_per_sec": round(steps / elapsed, 4),
      "sec_per_step": round(elapsed / steps, 4),
      "timed_steps": steps,
      "sec_per_step_repeats": [round(t / steps, 4) for t in times],
      "loss": float(metrics["loss"]),
      "grad_norm": float(metrics["grad_norm"]),
      "device": jax.devices()[0].device_kind,
    }


def benchmark_stage(
  stage: str,
  *,
  steps: int,
  batch_size: int | None,
  patch_size: int | None,
  model_name: str | None,
  config_arg: str | None = None,
  compiler_options: dict | None = None,
  mode: str = "pmap",
  num_devices: int | None = 1,
  repeats: int = 1,
) -> dict:
  """Compiles and times one stage's train step; returns the measurements.

  ``compiler_options`` go to this step's XLA compilation (e.g. ``fusionjax.runtime.COMPILER_OPTIONS``);
  ``mode`` is the data-parallel implementation (``--config.parallel``) over ``num_devices`` devices
  (None: all). ``repeats`` times ``steps`` steps that many times and reports the fastest.
  """
  return compare_modes(
    stage,
    (mode,),
    steps=steps,
    batch_size=batch_size,
    patch_size=patch_size,
    model_name=model_name,
    config_arg=config_arg,
    compiler_options=compiler_options,
    num_devices=num_devices,
    repeats=repeats,
  )[0]


def compare_modes(
  stage: str, modes, *, steps: int, repeats: int, num_devices: int | None, **options
) -> list[dict]:
  """Times one stage's step under each data-parallel implementation of ``modes``.

  All are compiled first, then timed in turns (repeat 1 of each, repeat 2 of each, ...), so that a
  change in the load of a shared machine falls on every implementation alike.
  """
  compiled = [
    _CompiledStage(stage, mode=mode, num_devices=num_devices, **options) for mode in modes
  ]
  times = [[] for _ in compiled]
  for _ in range(repeats):
    for timed, c in zip(times, compiled):
      timed.append(c.time(steps))
  return [c.result(steps, t) for c, t in zip(compiled, times)]


def loss_scales(data_dir: str, crops: int = 64, patch: int = 128) -> dict:
  """Unweighted loss terms of the average fusion ``(y1 + y2) / 2`` on training crops of each stage.

  Args:
    data_dir: the data root (as ``--config.data.data_dir``).
    crops: crops per stage (batches of 16).
    patch: crop side.

  Returns:
    ``{stage: {term: mean value}}``; ``gradient_transfer`` is the deficit of the average's Sobel
    gradient against the reference (MFIF, MEIF) or the visible image (IVF): the size L_gt takes
    when a fusion lacks edges that its teacher has.
  """
  from fusionjax import data, losses

  result = {}
  for task in ("mfif", "meif", "ivf"):
    config = data.default_data_config(task)
    config.data_dir, config.batch_size, config.patch_size = data_dir, 16, patch
    source = data.make_training_source(task, config)
    values = []
    for step in range(max(crops // 16, 1)):
      batch = source.batch(step)
      y1, y2 = batch["y1"], batch["y2"]
      average = 0.5 * (y1 + y2)
      if task == "ivf":
        _, terms = losses.ivf_reconstruction_loss(average, y1, y2, beta1=1.0, beta2=1.0)
        terms["gradient_transfer"] = losses.gradient_transfer_loss(average, y1)
      else:
        terms = {
          "ssim_loss": losses.ssim_loss(average, batch["reference"]),
          "gradient_transfer": losses.gradient_transfer_loss(average, batch["reference"]),
        }
      values.append({k: float(v) for k, v in terms.items()})
    source.close()
    result[task] = {k: round(float(np.mean([v[k] for v in values])), 4) for k in values[0]}
  return result


def main(argv=None) -> None:
  """Parses the command line and prints one JSON line per stage (or the loss scales)."""
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--stages", default="mfif,meif,ivf")
  parser.add_argument(
    "--steps", type=int, default=2, help="timed steps per stage after one warm-up step"
  )
  parser.add_argument("--batch_size", type=int, default=None, help="default: the config's")
  parser.add_argument("--patch_size", type=int, default=None, help="default: the config's")
  parser.add_argument("--model", default=None, help="efrufn or frufn (default: the config's)")
  parser.add_argument(
    "--config_arg", default=None, help="config variant, e.g. 'cpu' for configs/<stage>.py:cpu"
  )
  parser.add_argument("--out", default=None, help="also write the results as JSON here")
  parser.add_argument(
    "--parallel",
    default=",".join(parallel.MODES),
    help=f"data-parallel implementations to time, comma-separated ({', '.join(parallel.MODES)})",
  )
  parser.add_argument(
    "--num_devices", type=int, default=None, help="devices to run on (default: all)"
  )
  parser.add_argument(
    "--repeats", type=int, default=1, help="time --steps steps this many times, keep the fastest"
  )
  parser.add_argument(
    "--loss_scales", action="store_true", help="print loss-term sizes instead (needs --data_dir)"
  )
  parser.add_argument("--data_dir", default=None, help="data root for --loss_scales")
  args = parser.parse_args(argv)
  if args.loss_scales:
    if not args.data_dir:
      parser.error(
        "--loss_scales needs --data_dir=DATA (the folder holding clean_natural/, sice16/, roadscene/)."
      )
    print(json.dumps(loss_scales(args.data_dir, patch=args.patch_size or 128)))
    return
  modes = [m.strip() for m in args.parallel.split(",")]
  for mode in modes:
    if mode not in parallel.MODES:
      parser.error(f"--parallel={mode!r}; use one or more of {', '.join(parallel.MODES)}.")
  results = []
  for stage in args.stages.split(","):
    for result in compare_modes(
      stage.strip(),
      modes,
      steps=args.steps,
      repeats=args.repeats,
      num_devices=args.num_devices,
      batch_size=args.batch_size,
      patch_size=args.patch_size,
      model_name=args.model,
      config_arg=args.config_arg,
      compiler_options=None,
    ):
      print(json.dumps(result), flush=True)
      results.append(result)
  if args.out:
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
  main()
