"""The three-stage chain MFIF -> MEIF -> IVF with the smoke configs on the real benchmark data.

Runs in a subprocess so that XLA can be told to compile fast (the lowest CPU backend optimisation
level: same numerics, several times shorter compilation). It checks:

- three checkpoints, stage 3's metadata naming stage 2 naming stage 1 (``stage_lineage``);
- interrupting stage 1 (KeyboardInterrupt after 3 steps) and rerunning gives the parameters of an
  uninterrupted run, and ``metrics.jsonl`` holds each step once;
- ``init_ckpt`` starts a run from another checkpoint's parameters and is recorded;
- the teacher's checkpoint is untouched by the stage that uses it; the sample grids are written;
- exporting a stage as shipped weights keeps its parameters and lineage and drops the optimiser;
- a non-finite loss stops the run with the step number and saves nothing past the last good step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared_data import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA

_SCRIPT = r'''
import hashlib, json, sys
from pathlib import Path
import jax, numpy as np
from configs import ivf, meif, mfif
from fusionjax import checkpoints
from fusionjax import data as fj_data
from fusionjax.train import logging as train_logging
from fusionjax.train import loop

data_dir, root = sys.argv[1], Path(sys.argv[2])
report = {}


def smoke(module, **overrides):
  config = module.get_config("smoke")
  config.data.data_dir = data_dir
  config.data.max_images = 3
  for key, value in overrides.items():
    config[key] = value
  return config


def digest(path):
  h = hashlib.sha256()
  for p in sorted(Path(path).rglob("*")):
    if p.is_file():
      h.update(str(p.relative_to(path)).encode()); h.update(p.read_bytes())
  return h.hexdigest()


def params(workdir):
  model = checkpoints.load_fusion_model(workdir)
  return model, [np.asarray(x) for x in jax.tree.leaves(model.params)]


class _Interrupting:
  """Wraps a training source: its iterator raises KeyboardInterrupt instead of batch number `after`."""

  def __init__(self, source, after):
    self._source, self._after = source, after

  def __getattr__(self, name):
    return getattr(self._source, name)

  def iterate(self, *args, **kwargs):
    inner, after = self._source.iterate(*args, **kwargs), self._after

    class It:
      count = 0
      def __next__(self):
        if It.count == after:
          raise KeyboardInterrupt
        It.count += 1
        return next(inner)
      def close(self):
        inner.close()
    return It()


# Stage 1, uninterrupted: 4 steps.
stage1 = dict(num_steps=4, checkpoint_every=2)
report["mfif"] = loop.train_and_evaluate(smoke(mfif, **stage1), root / "mfif")
# Stage 1 again, interrupted after 3 steps, then resumed by rerunning the same call.
real_source = fj_data.make_training_source
fj_data.make_training_source = lambda *a, **k: _Interrupting(real_source(*a, **k), after=3)
try:
  loop.train_and_evaluate(smoke(mfif, **stage1), root / "mfif_resumed")
  report["interrupt_raised"] = False
except KeyboardInterrupt:
  report["interrupt_raised"] = True
fj_data.make_training_source = real_source
report["steps_after_interrupt"] = checkpoints.StageCheckpointer(root / "mfif_resumed", create=False).all_steps()
loop.train_and_evaluate(smoke(mfif, **stage1), root / "mfif_resumed")
_, a = params(root / "mfif")
_, b = params(root / "mfif_resumed")
report["resume_max_diff"] = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
report["resumed_metric_steps"] = [r["step"] for r in train_logging.read_metrics(root / "mfif_resumed")]
report["metric_steps"] = [r["step"] for r in train_logging.read_metrics(root / "mfif")]
report["mfif_losses"] = [r["loss"] for r in train_logging.read_metrics(root / "mfif")]

# An explicit init checkpoint: the same stage-1 run started from the uninterrupted run's parameters
# at its earlier checkpoint (step 2 of 4).
loop.train_and_evaluate(smoke(mfif, init_ckpt=str(root / "mfif"), init_step=2, **stage1), root / "mfif_init")
init_metadata = checkpoints.read_metadata(root / "mfif_init")
report["init_record"] = init_metadata["init"]
_, c = params(root / "mfif_init")
report["init_differs_from_scratch"] = max(float(np.max(np.abs(x - y))) for x, y in zip(a, c)) > 0

# Stages 2 and 3, each taught by the previous one.
teacher_digest = digest(root / "mfif")
report["meif"] = loop.train_and_evaluate(smoke(meif, num_steps=2, teacher_ckpt=str(root / "mfif")), root / "meif")
report["teacher_untouched"] = digest(root / "mfif") == teacher_digest
report["ivf"] = loop.train_and_evaluate(smoke(ivf, num_steps=2, teacher_ckpt=str(root / "meif")), root / "ivf")

metadata = checkpoints.read_metadata(root / "ivf")
report["lineage"] = checkpoints.stage_lineage(metadata)
report["ivf_teacher_step"] = metadata["teacher"]["step"]
report["ivf_config_lambda"] = metadata["config"]["loss"]["lambda_gt"]
meif_model = checkpoints.load_fusion_model(root / "meif", expected_task="meif")
report["meif_has_colornet"] = meif_model.colornet_params is not None
report["samples"] = sorted(p.name for p in (root / "ivf").glob("samples_step_*.png"))

# Exporting a stage as shipped weights (results/export_weights.py): parameters kept, optimiser dropped.
from results import export_weights
export_weights.export_stage(root / "meif", root / "exported" / "meif")
exported_state, exported_meta = checkpoints.StageCheckpointer(root / "exported" / "meif", create=False).restore()
exported = checkpoints.load_fusion_model(root / "exported" / "meif", expected_task="meif")
report["export"] = {
    "keys": sorted(exported_state), "step": exported.step, "from": Path(exported_meta["exported_from"]).name,
    "lineage": [e["task"] for e in checkpoints.stage_lineage(exported_meta)],
    "params_equal": all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(meif_model.params),
                                                            jax.tree.leaves(exported.params))),
    "colornet_equal": all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(meif_model.colornet_params),
                                                              jax.tree.leaves(exported.colornet_params))),
    "files": sorted(p.name for p in (root / "exported").iterdir())}
# An earlier step than the latest (export_weights --steps/--best).
first_step = checkpoints.StageCheckpointer(root / "mfif", create=False).all_steps()[0]
export_weights.export_stage(root / "mfif", root / "exported_step" / "mfif", first_step)
report["export_step"] = [first_step, checkpoints.load_fusion_model(root / "exported_step" / "mfif").step]

# A NaN batch at step 2 of a fresh stage-1 run: stops with the step number, no checkpoint after it.
class _NaNAt(_Interrupting):
  def iterate(self, *args, **kwargs):
    inner = self._source.iterate(*args, **kwargs)
    class It:
      count = 0
      def __next__(self):
        batch = next(inner)
        It.count += 1
        if It.count == 2:
          batch = dict(batch, y1=np.full_like(batch["y1"], np.nan))
        return batch
      def close(self):
        inner.close()
    return It()
fj_data.make_training_source = lambda *a, **k: _NaNAt(real_source(*a, **k), after=None)
try:
  loop.train_and_evaluate(smoke(mfif, num_steps=4, checkpoint_every=1), root / "mfif_nan")
  report["nan_error"] = None
except FloatingPointError as error:
  report["nan_error"] = str(error)
fj_data.make_training_source = real_source
report["nan_steps"] = checkpoints.StageCheckpointer(root / "mfif_nan", create=False).all_steps()
print("REPORT " + json.dumps(report))
'''


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "clean_natural").is_dir(), reason="benchmark data not staged")
def test_smoke_chain_resume_and_lineage(tmp_path):
  env = dict(os.environ)
  env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
  result = subprocess.run(
    [sys.executable, "-c", _SCRIPT, str(DATA), str(tmp_path)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=1500,
  )
  assert result.returncode == 0, result.stderr[-6000:]
  line = [l for l in result.stdout.splitlines() if l.startswith("REPORT ")][-1]
  report = json.loads(line[len("REPORT ") :])
  print(json.dumps(report, indent=1))

  # Interrupt and resume: a checkpoint at the interrupted step, then the uninterrupted parameters.
  assert report["interrupt_raised"]
  assert report["steps_after_interrupt"] == [2, 3]
  assert report["resume_max_diff"] <= 1e-6
  assert report["resumed_metric_steps"] == [1, 2, 3, 4] == report["metric_steps"]

  # init_ckpt at init_step: recorded, and it changes where training starts from.
  assert report["init_record"]["task"] == "mfif" and report["init_record"]["step"] == 2
  assert Path(report["init_record"]["path"]).name == "mfif"
  assert report["init_differs_from_scratch"]

  # Every stage ran with finite losses.
  for task in ("mfif", "meif", "ivf"):
    assert report[task]["all_finite"] == 1.0 and report[task]["step"] > 0
  assert "gradient_transfer" in report["meif"] and "color" in report["meif"]
  assert {"intensity", "texture", "structure", "gradient_transfer"} <= set(report["ivf"])

  # The chain is readable from the stage-3 checkpoint alone.
  lineage = report["lineage"]
  assert [entry["task"] for entry in lineage] == ["ivf", "meif", "mfif"]
  assert [Path(entry["path"]).name for entry in lineage] == ["ivf", "meif", "mfif"]
  assert [entry["step"] for entry in lineage] == [2, 2, 4]
  assert report["ivf_teacher_step"] == 2 and report["ivf_config_lambda"] > 0
  assert report["teacher_untouched"] and report["meif_has_colornet"]
  assert report["samples"] == ["samples_step_2.png"]

  # The exported stage: same weights and lineage, no optimiser state, no staging folder left behind.
  export = report["export"]
  assert export["keys"] == ["colornet_params", "params", "rng", "step"]
  assert export["step"] == 2 and export["from"] == "meif" and export["lineage"] == ["meif", "mfif"]
  assert export["params_equal"] and export["colornet_equal"] and export["files"] == ["meif"]
  first, exported_step = report["export_step"]
  assert exported_step == first == 2  # Of steps 2 and 4.

  # Non-finite loss: named step, nothing saved from it on.
  assert report["nan_error"] is not None and "step 2" in report["nan_error"]
  assert report["nan_steps"] == [1]
