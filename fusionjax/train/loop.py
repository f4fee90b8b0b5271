"""``train_and_evaluate``: one stage of the sequential gradient-transfer chain, end to end.

The three stages (paper §3.1, Fig. 4) are three runs of this function with the configs in
``configs/``: MFIF from scratch, MEIF with the frozen MFIF model as teacher, IVF with the frozen MEIF
model as teacher. Each run writes to its workdir:

- ``checkpoints/<step>/``: Orbax checkpoints (train state + metadata, keep-latest-N), see
  :mod:`fusionjax.checkpoints`. The metadata embeds the teacher's metadata, so the whole chain
  MFIF -> MEIF -> IVF is readable from the stage-3 checkpoint alone.
- ``metrics.jsonl``: one JSON object per logged step.
- ``samples_step_<N>.png``: sources | fused | reference for a few fixed training crops.

A multi-process run (``docs/multihost.md``, :mod:`fusionjax.train.distributed`) writes the same
files: every process takes part in each checkpoint, which Orbax writes once for the whole run, and
process 0 alone writes ``metrics.jsonl``, the sample grids and the progress lines. Each process
makes its own share of every global batch.

Order of work. Everything that can fail on user input is checked before anything is written to the
workdir, and before data loading and compilation:

1. the config (task, steps, patch size) and the data directory (``config.data.data_dir``, else the
   ``FUSIONJAX_DATA`` environment variable);
2. an existing checkpoint in the workdir (it must be of the same task and model);
3. the teacher: its checkpoint must exist and be of the previous task (MEIF needs an MFIF teacher,
   IVF an MEIF teacher);
4. the training data (missing datasets fail here).

The teacher is found and loaded by :mod:`fusionjax.train.teacher`; the networks and compiled
functions come from :mod:`fusionjax.train.programs`.

Where the initial state comes from, in this order: a checkpoint in the workdir (resume: same step,
same data order, since a batch is a pure function of (seed, step)) > ``config.init_ckpt`` (parameters
only, fresh optimiser) > scratch.

Errors. A problem with what the user gave (config, data, teacher, init checkpoint, workdir) raises an
:class:`InputError` (also a ``ValueError`` or ``FileNotFoundError``) whose message names the config
field to change; ``train.py`` prints it as one line. A full disk raises
:class:`fusionjax.checkpoints.DiskFullError` with the workdir and the space needed; the checkpoints
already saved are kept. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

import fusionjax
from fusionjax import checkpoints
from fusionjax import color
from fusionjax import data as fj_data
from fusionjax import tasks
from fusionjax.data import config as data_config
from fusionjax.evaluation import cost
from fusionjax.train import distributed
from fusionjax.train import logging as train_logging
from fusionjax.train import parallel
from fusionjax.train import state as train_state
from fusionjax.train import teacher as teacher_lib

# Re-exported: callers and tests reach these through the loop.
from fusionjax.train.programs import Programs, build_programs, fixed_point_weight, jacobian_weight  # noqa: F401
from fusionjax.train.teacher import Teacher, resolve_teacher, uses_teacher  # noqa: F401

#: Environment variable read when ``config.data.data_dir`` is not set.
DATA_DIR_ENV = "FUSIONJAX_DATA"


class InputError(Exception):
  """A problem with the config, data, teacher or workdir, found before anything is written."""


class BadInputError(InputError, ValueError):
  """An :class:`InputError` about a value (a config field, a teacher of the wrong task, ...)."""


class MissingInputError(InputError, FileNotFoundError):
  """An :class:`InputError` about something that does not exist (data folder, teacher checkpoint)."""


@contextlib.contextmanager
def _input_checks():
  """Marks the ValueError / FileNotFoundError of the checks inside as :class:`InputError`."""
  try:
    yield
  except InputError:
    raise
  except FileNotFoundError as error:
    raise MissingInputError(str(error)) from error
  except ValueError as error:
    raise BadInputError(str(error)) from error


def resolve_data_dir(config: ml_collections.ConfigDict) -> str:
  """``config.data.data_dir``, else ``$FUSIONJAX_DATA``; a ValueError naming both when neither is set."""
  data_dir = config.data.get("data_dir") or os.environ.get(DATA_DIR_ENV)
  if not data_dir:
    raise ValueError(
      f"No training data directory: pass --config.data.data_dir=DIR (the folder holding the datasets, "
      f"laid out as in docs/DESIGN.md §5) or set the environment variable {DATA_DIR_ENV}=DIR."
    )
  path = Path(data_dir).expanduser()
  if not path.is_dir():
    raise FileNotFoundError(
      f"Training data directory {path} does not exist or is not a directory; "
      f"check --config.data.data_dir (or ${DATA_DIR_ENV})."
    )
  return str(path.absolute())


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks the fields the loop relies on; raises ValueError naming the flag to fix."""
  if config.task not in tasks.STAGES:
    raise ValueError(f"config.task is {config.task!r}; use one of {tasks.STAGES}.")
  if config.get("parallel", parallel.DEFAULT_MODE) not in parallel.MODES:
    raise ValueError(
      f"--config.parallel={config.parallel!r}; use one of {', '.join(parallel.MODES)}."
    )
  for name in ("num_steps", "log_every", "checkpoint_every", "keep_checkpoints"):
    if int(config[name]) <= 0:
      raise ValueError(f"--config.{name} must be positive, got {config[name]}.")
  if int(config.sample_every) < 0:
    raise ValueError(
      f"--config.sample_every must be >= 0 (0: only at the end), got {config.sample_every}."
    )
  data_config.check_patch_size(config.data.patch_size)
  if int(config.data.batch_size) <= 0:
    raise ValueError(f"--config.data.batch_size must be positive, got {config.data.batch_size}.")
  loss = config.loss
  for name in ("lambda_gt", "beta1", "beta2"):
    if float(loss[name]) < 0:
      raise ValueError(f"--config.loss.{name} must be >= 0, got {loss[name]}.")
  if config.task == "mfif" and float(loss.lambda_gt) > 0 and bool(config.use_teacher):
    raise ValueError(
      "Stage 1 (mfif) has no teacher: set --config.loss.lambda_gt=0 or --config.use_teacher=False."
    )


def _as_json(tree: Any) -> Any:
  """A JSON round trip: tuples become lists, so recorded and current configs compare equal."""
  return json.loads(json.dumps(tree, default=str))


def _config_dict(config: ml_collections.ConfigDict) -> dict:
  return _as_json(config.to_dict())


def _existing_metadata(workdir: Path) -> dict | None:
  """Metadata of the workdir's latest checkpoint, or None when the workdir holds none."""
  directory = checkpoints.checkpoint_dir(workdir)
  if not directory.is_dir() or not any(p.name.isdigit() for p in directory.iterdir()):
    return None
  return checkpoints.read_metadata(workdir)


def _check_resumable(existing: dict, config: ml_collections.ConfigDict, workdir: Path) -> None:
  if existing.get("task") != config.task:
    raise ValueError(
      f"Workdir {workdir} holds a {existing.get('task')!r} checkpoint but this config trains "
      f"{config.task!r}; pass another --workdir."
    )
  if existing.get("model") != _as_json(config.model.to_dict()):
    raise ValueError(
      f"Workdir {workdir} holds a checkpoint of another model configuration "
      f"({existing.get('model')}); resume with the same --config.model.* or pass another --workdir."
    )


def _init_from_checkpoint(path: str, template: dict, step: int | None = None) -> tuple[dict, dict]:
  """Parameters of another stage's checkpoint (``config.init_ckpt``, at ``config.init_step`` or its
  latest) as the starting point, and that checkpoint's metadata."""
  loaded = checkpoints.load_fusion_model(path, step=step)

  def check(name, got, want):
    if jax.tree.structure(got) != jax.tree.structure(want) or any(
      np.shape(a) != np.shape(b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want))
    ):
      raise ValueError(
        f"--config.init_ckpt={path}: its {name} do not match this config's model; "
        "use the same --config.model.* as the checkpoint (see its metadata)."
      )

  check("parameters", loaded.params, template["params"])
  out = {"params": loaded.params}
  if "colornet_params" in template and loaded.colornet_params is not None:
    check("ColorNet parameters", loaded.colornet_params, template["colornet_params"])
    out["colornet_params"] = loaded.colornet_params
  return out, loaded.metadata


def _sample_columns(
  programs: Programs, host_state: dict, batch: dict
) -> tuple[list[np.ndarray], np.ndarray]:
  """Fuses the sample crops; returns the grid columns (sources | fused | reference) and the fused Y."""
  fused = np.asarray(programs.fuse(host_state["params"], batch["y1"], batch["y2"]))
  if programs.colornet is not None:
    crcb = np.asarray(
      programs.color(host_state["colornet_params"], batch["crcb1"], batch["crcb2"], fused)
    )
    rgb = lambda y, c: color.ycrcb_to_rgb(np.concatenate([y, c], axis=-1))
    columns = [rgb(batch["y1"], batch["crcb1"]), rgb(batch["y2"], batch["crcb2"]), rgb(fused, crcb)]
    if "reference" in batch:
      columns.append(rgb(batch["reference"], batch["reference_crcb"]))
  else:
    columns = [batch["y1"], batch["y2"], fused] + (
      [batch["reference"]] if "reference" in batch else []
    )
  return columns, fused


def _sample_metrics(names, fused, batch) -> dict[str, float]:
  """Fusion metrics of the sample fusions (uint8 levels), averaged; metrics undefined on them are left out."""
  if not names:
    return {}
  from fusionjax import imageio, metrics  # Deferred: only needed at the end of a run.

  results = []
  for i in range(fused.shape[0]):
    sources = [imageio.to_uint8(batch["y1"][i, ..., 0]), imageio.to_uint8(batch["y2"][i, ..., 0])]
    reference = imageio.to_uint8(batch["reference"][i, ..., 0]) if "reference" in batch else None
    results.append(
      metrics.compute_metrics(
        imageio.to_uint8(fused[i, ..., 0]),
        sources,
        reference=reference,
        names=[n for n in names if n != "PSNR" or reference is not None],
      )
    )
  summary = metrics.summarize(results)
  return {
    f"eval/{name}": float(s["mean"])
    for name, s in summary.items()
    if s.get("n") and s["mean"] is not None
  }


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str | os.PathLike | None = None
) -> dict[str, float]:
  """Trains one stage and evaluates its sample fusions.

  Args:
    config: an experiment config from ``configs/`` (``configs/mfif.py`` etc.).
    workdir: where checkpoints, ``metrics.jsonl`` and sample grids go; ``None`` uses
      ``config.workdir_default``. A workdir holding a checkpoint of this stage is resumed.

  Returns:
    The final metrics: ``step``, the loss terms averaged over the last logging interval,
    ``steps_per_sec`` (over the steps run by this call, compilation excluded when more than one
    interval was logged), ``wall_time_s`` and ``eval/<metric>`` on the sample crops.

  Raises:
    ValueError / FileNotFoundError: bad config, missing data, missing or wrong-task teacher, or a
      workdir holding another stage; raised before anything is written.
    FloatingPointError: the loss or the gradients became non-finite (the message names the step).
  """
  start_time = time.perf_counter()
  with _input_checks():
    # Multi-process: every process runs this same program (see docs/multihost.md); before anything
    # else touches JAX's devices.
    distributed.initialize(config)
  config = ml_collections.ConfigDict(
    config.to_dict()
  )  # Local copy: the caller's config is not touched.
  with _input_checks():
    inputs = _check_inputs(config, workdir)
  run = _Run(config, inputs)
  fused = run.train()
  result = {
    "step": float(run.num_steps),
    **run.last_logged,
    "steps_per_sec": run.steps_per_sec(),
    "wall_time_s": time.perf_counter() - start_time,
  }
  result.update(_sample_metrics(list(config.get("eval_metrics", ())), fused, run.sample_batch))
  return result


@dataclasses.dataclass
class _Inputs:
  """What :func:`_check_inputs` found valid: the workdir, its checkpoint's metadata, the teacher, the data."""

  workdir: Path
  existing: dict | None
  teacher: Teacher | None
  source: Any


def _check_inputs(config: ml_collections.ConfigDict, workdir: str | os.PathLike | None) -> _Inputs:
  """Steps 1-4 of the module docstring, before anything is written; loads the teacher last."""
  validate_config(config)
  workdir = Path(workdir if workdir is not None else config.workdir_default).expanduser().absolute()
  config.data.data_dir = resolve_data_dir(config)
  existing = _existing_metadata(workdir)
  if existing is not None:
    _check_resumable(existing, config, workdir)
  teacher = resolve_teacher(config, existing)
  dp = parallel.make_data_parallel(
    config.get("parallel", parallel.DEFAULT_MODE), config.get("num_devices")
  )
  dp.check_batch_size(int(config.data.batch_size))
  source = fj_data.make_training_source(
    config.task, config.data, process_index=jax.process_index(), process_count=jax.process_count()
  )
  # Inputs are valid: build, then write.
  if teacher is not None:
    teacher = teacher_lib.load_teacher(teacher)
  return _Inputs(workdir=workdir, existing=existing, teacher=teacher, source=source)


class _Run:
  """One call of :func:`train_and_evaluate` from its checked inputs: the state, the loop and its records.

  Only process 0 writes ``metrics.jsonl``, sample grids and log lines; every process takes part in
  each checkpoint, which Orbax writes once for the whole run.
  """

  def __init__(self, config: ml_collections.ConfigDict, inputs: _Inputs):
    self.config, self.task, self.workdir, self.source = (
      config,
      config.task,
      inputs.workdir,
      inputs.source,
    )
    self.is_main = jax.process_index() == 0
    self.programs = build_programs(config, inputs.teacher)
    self.dp = self.programs.data_parallel
    self.num_steps = int(config.num_steps)
    host_state, init_record = self._initial_state(inputs.existing)
    self.workdir.mkdir(parents=True, exist_ok=True)
    self.checkpointer = checkpoints.StageCheckpointer(
      self.workdir, max_to_keep=int(config.keep_checkpoints)
    )
    if self.checkpointer.latest_step() is not None:
      with _input_checks():  # A damaged checkpoint in the workdir: the message says what to do.
        host_state, _ = self.checkpointer.restore(state_template=host_state)
      self._log(
        "[%s] resuming from %s at step %d", self.task, self.workdir, int(host_state["step"])
      )
    self.start_step = int(host_state["step"])
    self.metadata = self._metadata(inputs, init_record)
    teacher = inputs.teacher
    self._log(
      "[%s] %s, %d parameters%s; %d device(s) (%s, %d process(es)); teacher: %s",
      self.task,
      config.model.name,
      cost.count_parameters(host_state["params"]),
      f" + ColorNet {cost.count_parameters(host_state['colornet_params'])}"
      if self.programs.colornet is not None
      else "",
      self.dp.num_global_devices,
      self.dp.mode,
      jax.process_count(),
      f"{teacher.path} (step {teacher.step}, {teacher.metadata['task']})" if teacher else "none",
    )

    self.frozen = (self.dp.replicate(teacher.params),) if teacher is not None else ()
    # The first crops of step 0's global batch: the same in every process and for any process count.
    self.sample_batch = self.source.examples(
      0, range(min(int(config.num_samples), self.source.global_batch_size))
    )
    self.writer = (
      train_logging.MetricsWriter(self.workdir, resume_step=self.start_step)
      if self.is_main
      else None
    )
    self.progress = train_logging.Progress(self.task, self.start_step, self.num_steps)
    self.state = self.dp.replicate(host_state)
    self.pending: list[tuple[int, dict]] = []  # (step, device metrics) not yet checked on the host
    self.interval: list[dict] = []  # checked host metrics since the last log line
    self.last_logged: dict[str, float] = {}
    self.last_saved = self.start_step
    self.completed = self.start_step  # steps whose update is in self.state
    self.rates: list[float] = []

  def _log(self, *args) -> None:
    if self.is_main:
      logging.info(*args)

  def _initial_state(self, existing: dict | None) -> tuple[dict, dict | None]:
    """A fresh state (also the template that restores optimiser states as their own types), with the
    parameters of ``config.init_ckpt`` when starting from it; and the ``init`` metadata record."""
    config = self.config
    host_state = jax.device_get(self.programs.init(jax.random.PRNGKey(int(config.seed))))
    if existing is not None or not config.get("init_ckpt"):
      return host_state, None
    with _input_checks():  # Before the workdir is created: a bad init_ckpt leaves nothing behind.
      params, init_meta = _init_from_checkpoint(
        config.init_ckpt, host_state, config.get("init_step")
      )
      host_state.update(params)
    self._log(
      "[%s] parameters initialised from %s (step %d)",
      self.task,
      config.init_ckpt,
      init_meta["step"],
    )
    return host_state, {
      "path": str(Path(config.init_ckpt).expanduser().absolute()),
      "step": init_meta["step"],
      "task": init_meta["task"],
    }

  def _metadata(self, inputs: _Inputs, init_record: dict | None) -> dict:
    config, teacher = self.config, inputs.teacher
    return {
      "format": checkpoints.FORMAT,
      "task": self.task,
      "model": _as_json(config.model.to_dict()),
      "colornet": _as_json(config.colornet.to_dict())
      if self.programs.colornet is not None
      else None,
      "config": _config_dict(config),
      "teacher": teacher.record if teacher is not None else None,
      "init": init_record if inputs.existing is None else inputs.existing.get("init"),
      "workdir": str(self.workdir),
      "fusionjax_version": fusionjax.__version__,
    }

  def _check_pending(self) -> None:
    """Moves device metrics to the host; fails at the first step whose loss or gradients are not finite."""
    host = self.dp.unreplicate([m for _, m in self.pending])
    for (step, _), values in zip(self.pending, host):
      values = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in values.items()}
      if values["all_finite"] < 1.0:
        raise FloatingPointError(
          f"[{self.task}] non-finite loss or gradients at step {step} (loss={values['loss']}, "
          f"grad_norm={values['grad_norm']}). The last checkpoint (step {self.last_saved}) in {self.workdir} is "
          "untouched; lower --config.optimizer.learning_rate or --config.optimizer.grad_clip_norm and resume."
        )
      self.interval.append(values)
    self.pending.clear()

  def _save(self, step: int) -> None:
    self._check_pending()
    self.checkpointer.save(step, self.dp.unreplicate(self.state), self.metadata, force=True)
    self.last_saved = step

  def _write_samples(self, step: int) -> np.ndarray:
    columns, fused = _sample_columns(
      self.programs, self.dp.unreplicate(self.state), self.sample_batch
    )
    if self.is_main:
      train_logging.write_sample_grid(self.workdir, step, columns)
    return fused

  def _log_interval(self, step: int) -> None:
    """The progress line and ``metrics.jsonl`` record of the steps since the last one."""
    self._check_pending()
    self.last_logged = {k: float(np.mean([m[k] for m in self.interval])) for k in self.interval[-1]}
    self.interval.clear()
    rate = self.progress.update(step)
    if rate and step - self.start_step > int(self.config.log_every):
      self.rates.append(rate)  # The first interval includes compilation.
    eta = self.progress.eta_seconds(step)
    if self.writer is not None:
      self.writer.write(
        step,
        {
          **self.last_logged,
          "steps_per_sec": rate or 0.0,
          "eta_s": eta if eta is not None else float("nan"),
        },
      )
    self._log("%s", self.progress.line(step, self.last_logged))

  def steps_per_sec(self) -> float:
    """Over the steps run by this call, compilation excluded when more than one interval was logged."""
    return float(np.mean(self.rates)) if self.rates else float(self.progress.steps_per_sec or 0.0)

  def train(self) -> np.ndarray:
    """Runs the steps left, saves, writes the final samples; returns their fusions."""
    config, num_steps = self.config, self.num_steps
    batches = self.source.iterate(
      self.start_step, int(config.prefetch), num_steps=num_steps - self.start_step
    )
    finished = False
    try:
      for step in range(self.start_step + 1, num_steps + 1):
        self.state, step_metrics = self.programs.step(
          self.state, self.dp.shard(next(batches)), *self.frozen
        )
        self.completed = step
        self.pending.append((step, step_metrics))
        if step % int(config.log_every) == 0 or step == num_steps:
          self._log_interval(step)
        if step % int(config.checkpoint_every) == 0 and step != num_steps:
          self._save(step)
        if int(config.sample_every) and step % int(config.sample_every) == 0 and step != num_steps:
          self._check_pending()
          self._write_samples(step)
      if self.last_saved != num_steps:
        self._save(num_steps)
      fused = self._write_samples(num_steps)
      finished = True
    except KeyboardInterrupt:
      # Keep the work done so far: a checkpoint at the last completed step, then stop.
      if self.completed > self.last_saved:
        logging.warning(
          "[%s] interrupted at step %d; saving a checkpoint to resume from.",
          self.task,
          self.completed,
        )
        self._save(self.completed)
      raise
    except OSError as error:
      if isinstance(error, checkpoints.DiskFullError) or not checkpoints.is_disk_full(error):
        raise
      # metrics.jsonl or a sample grid found no space. A checkpoint being written then most likely found
      # none either: report that one (it also removes the partial step folder), else the file.
      self.checkpointer.wait_until_finished()
      what = Path(error.filename).name if error.filename else "metrics.jsonl or a sample grid"
      raise self.checkpointer.disk_full_error(what) from error
    finally:
      batches.close()
      self.source.close()
      if finished:
        self.checkpointer.close()
      else:
        with contextlib.suppress(Exception):  # The error being raised is the one to report.
          self.checkpointer.close()
    return fused
