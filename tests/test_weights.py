"""The weights shipped in the package (``fusionjax/weights``): present, loadable, chained, and the default
of ``fusionjax fuse`` and ``evaluate.py --ckpt shipped``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusionjax import checkpoints
from fusionjax import cli
from fusionjax import imageio
from fusionjax import stages
from fusionjax import tasks
from fusionjax import weights
from fusionjax.data import sample_pairs
from fusionjax.evaluation import baselines
from fusionjax.evaluation import runner

STAGES = tasks.STAGES


@pytest.fixture(scope="module")
def shipped():
  return {
    stage: stages.load_fusion_model(weights.shipped_checkpoint(stage), expected_task=stage)
    for stage in STAGES
  }


def test_default_set_holds_three_chained_stages(shipped):
  assert weights.DEFAULT in weights.available()
  for stage, model in shipped.items():
    assert model.task == stage and model.step > 0
    assert model.metadata["model"]["name"] == "efrufn"
    # Exported without optimiser state: a few hundred KiB per stage.
    size = sum(f.stat().st_size for f in Path(model.path).rglob("*") if f.is_file())
    assert size < 1.5 * 2**20, size
  assert shipped["meif"].colornet_params is not None
  lineage = checkpoints.stage_lineage(shipped["ivf"].metadata)
  assert [entry["task"] for entry in lineage] == ["ivf", "meif", "mfif"]
  # The teachers recorded in the lineage are the shipped stages' own training runs, at the exported steps.
  assert lineage[1]["step"] == shipped["meif"].step and lineage[2]["step"] == shipped["mfif"].step
  assert shipped["ivf"].metadata["config"]["loss"]["lambda_gt"] > 0


def test_task_names_map_to_stages():
  assert weights.shipped_checkpoint("mif") == weights.shipped_checkpoint("meif")
  with pytest.raises(ValueError, match="Unknown task"):
    weights.shipped_checkpoint("pansharpening")
  with pytest.raises(FileNotFoundError, match="no 'ivf' stage"):
    weights.shipped_checkpoint("ivf", name="not_a_weight_set")
  model = stages.load_model(None, task="mif")
  assert model.task == "meif"
  with pytest.raises(ValueError, match="name the task"):
    stages.load_model(None)
  with pytest.raises(
    ValueError, match="Unknown task 'pansharpening'; use one of mfif, meif, ivf, mif"
  ):
    stages.load_model(None, task="pansharpening")
  assert stages.load_model(model, task="MIF") is model
  with pytest.raises(ValueError, match="needs a 'ivf' checkpoint"):
    stages.load_model(model, task="ivf")


def _qabf(fused, sources):
  return float(runner.score_image(fused, sources, metrics=["Qabf"])["Qabf"].value)


@pytest.mark.parametrize("dataset,task", [("tno", "ivf"), ("lytro", "mfif")])
def test_cli_fuses_sample_pairs_with_shipped_weights(tmp_path, capsys, dataset, task):
  pair = sample_pairs.sample_pair(dataset)
  out = tmp_path / "fused.png"
  code = cli.main(["fuse", *map(str, pair.sources), "-o", str(out), "--task", task])
  err = capsys.readouterr().err
  assert code == 0, err
  assert f"{task} checkpoint" in err and str(weights.WEIGHTS_DIR) in err
  sources = [imageio.load_image(p) for p in pair.sources]
  fused = imageio.load_image(out)
  assert fused.shape[:2] == sources[0].shape[:2]
  # Trained weights transfer more source gradient than the per-pixel average does (Qabf).
  average = baselines.average_fusion(sources)
  assert _qabf(fused, sources) > _qabf(average, sources)


def test_cli_without_task_or_ckpt_explains(tmp_path, capsys):
  pair = sample_pairs.sample_pair("tno")
  out = tmp_path / "fused.png"
  code = cli.main(["fuse", *map(str, pair.sources), "-o", str(out)])
  assert code == cli.USAGE_ERROR and "--task" in capsys.readouterr().err and not out.exists()


def test_evaluate_shipped_runs_the_stage_of_the_dataset_task(tmp_path):
  from fusionjax import evaluation

  summary = evaluation.evaluate_checkpoint(
    stages.SHIPPED,
    "harvard_mri_ct",
    tmp_path / "eval",
    data_dir=sample_pairs.samples_dir(),
    max_side=64,
    metrics=["EN"],
    measure_flops=False,
  )
  # Medical pairs use the multi-exposure stage (paper §4.5).
  assert summary["checkpoint"]["task"] == "meif"
  assert Path(summary["checkpoint"]["path"]) == weights.shipped_checkpoint("meif")
  assert summary["metrics"]["EN"]["n"] == 1 and (tmp_path / "eval" / "fused").is_dir()
