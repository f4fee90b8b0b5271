"""Validation split and scores (fusionjax.train.validation): held-back items, fixed examples."""

import numpy as np
import pytest
from PIL import Image

from fusionjax.train import validation
from test_inference import save_tiny_checkpoint, tiny_fusion_model


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
  """clean_natural/ with 6 photographs and roadscene/ with 4 training pairs (and one test pair)."""
  root = tmp_path_factory.mktemp("data")
  rng = np.random.default_rng(3)
  for k in range(6):
    path = root / "clean_natural" / f"{k}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
  for k in range(5):
    for folder, shape in (("crop_LR_visible", (36, 44, 3)), ("cropinfrared", (36, 44))):
      path = root / "roadscene" / folder / f"FLIR_{k}.png"
      path.parent.mkdir(parents=True, exist_ok=True)
      Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
  (root / "roadscene" / "test50.txt").write_text("FLIR_4.jpg\n")
  return root


def test_validation_batch_is_fixed_and_needs_a_holdout(data_root):
  config = {"data_dir": str(data_root), "holdout_every": 3}
  a = validation.validation_batch("mfif", config, num_examples=4, patch_size=16)
  b = validation.validation_batch("mfif", config, num_examples=4, patch_size=16)
  assert set(a) == {"y1", "y2", "reference"} and a["y1"].shape == (4, 16, 16, 1)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  other = validation.validation_batch("mfif", config, num_examples=4, patch_size=16, seed=1)
  assert not np.array_equal(a["reference"], other["reference"])
  ivf = validation.validation_batch(
    "ivf", {"data_dir": str(data_root)}, holdout_every=2, num_examples=2, patch_size=16
  )
  assert set(ivf) == {"y1", "y2"}
  with pytest.raises(ValueError, match="No validation split: set config.data.holdout_every"):
    validation.validation_batch("mfif", {"data_dir": str(data_root)})


def test_scores_rank_the_reference_above_the_average(data_root):
  batch = validation.validation_batch(
    "mfif", {"data_dir": str(data_root), "holdout_every": 2}, num_examples=3, patch_size=24
  )
  noise = np.random.default_rng(0).normal(0, 0.01, batch["reference"].shape)
  near_reference = validation.score("mfif", np.clip(batch["reference"] + noise, 0, 1), batch)
  average = validation.score("mfif", (batch["y1"] + batch["y2"]) / 2, batch)
  assert set(near_reference) == {"SSIM", "PSNR"}
  assert near_reference["SSIM"] > average["SSIM"] and near_reference["PSNR"] > average["PSNR"]
  rows = [{"step": 1, "SSIM": 0.5}, {"step": 2, "SSIM": 0.7}, {"step": 3, "SSIM": 0.7}]
  assert validation.best_row("mfif", rows)["step"] == 2


def test_score_checkpoints_scores_every_saved_step(data_root, tmp_path):
  batch = validation.validation_batch(
    "ivf", {"data_dir": str(data_root), "holdout_every": 2}, num_examples=2, patch_size=32
  )
  for step in (3, 7):
    save_tiny_checkpoint(tmp_path / "run", task="ivf", seed=step, step=step)
  rows = validation.score_checkpoints(tmp_path / "run", batch)
  assert [row["step"] for row in rows] == [3, 7]
  assert all(set(row) == {"step", *validation.METRICS["ivf"]} for row in rows)
  assert rows[0]["Qabf"] != rows[1]["Qabf"]  # Different parameters, different fused images.
  direct = validation.score_model(tiny_fusion_model(seed=7), batch)
  assert direct["Qabf"] == pytest.approx(rows[1]["Qabf"], rel=1e-5)
