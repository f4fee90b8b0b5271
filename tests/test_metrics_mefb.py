"""fusionjax.metrics on a real MEFB multi-exposure pair (skipped when the benchmark data is absent).

The data directory is ``tests/shared_data.SHARED_DATA``; its ``mefb/`` folder
holds ``<scene>/<scene>_A.*`` (under-exposed) and ``<scene>/<scene>_B.*`` (over-exposed).
"""

import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusionjax import metrics
from shared_data import SHARED_DATA

_MEFB = SHARED_DATA / "mefb"
# A 512 x 339 scene with a wide dynamic range (MEFB images average 0.44 Mpx).
_SCENE = "Arno"


def _luma(path: Path) -> np.ndarray:
  """BT.601 Y of an RGB file, float levels 0..255."""
  rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
  return rgb @ np.array([0.299, 0.587, 0.114])


def _source(scene: Path, tag: str) -> Path:
  # MEFB spells the suffix in either case (e.g. Lighthouse_a.png).
  matches = [p for p in scene.iterdir() if p.stem.lower().endswith(tag)]
  if len(matches) != 1:
    pytest.fail(f"expected one *{tag} file in {scene}, found {matches}")
  return matches[0]


@pytest.fixture(scope="module")
def mefb_pair():
  scene = _MEFB / _SCENE
  if not scene.is_dir():
    pytest.skip(f"MEFB scene {scene} not available")
  return _luma(_source(scene, "_a")), _luma(_source(scene, "_b"))


@pytest.mark.parametrize("convention", metrics.CONVENTIONS)
def test_scores_real_mefb_pair_with_all_metrics(mefb_pair, convention):
  under, over = mefb_pair
  fused = (under + over) / 2
  start = time.perf_counter()
  scores = metrics.compute_metrics(fused, [under, over], convention=convention)
  elapsed = time.perf_counter() - start
  print(f"{_SCENE} {under.shape}, {convention}: all metrics in {elapsed:.2f} s")
  assert list(scores) == list(metrics.METRIC_NAMES)
  assert scores["PSNR"].value is None
  for name, result in scores.items():
    if name != "PSNR":
      assert result.defined and math.isfinite(result.value), (name, result)
  assert 0 < scores["EN"].value <= 8
  assert 0 < scores["SSIM"].value < 1 and 0 < scores["MS-SSIM"].value < 1
  assert 0 < scores["MEF-SSIM"].value < 1 and 0 < scores["Qabf"].value < 1
  assert 0 < scores["VIF"].value < 2
  if convention == "paper":
    assert scores["MI"].value == pytest.approx(2 * scores["EN"].value)
  # The mean of two exposures keeps their structure but averages away contrast.
  assert scores["SD"].value <= (np.std(under) + np.std(over)) / 2 + 1e-9


def test_real_pair_summary(mefb_pair):
  under, over = mefb_pair
  # The pixel-wise maximum stands in for a second, different fusion result.
  results = [
    metrics.compute_metrics(f, [under, over]) for f in ((under + over) / 2, np.maximum(under, over))
  ]
  summary = metrics.summarize(results)
  assert summary["PSNR"] == {"mean": None, "std": None, "n": 0, "missing": 2}
  assert summary["EN"]["n"] == 2
  assert summary["EN"]["mean"] == pytest.approx(
    (results[0]["EN"].value + results[1]["EN"].value) / 2
  )
