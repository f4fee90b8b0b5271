"""evaluate.py and fusionjax.evaluation on real benchmark pairs with tiny random checkpoints.

Every run uses two pairs per set, downscaled to at most 160 px (so MS-SSIM, defined from 161 px, is
reported missing with its reason) and fused in 96 x 96 tiles, one compiled shape for all sets.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fusionjax import color
from fusionjax import data
from fusionjax import evaluation
from fusionjax import imageio
from fusionjax import inference

from test_inference import DATA_DIR, TINY_EFRUFN, TINY_FRUFN, save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
QUICK = {"max_pairs": 2, "max_side": 160}
TILES = {"tile_size": 96, "tile_overlap": 32}
METRICS = (
  "EN",
  "MI",
  "SCD",
  "MS-SSIM",
  "MEF-SSIM",
  "PSNR",
  "SSIM",
  "Qabf",
  "VIF",
  "SD",
  "SF",
  "AG",
)

pytestmark = pytest.mark.skipif(
  not DATA_DIR.is_dir(), reason=f"benchmark images not found at {DATA_DIR}"
)


@pytest.fixture(scope="module")
def checkpoints_dir(tmp_path_factory):
  """Stage checkpoints as train.py leaves them: mfif, meif (EFRUFN + ColorNet, teacher mfif), ivf."""
  root = tmp_path_factory.mktemp("runs")
  seed = int(np.random.default_rng().integers(2**31))
  print(f"seed={seed}")
  mfif = save_tiny_checkpoint(root / "mfif", task="mfif", seed=seed, step=10)
  from fusionjax import checkpoints

  mfif_meta = checkpoints.read_metadata(mfif)
  meif = save_tiny_checkpoint(
    root / "meif",
    task="meif",
    config=TINY_EFRUFN,
    seed=seed + 1,
    colornet=True,
    step=20,
    teacher={"path": str(mfif), "step": 10, "task": "mfif", "metadata": mfif_meta},
  )
  meif_meta = checkpoints.read_metadata(meif)
  ivf = save_tiny_checkpoint(
    root / "ivf",
    task="ivf",
    seed=seed + 2,
    step=30,
    teacher={"path": str(meif), "step": 20, "task": "meif", "metadata": meif_meta},
  )
  return {"mfif": mfif, "meif": meif, "ivf": ivf}


@pytest.fixture(scope="module")
def tno_run(checkpoints_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("tno_run")
  summary = evaluation.evaluate_checkpoint(
    checkpoints_dir["ivf"], "tno", out, data_dir=str(DATA_DIR), **QUICK, **TILES
  )
  return out, summary


def _table_rows(markdown: str) -> list[list[str]]:
  """The rows of every Markdown table, checking each table has one column count and a separator."""
  tables, current = [], []
  for line in markdown.splitlines() + [""]:
    if line.startswith("|"):
      assert line.endswith("|"), line
      current.append([c.strip() for c in line.strip("|").split("|")])
    elif current:
      tables.append(current)
      current = []
  rows = []
  for table in tables:
    assert len({len(r) for r in table}) == 1, table
    assert all(set(c) <= set("-:") and c for c in table[1]), table[1]
    rows += [table[0]] + table[2:]
  return rows


def _check_summary(out: Path, summary: dict, dataset: str, pairs: int):
  written = json.loads((out / "summary.json").read_text())
  assert written["format"] == evaluation.SUMMARY_FORMAT
  for key in (
    "convention",
    "dataset",
    "split",
    "method",
    "metrics",
    "missing",
    "model",
    "checkpoint",
  ):
    assert key in written, key
  assert (
    written["dataset"] == dataset
    and written["num_pairs"] == pairs
    and written["convention"] == "clean"
  )
  # Every metric is either averaged or reported missing with a reason; names exactly as specified.
  assert set(written["metrics"]) | set(written["missing"]) == set(METRICS)
  assert set(written["metrics"]) <= set(METRICS) and set(written["missing"]) <= set(METRICS)
  for name, entry in written["metrics"].items():
    assert (
      set(entry) == {"mean", "std", "n"}
      and 1 <= entry["n"] <= pairs
      and math.isfinite(entry["mean"])
    )
  assert all(isinstance(reason, str) and reason for reason in written["missing"].values())
  # 160 px images: MS-SSIM needs 161 px; no reference: PSNR is undefined.
  assert "MS-SSIM" in written["missing"] and "PSNR" in written["missing"]
  rows = evaluation.read_metrics_csv(out / "metrics.csv")
  assert len(rows) == pairs and list(rows[0])[: 3 + len(METRICS)] == [
    "name",
    "height",
    "width",
    *METRICS,
  ]
  assert all(r["MS-SSIM"] == "" for r in rows) and all(float(r["EN"]) > 0 for r in rows)
  table = _table_rows((out / "summary.md").read_text())
  assert table[0] == ["Metric", "Mean ± std", "n"]
  assert [r[0] for r in table[1 : 1 + len(METRICS)]] == list(METRICS)
  assert written["metrics"] == summary["metrics"] and written["missing"] == summary["missing"]
  return written, rows


@pytest.mark.parametrize(
  "dataset,stage,colour",
  [
    ("tno", "ivf", False),
    ("lytro", "mfif", True),
    pytest.param("mefb", "meif", True, marks=pytest.mark.slow),  # compiles EFRUFN and ColorNet
    ("harvard_mri_ct", "meif", False),
  ],
)
def test_evaluate_checkpoint_per_task(checkpoints_dir, tmp_path, dataset, stage, colour):
  summary = evaluation.evaluate_checkpoint(
    checkpoints_dir[stage], dataset, tmp_path, data_dir=str(DATA_DIR), **QUICK, **TILES
  )
  written, rows = _check_summary(tmp_path, summary, dataset, 2)
  pairs = data.list_pairs(dataset, DATA_DIR)[:2]
  for pair, row in zip(pairs, rows):
    fused = imageio.load_image(tmp_path / "fused" / f"{pair.name}.png")
    assert row["name"] == pair.name and fused.shape[:2] == (int(row["height"]), int(row["width"]))
    assert max(fused.shape[:2]) <= 160 and fused.shape[-1] == (3 if colour else 1)
    assert int(row["tiles"]) > 1  # larger than a tile: fused tile by tile
  model = written["model"]
  assert (
    model["params"] > 0
    and model["flops"] > 0
    and model["latency_s"] > 0
    and model["latency_n"] >= 1
  )
  checkpoint = written["checkpoint"]
  lineage = [(s["task"], s["step"]) for s in checkpoint["lineage"]]
  assert checkpoint["task"] == stage and lineage[0] == (stage, checkpoint["step"])
  if stage == "ivf":
    assert lineage == [("ivf", 30), ("meif", 20), ("mfif", 10)]
  if stage == "meif":
    # EFRUFN: solver statistics per image, ColorNet parameters counted in the total.
    assert (
      written["solver"]["n"] == 2
      and 1 <= written["solver"]["mean_steps"] <= TINY_EFRUFN["max_iter"]
    )
    assert (
      model["colornet_params"] > 0
      and model["params"] == model["network_params"] + model["colornet_params"]
    )
    # FLOPs count the solver loop for the mean number of iterations it took (XLA alone counts one).
    assert (
      model["flops_while_loops"] and model["flops_while_trips"] == written["solver"]["mean_steps"]
    )
    assert model["flops"] >= model["flops_xla"]


def test_sequence_rule_of_three_sources(checkpoints_dir, tmp_path):
  summaries = {}
  for rule in ("chain", "adjacent"):
    summaries[rule] = evaluation.evaluate_checkpoint(
      checkpoints_dir["mfif"],
      "lytro_triple",
      tmp_path / rule,
      data_dir=str(DATA_DIR),
      max_pairs=1,
      max_side=96,
      sequence=rule,
      measure_flops=False,
    )
    assert summaries[rule]["options"]["sequence"] == rule
  pair = data.list_pairs("lytro_triple", DATA_DIR)[0]
  fused = {r: imageio.load_image(tmp_path / r / "fused" / f"{pair.name}.png") for r in summaries}
  assert np.abs(fused["chain"] - fused["adjacent"]).max() > 1 / 255
  default = evaluation.evaluate_checkpoint(
    checkpoints_dir["mfif"],
    "lytro_triple",
    tmp_path / "default",
    data_dir=str(DATA_DIR),
    max_pairs=1,
    max_side=96,
    measure_flops=False,
  )
  assert default["options"]["sequence"] == "chain"


def test_fused_dir_scoring_reproduces_the_run(tno_run, tmp_path):
  out, summary = tno_run
  scored = evaluation.evaluate_fused_dir(
    out / "fused", "tno", tmp_path / "scored", data_dir=str(DATA_DIR), **QUICK
  )
  assert scored["metrics"] == summary["metrics"] and scored["missing"] == summary["missing"]
  assert (
    scored["model"] is None
    and scored["checkpoint"] is None
    and scored["fused_dir"] == str((out / "fused").resolve())
  )
  # A missing fused file is an error naming it, unless allowed.
  (tmp_path / "partial").mkdir()
  first = sorted((out / "fused").iterdir())[0]
  (tmp_path / "partial" / first.name).write_bytes(first.read_bytes())
  with pytest.raises(
    FileNotFoundError, match=r"1 of 2 pairs have no fused image.*02.*--allow_missing"
  ):
    evaluation.evaluate_fused_dir(
      tmp_path / "partial", "tno", tmp_path / "x", data_dir=str(DATA_DIR), **QUICK
    )
  partial = evaluation.evaluate_fused_dir(
    tmp_path / "partial", "tno", tmp_path / "y", data_dir=str(DATA_DIR), allow_missing=True, **QUICK
  )
  assert partial["num_pairs"] == 1 and partial["skipped_pairs"] == ["02"]
  # A fused image of the wrong size is an error naming both sizes.
  wrong = tmp_path / "wrong"
  wrong.mkdir()
  for path in sorted((out / "fused").iterdir()):
    imageio.save_image(wrong / path.name, imageio.load_image(path)[:50, :60])
  with pytest.raises(ValueError, match=r"50x60 \(HxW\)"):
    evaluation.evaluate_fused_dir(wrong, "tno", tmp_path / "z", data_dir=str(DATA_DIR), **QUICK)


def test_paper_convention_is_passed_through(tno_run, tmp_path):
  out, _ = tno_run
  paper = evaluation.evaluate_fused_dir(
    out / "fused",
    "tno",
    tmp_path,
    data_dir=str(DATA_DIR),
    convention="paper",
    metrics=["EN", "MI"],
    **QUICK,
  )
  assert paper["convention"] == "paper" and set(paper["metrics"]) == {"EN", "MI"}
  # The paper's MATLAB package gives MI = 2 EN (DESIGN §6).
  assert paper["metrics"]["MI"]["mean"] == pytest.approx(2 * paper["metrics"]["EN"]["mean"])


def test_baselines(tmp_path):
  summaries = {}
  for method in ("average", "max", "mertens"):
    summaries[method] = evaluation.evaluate_baseline(
      method, "lytro", tmp_path / method, data_dir=str(DATA_DIR), **QUICK
    )
    _check_summary(tmp_path / method, summaries[method], "lytro", 2)
    assert summaries[method]["model"]["params"] == 0 and summaries[method]["model"]["latency_s"] > 0
  pair = data.list_pairs("lytro", DATA_DIR)[0]
  sources = [evaluation.luma_levels(s) for s in _downscaled_sources(pair, 160)]
  average = evaluation.luma_levels(
    imageio.load_image(tmp_path / "average" / "fused" / f"{pair.name}.png")
  )
  maximum = evaluation.luma_levels(
    imageio.load_image(tmp_path / "max" / "fused" / f"{pair.name}.png")
  )
  # Luma within the rounding of 8-bit RGB (and of the chroma rule's gamut clipping in rare pixels).
  assert np.mean(np.abs(average.astype(float) - np.mean(sources, axis=0))) < 1.0
  assert np.mean(np.abs(maximum.astype(float) - np.max(sources, axis=0))) < 1.0
  assert summaries["max"]["metrics"]["EN"]["mean"] != summaries["average"]["metrics"]["EN"]["mean"]
  with pytest.raises(ValueError, match="Unknown baseline"):
    evaluation.evaluate_baseline("median", "lytro", tmp_path / "m", data_dir=str(DATA_DIR))


def test_mertens_weights_contrast_and_exposure():
  from fusionjax.evaluation import baselines

  rng = np.random.default_rng()
  texture = (0.3 + 0.4 * rng.random((61, 83, 1))).astype(np.float32)
  # Equal sources: the pyramid blend reconstructs the image exactly.
  np.testing.assert_allclose(baselines.mertens_fusion([texture, texture]), texture, atol=1e-6)
  # A flat black frame has no contrast and no exposure: the textured frame wins everywhere.
  black = np.zeros_like(texture)
  fused = baselines.mertens_fusion([black, texture])
  assert np.abs(fused - texture).mean() < 0.01
  assert np.abs(baselines.average_fusion([black, texture]) - texture).mean() > 0.2
  # Any number of sources, in any order.
  bright = np.clip(texture + 0.5, 0, 1)
  three = baselines.mertens_fusion([black, texture, bright])
  np.testing.assert_allclose(three, baselines.mertens_fusion([bright, black, texture]), atol=1e-6)
  assert three.shape == texture.shape and 0.0 <= three.min() and three.max() <= 1.0


def _downscaled_sources(pair, max_side):
  from fusionjax.evaluation import pairs

  sources = data.load_pair(pair).sources
  size = pairs.downscaled_size(*sources[0].shape[:2], max_side)
  return [pairs.resize_to(s, *size) for s in sources]


def test_reference_pairs_score_psnr_against_the_reference(tmp_path):
  summary = evaluation.evaluate_baseline(
    "average",
    "sice",
    tmp_path,
    data_dir=str(DATA_DIR),
    max_pairs=1,
    max_side=200,
    metrics=["PSNR", "SSIM", "MEF-SSIM"],
  )
  assert (
    summary["split"] == "test" and summary["metrics"]["PSNR"]["n"] == 1 and not summary["missing"]
  )
  assert 5 < summary["metrics"]["PSNR"]["mean"] < 60


def test_folders_dataset(tmp_path):
  vis, ir = tmp_path / "vis", tmp_path / "ir"
  for pair in data.list_pairs("roadscene", DATA_DIR)[:2]:
    for folder, source in zip((vis, ir), _downscaled_sources(pair, 120)):
      imageio.save_image(folder / f"{pair.name}.png", source)
  summary = evaluation.run_evaluation(
    evaluation.EvalOptions(
      method="average",
      dataset="folders",
      dirs=[str(vis), str(ir)],
      task="ivf",
      out=str(tmp_path / "out"),
      metrics=["EN", "SD"],
    )
  )
  assert summary["dataset"] == "folders" and summary["task"] == "ivf" and summary["num_pairs"] == 2
  names = sorted(p.stem for p in (tmp_path / "out" / "fused").iterdir())
  assert names == sorted(p.stem for p in vis.iterdir())


def test_compare_builds_one_side_by_side_table(tno_run, tmp_path):
  out, _ = tno_run
  evaluation.evaluate_baseline(
    "average", "tno", tmp_path / "average", data_dir=str(DATA_DIR), **QUICK
  )
  evaluation.evaluate_fused_dir(
    out / "fused",
    "tno",
    tmp_path / "paper",
    data_dir=str(DATA_DIR),
    convention="paper",
    name="EFRUFN-paper",
    **QUICK,
  )
  text = evaluation.run_evaluation(
    evaluation.EvalOptions(
      compare=[str(out), str(tmp_path / "average" / "summary.json"), str(tmp_path / "paper")],
      out=str(tmp_path / "table.md"),
    )
  )
  assert (tmp_path / "table.md").read_text() == text
  # Clean and paper conventions never share a table.
  assert text.count("## tno") == 2 and "`clean` metrics" in text and "`paper` metrics" in text
  rows = _table_rows(text)
  header = rows[0]
  assert header[:2] == ["Method", "n"] and header[-2:] == ["Params", "Latency (s)"]
  assert [h for h in header[2:-2]] == list(METRICS)
  methods = [r[0] for r in rows if r[0] not in ("Method",)]
  assert methods == ["FRUFN (ivf)", "average", "EFRUFN-paper"]
  # The best mean of a column is bold, and only there.
  clean_rows = rows[1:3]
  en = [r[2] for r in clean_rows]
  assert sum(cell.startswith("**") for cell in en) == 1
  with pytest.raises(FileNotFoundError, match="summary.json"):
    evaluation.compare_summaries([tmp_path / "nothing"])


def test_option_errors_are_clear(tmp_path, checkpoints_dir):
  with pytest.raises(ValueError, match="exactly one of --ckpt"):
    evaluation.run_evaluation(evaluation.EvalOptions(dataset="tno", out=str(tmp_path)))
  with pytest.raises(ValueError, match="exactly one of --ckpt"):
    evaluation.run_evaluation(
      evaluation.EvalOptions(method="max", ckpt="x", dataset="tno", out=str(tmp_path))
    )
  with pytest.raises(ValueError, match=r"ssim \(did you mean SSIM\?\)"):
    evaluation.evaluate_baseline("max", "tno", tmp_path, data_dir=str(DATA_DIR), metrics=["ssim"])
  with pytest.raises(ValueError, match="Unknown dataset 'nope'"):
    evaluation.evaluate_baseline("max", "nope", tmp_path, data_dir=str(DATA_DIR))
  with pytest.raises(ValueError, match="convention"):
    evaluation.evaluate_baseline(
      "max", "tno", tmp_path, data_dir=str(DATA_DIR), convention="matlab"
    )
  with pytest.raises(ValueError, match="--dirs"):
    evaluation.run_evaluation(
      evaluation.EvalOptions(method="max", dataset="folders", out=str(tmp_path))
    )
  with pytest.raises(FileNotFoundError, match="train.py"):
    evaluation.evaluate_checkpoint(tmp_path / "no_ckpt", "tno", tmp_path, data_dir=str(DATA_DIR))


def test_evaluate_script(tmp_path):
  out = tmp_path / "out"
  result = subprocess.run(
    [
      sys.executable,
      str(REPO / "evaluate.py"),
      "--method=max",
      "--dataset=harvard_mri_spect",
      f"--data_dir={DATA_DIR}",
      f"--out={out}",
      "--max_pairs=2",
      "--metrics=EN,MI,Qabf",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr
  summary = json.loads((out / "summary.json").read_text())
  assert (
    summary["method"] == "max"
    and summary["num_pairs"] == 2
    and set(summary["metrics"]) == {"EN", "MI", "Qabf"}
  )
  assert "| EN |" in result.stdout
  fused = sorted((out / "fused").iterdir())
  assert len(fused) == 2 and imageio.load_image(fused[0]).shape[-1] == 3  # SPECT is colour
