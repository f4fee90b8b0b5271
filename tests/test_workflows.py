"""The everyday workflows: fusing folders, scoring published results, comparing, one-image metrics, export.

Folder fusion runs a tiny random checkpoint on real sample pairs (cropped small); the padding bound
and the export run the shipped stages on a shipped sample pair; scoring and comparing use the
per-pixel baselines on a few benchmark pairs downscaled to 64 px.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusionjax import checkpoints
from fusionjax import cli
from fusionjax import evaluation
from fusionjax import imageio
from fusionjax import inference
from fusionjax import stages

from shared_data import SHARED_DATA
from test_inference import TINY_FRUFN, save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "fusionjax" / "data" / "samples"
ROADSCENE = SAMPLES / "roadscene"
needs_data = pytest.mark.skipif(
  not (SHARED_DATA / "lytro").is_dir(), reason=f"benchmark images not at {SHARED_DATA}"
)
QUICK = {"max_pairs": 3, "max_side": 64, "metrics": ["EN", "SD", "SF", "Qabf"]}


def digest(folder: Path) -> dict[str, str]:
  return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def run_cli(argv, capsys):
  code = cli.main([str(a) for a in argv])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


# --- fusionjax fuse --dirs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
  seed = int(np.random.default_rng().integers(2**31))
  print(f"seed={seed}")
  return save_tiny_checkpoint(
    tmp_path_factory.mktemp("ckpt") / "ivf", task="ivf", config=TINY_FRUFN, seed=seed
  )


def _sample_folders(root: Path) -> tuple[Path, Path]:
  """The three RoadScene sample pairs cropped to 40-56 px (two share a 64-px bucket), plus a corrupt file
  and a size mismatch; suffixes and letter case differ between the folders."""
  vis, ir = root / "vis", root / "ir"
  vis.mkdir()
  ir.mkdir()
  crops = {"FLIR_06995": (48, 56), "FLIR_09376": (44, 60), "FLIR_09616": (40, 72)}
  for name, (h, w) in crops.items():
    Image.open(ROADSCENE / "crop_LR_visible" / f"{name}.jpg").crop((0, 0, w, h)).save(
      vis / f"{name}.png"
    )
    Image.open(ROADSCENE / "cropinfrared" / f"{name}.jpg").crop((0, 0, w, h)).save(
      ir / f"{name.lower()}.JPG", quality=95
    )
  Image.open(ROADSCENE / "crop_LR_visible" / "FLIR_06995.jpg").crop((0, 0, 50, 40)).save(
    vis / "broken.png"
  )
  (ir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
  Image.open(ROADSCENE / "crop_LR_visible" / "FLIR_09376.jpg").crop((0, 0, 50, 40)).save(
    vis / "mismatch.png"
  )
  Image.open(ROADSCENE / "cropinfrared" / "FLIR_09376.jpg").crop((0, 0, 50, 36)).save(
    ir / "mismatch.png"
  )
  (ir / "notes.txt").write_text("not an image: ignored")
  return vis, ir


def test_fuse_folders_goes_past_failures_and_a_rerun_redoes_nothing(tiny_ckpt, tmp_path, capsys):
  vis, ir = _sample_folders(tmp_path)
  out = tmp_path / "fused"
  argv = ["fuse", "--dirs", vis, ir, "-o", out, "--ckpt", tiny_ckpt]
  code, _, err = run_cli(argv, capsys)
  assert code == 1, err
  lines = [line for line in err.splitlines() if line.strip()]
  assert "5/5" in err  # the progress bar: pairs done / total
  report = lines[-3:]
  assert report[0].startswith(f"Fused 3 of 5 pairs into {out} in ") and report[0].endswith(
    "2 failed:"
  )
  assert "input shapes compiled" in report[0] or "input shape compiled" in report[0]
  assert report[1].startswith("  broken: Cannot read image") and str(ir / "broken.png") in report[1]
  assert (
    report[2].startswith("  mismatch: All sources must have the same size")
    and "36x50 (HxW)" in report[2]
  )
  assert sorted(p.name for p in out.iterdir()) == [
    "FLIR_06995.png",
    "FLIR_09376.png",
    "FLIR_09616.png",
  ]
  # Each output is the fusion of its pair with the default padding to a multiple of 64.
  model = checkpoints.load_fusion_model(tiny_ckpt)
  sources = [imageio.load_image(vis / "FLIR_09616.png"), imageio.load_image(ir / "flir_09616.JPG")]
  expected = inference.fuse_images(model, sources, pad_multiple=64)
  np.testing.assert_array_equal(
    imageio.to_uint8(imageio.load_image(out / "FLIR_09616.png")), imageio.to_uint8(expected)
  )
  before = digest(out)
  # A rerun redoes nothing: every output is kept as it is, the failures are listed again.
  code, _, err = run_cli(argv, capsys)
  report = [line for line in err.splitlines() if line.strip()][-3:]
  assert (
    code == 1
    and report[0].startswith("Fused 0 of 5 pairs")
    and "(0 input shapes compiled)" in report[0]
  )
  assert "skipped 3 already fused (--overwrite redoes them)" in report[0]
  assert digest(out) == before
  # Once the bad files are fixed, only those pairs are fused; --overwrite redoes all, with the same result.
  (ir / "broken.png").unlink()
  (vis / "mismatch.png").unlink()
  shutil.copy(vis / "broken.png", ir / "broken.png")
  code, _, err = run_cli(argv, capsys)
  assert (
    code == 1
    and "Fused 1 of 5 pairs" in err
    and "mismatch: no file named mismatch.* in " + str(vis) in err
  )
  code, _, err = run_cli(argv + ["--overwrite", "--no-progress"], capsys)
  assert code == 1 and "Fused 4 of 5 pairs" in err and "skipped" not in err and "5/5" not in err
  assert {k: v for k, v in digest(out).items() if k in before} == before
  assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_fuse_folder_errors_are_one_line(tiny_ckpt, tmp_path, capsys):
  vis, ir = _sample_folders(tmp_path)
  before = {**digest(vis), **digest(ir)}
  cases = [
    (["--dirs", vis, ir, "-o", vis, "--ckpt", tiny_ckpt], f"is the source folder {vis}"),
    (
      ["--dirs", vis, tmp_path / "nope", "-o", tmp_path / "o", "--ckpt", tiny_ckpt],
      "does not exist",
    ),
    (["--dirs", vis, "-o", tmp_path / "o", "--ckpt", tiny_ckpt], "two or more source folders"),
    (["--dirs", vis, ir, "-o", vis / "FLIR_06995.png", "--ckpt", tiny_ckpt], "is a file"),
    (
      ["--dirs", vis, ir, "-o", tmp_path / "out.png", "--ckpt", tiny_ckpt],
      "looks like an image file",
    ),
    (["--dirs", vis, ir, "-o", tmp_path / "o"], "--task"),
    (
      ["--dirs", vis, ir, "-o", tmp_path / "o", "--ckpt", tiny_ckpt, "--pad-multiple", "0"],
      "positive",
    ),
    (["--dataset", "nope", "-o", tmp_path / "o", "--ckpt", tiny_ckpt], "unknown --dataset 'nope'"),
    (
      [vis / "FLIR_06995.png", "--dirs", vis, ir, "-o", tmp_path / "o", "--ckpt", tiny_ckpt],
      "not both",
    ),
  ]
  for argv, message in cases:
    code, _, err = run_cli(["fuse", *argv], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert (
      code == 2
      and len(lines) == 1
      and lines[0].startswith("fusionjax fuse: error:")
      and message in lines[0]
    ), err
  assert {**digest(vis), **digest(ir)} == before and not (tmp_path / "o").exists()


def test_fuse_a_dataset_reader(tiny_ckpt, tmp_path, capsys):
  code, _, err = run_cli(
    [
      "fuse",
      "--dataset",
      "harvard_mri_ct",
      "--data_dir",
      SAMPLES,
      "-o",
      tmp_path / "out",
      "--ckpt",
      tiny_ckpt,
      "--pad-multiple",
      "1",
    ],
    capsys,
  )
  assert code == 0, err
  assert "Fused 1 of 1 pairs" in err and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
    "25.png"
  ]
  model = checkpoints.load_fusion_model(tiny_ckpt)
  folder = SAMPLES / "harvard" / "MRI_CT"
  expected = inference.fuse_images(
    model,
    [imageio.load_image(folder / "MRI" / "25.png"), imageio.load_image(folder / "CT" / "25.png")],
  )  # exact size
  np.testing.assert_array_equal(
    imageio.to_uint8(imageio.load_image(tmp_path / "out" / "25.png")), imageio.to_uint8(expected)
  )


def test_pad_multiple_changes_the_shipped_fusion_only_slightly():
  model = stages.load_model(None, task="ivf")
  sources = [
    imageio.load_image(SAMPLES / "tno" / "vi" / "37.png"),
    imageio.load_image(SAMPLES / "tno" / "ir" / "37.png"),
  ]
  exact = imageio.to_uint8(inference.fuse_images(model, sources)).astype(int)[
    ..., 0
  ]  # 247 x 359 -> 248 x 360
  padded = imageio.to_uint8(inference.fuse_images(model, sources, pad_multiple=64)).astype(int)[
    ..., 0
  ]  # 256 x 384
  difference = np.abs(exact - padded)
  assert difference.max() > 0  # the padding does reach the result
  assert difference.mean() < 1.0  # 8-bit levels, over the whole image
  assert (
    difference[:-16, :-16].max() <= 4
  )  # away from the bottom/right edges, where the extra pixels sit


# --- fusionjax metrics ----------------------------------------------------------------------------------


def test_metrics_command_prints_every_metric_and_the_undefined_ones(tmp_path, capsys):
  vis, ir = SAMPLES / "tno" / "vi" / "37.png", SAMPLES / "tno" / "ir" / "37.png"
  fused = tmp_path / "fused.png"
  sources = [imageio.load_image(vis), imageio.load_image(ir)]
  imageio.save_image(fused, evaluation.max_fusion(sources))
  expected = evaluation.score_image(imageio.load_image(fused), sources)
  code, out, _ = run_cli(["metrics", fused, vis, ir], capsys)
  assert code == 0
  rows = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()[1:]}
  assert list(rows) == list(evaluation.METRIC_ORDER)
  for name, result in expected.items():
    if result.value is None:
      assert rows[name] == f"undefined: {result.reason}"
    else:
      assert float(rows[name]) == pytest.approx(result.value, abs=5e-5)
  assert rows["PSNR"].startswith("undefined:") and "reference" in rows["PSNR"]
  code, out, _ = run_cli(["metrics", fused, vis, ir, "--json", "--convention", "paper"], capsys)
  scores = json.loads(out)
  assert code == 0 and scores["convention"] == "paper" and set(scores["undefined"]) == {"PSNR"}
  assert scores["metrics"]["MI"] == pytest.approx(
    2 * scores["metrics"]["EN"]
  )  # the paper's MI = 2 EN
  # A reference makes PSNR defined: SICE's sample scene.
  sice = SAMPLES / "sice16" / "train"
  under, over, reference = (
    imageio.load_image(sice / k / "10.jpg") for k in ("under", "over", "reference")
  )
  imageio.save_image(tmp_path / "sice.png", evaluation.average_fusion([under, over]))
  code, out, _ = run_cli(
    [
      "metrics",
      tmp_path / "sice.png",
      sice / "under" / "10.jpg",
      sice / "over" / "10.jpg",
      "--reference",
      sice / "reference" / "10.jpg",
      "--json",
    ],
    capsys,
  )
  psnr = evaluation.score_image(
    imageio.load_image(tmp_path / "sice.png"), [under, over], reference
  )["PSNR"].value
  assert code == 0 and json.loads(out)["metrics"]["PSNR"] == pytest.approx(psnr)
  # A fused image of another size is one line, exit 2.
  imageio.save_image(tmp_path / "small.png", imageio.load_image(fused)[:100])
  code, _, err = run_cli(["metrics", tmp_path / "small.png", vis, ir], capsys)
  assert (
    code == 2
    and err.count("\n") == 1
    and err.startswith("fusionjax metrics: error: The fused image is 100x359")
  )


# --- evaluate.py --fused_pattern, --methods_dir, --compare ---------------------------------------------------


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
  """The average and max baselines on the first 3 Lytro pairs at <= 64 px (their fused PNGs and summaries)."""
  if not (SHARED_DATA / "lytro").is_dir():
    pytest.skip(f"benchmark images not at {SHARED_DATA}")
  root = tmp_path_factory.mktemp("baselines")
  return {
    m: (
      root / m,
      evaluation.evaluate_baseline(m, "lytro", root / m, data_dir=str(SHARED_DATA), **QUICK),
    )
    for m in ("average", "max")
  }


def _publish(baselines, folder: Path, method: str, name) -> None:
  """Copies a baseline's fused images under the names a published release would use."""
  folder.mkdir(parents=True, exist_ok=True)
  for k, path in enumerate(sorted((baselines[method][0] / "fused").iterdir())):
    shutil.copy(path, folder / name(k + 1, path.stem))


@needs_data
def test_fused_pattern_matches_published_file_names(baselines, tmp_path):
  expected = baselines["average"][1]["metrics"]
  layouts = {
    "lytro_{index:02d}_IFCNN.*": lambda i, n: f"lytro_{i:02d}_IFCNN.png",
    "{index}.bmp": lambda i, n: f"{i}.BMP",
    "{name}_SESF.*": lambda i, n: f"{n}_sesf.png",
  }
  for k, (pattern, name) in enumerate(layouts.items()):
    folder = tmp_path / f"published{k}"
    _publish(baselines, folder, "average", name)
    if pattern == "{index}.bmp":
      for path in folder.iterdir():  # as distributed: the same images as BMP files
        Image.open(path).save(path.with_suffix(".bmp.tmp"), format="BMP")
        path.unlink()
        path.with_suffix(".bmp.tmp").rename(path)
    (folder / "README.txt").write_text("not an image")
    scored = evaluation.run_evaluation(
      evaluation.EvalOptions(
        fused_dir=str(folder),
        fused_pattern=pattern,
        dataset="lytro",
        data_dir=str(SHARED_DATA),
        out=str(tmp_path / f"out{k}"),
        **QUICK,
      )
    )
    assert scored["metrics"] == expected, pattern  # lossless copies score exactly as the originals
    assert scored["options"]["fused_pattern"] == pattern
  # Several files for one pair, no pair field, an unknown field, a pattern that matches nothing.
  folder = tmp_path / "published0"
  shutil.copy(folder / "lytro_01_IFCNN.png", folder / "lytro_01_IFCNN.tif")
  errors = [
    ("lytro_{index:02d}_IFCNN.*", ValueError, "matches 2 files in .* for pair 'lytro-01'"),
    ("lytro_IFCNN.*", ValueError, "names no pair"),
    ("{nam}_IFCNN.*", ValueError, r"has the field \{nam\}"),
    (
      "{name}_IFCNN.png",
      FileNotFoundError,
      r"3 of 3 pairs have no fused image matching .*lytro-01_IFCNN.png",
    ),
  ]
  for pattern, error, message in errors:
    with pytest.raises(error, match=message):
      evaluation.evaluate_fused_dir(
        folder, "lytro", tmp_path / "bad", data_dir=str(SHARED_DATA), fused_pattern=pattern, **QUICK
      )
  assert not (tmp_path / "bad").exists()


@needs_data
def test_methods_dir_scores_each_method_once_and_compares_them(baselines, tmp_path):
  root = tmp_path / "published"
  _publish(baselines, root / "AVG", "average", lambda i, n: f"lytro_{i:02d}.png")
  _publish(baselines, root / "MAX", "max", lambda i, n: f"lytro_{i:02d}.png")
  out = tmp_path / "methods"
  options = evaluation.EvalOptions(
    methods_dir=str(root),
    fused_pattern="lytro_{index:02d}.*",
    dataset="lytro",
    data_dir=str(SHARED_DATA),
    out=str(out),
    progress=False,
    **QUICK,
  )
  run = evaluation.run_evaluation(options)
  assert run.scored == ["AVG", "MAX"] and run.reused == [] and run.failed == []
  for method, baseline in (("AVG", "average"), ("MAX", "max")):
    summary = evaluation.read_summary(out / method)
    assert summary["method"] == method and summary["metrics"] == baselines[baseline][1]["metrics"]
  assert sorted(p.name for p in out.iterdir()) == (
    ["AVG", "MAX", "compare.md"] + (["compare.png"] if _has_matplotlib() else [])
  )
  kept = {m: (out / m / "summary.json").read_bytes() for m in ("AVG", "MAX")}
  # A third method: only it is scored; the others are reused as they are.
  _publish(baselines, root / "AVG-again", "average", lambda i, n: f"LYTRO_{i:02d}.png")
  (root / "MISSING").mkdir()
  shutil.copy(root / "AVG" / "lytro_01.png", root / "MISSING" / "lytro_01.png")
  run = evaluation.run_evaluation(options)
  assert run.scored == ["AVG-again"] and run.reused == ["AVG", "MAX"]
  assert run.failed[0][0] == "MISSING" and "2 of 3 pairs have no fused image" in run.failed[0][1]
  assert {m: (out / m / "summary.json").read_bytes() for m in ("AVG", "MAX")} == kept
  assert (
    "- MISSING: 2 of 3 pairs" in run.text
    and "2 scored" not in run.text
    and "1 scored, 2 reused" in run.text
  )
  # Other inputs are refused before any work, unless --overwrite.
  with pytest.raises(
    ValueError, match=r"holds results of other inputs for 3 method\(s\).*convention.*--overwrite"
  ):
    evaluation.run_evaluation(evaluation.EvalOptions(**{**options.__dict__, "convention": "paper"}))
  assert {m: (out / m / "summary.json").read_bytes() for m in ("AVG", "MAX")} == kept
  # The one-folder layout: the method is the suffix of each file name.
  flat = tmp_path / "flat"
  _publish(baselines, flat, "average", lambda i, n: f"{n}_AVG.png")
  _publish(baselines, flat, "max", lambda i, n: f"{n}_MAX.png")
  run = evaluation.run_evaluation(
    evaluation.EvalOptions(
      methods_dir=str(flat),
      dataset="lytro",
      data_dir=str(SHARED_DATA),
      out=str(tmp_path / "flat_out"),
      progress=False,
      **QUICK,
    )
  )
  assert run.scored == ["AVG", "MAX"]
  assert (
    evaluation.read_summary(tmp_path / "flat_out" / "MAX")["metrics"]
    == baselines["max"][1]["metrics"]
  )


@needs_data
def test_methods_dir_through_evaluate_py(baselines, tmp_path):
  root = tmp_path / "published"
  _publish(baselines, root, "average", lambda i, n: f"{n}_AVG.png")
  args = [
    sys.executable,
    "evaluate.py",
    f"--methods_dir={root}",
    "--dataset=lytro",
    f"--data_dir={SHARED_DATA}",
    "--max_pairs=3",
    "--max_side=64",
    "--metrics=EN,SD",
    f"--out={tmp_path / 'out'}",
  ]
  result = subprocess.run(
    args,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert result.returncode == 0, result.stderr
  assert (
    "| AVG | 3 | 1.00 |" in result.stdout and "3/3" in result.stderr
  )  # the table and the progress bar
  os.remove(root / "lytro-02_AVG.png")  # a method that cannot be scored: exit 1, one line
  result = subprocess.run(
    args[:-1] + [f"--out={tmp_path / 'out2'}"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert result.returncode == 1
  assert result.stderr.splitlines()[-1].startswith(
    "evaluate.py: error: 1 method(s) could not be scored (AVG: 1 of 3"
  )


def _has_matplotlib() -> bool:
  try:
    import matplotlib  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
  except ImportError:
    return False
  return True


def _table(markdown: str) -> list[list[str]]:
  rows = [
    [c.strip() for c in line.strip("|").split("|")]
    for line in markdown.splitlines()
    if line.startswith("|")
  ]
  assert len({len(r) for r in rows}) == 1
  return [rows[0]] + rows[2:]


@needs_data
def test_compare_writes_ranks_and_a_figure(baselines, tmp_path, monkeypatch):
  # A third evaluation that ran a checkpoint: the same images as 'average', labelled as fusionjax's.
  ours = dict(
    baselines["average"][1],
    method="EFRUFN-test",
    checkpoint={"path": "x", "step": 1, "task": "mfif"},
  )
  evaluation.write_summary_json(ours, tmp_path / "ours" / "summary.json")
  paths = [str(baselines["max"][0]), str(baselines["average"][0]), str(tmp_path / "ours")]
  text = evaluation.run_evaluation(evaluation.EvalOptions(compare=paths, out=str(tmp_path / "cmp")))
  markdown = (tmp_path / "cmp" / "compare.md").read_text()
  assert (
    text.startswith(markdown) and "`clean` metrics" in markdown and "rank 1 is the best" in markdown
  )
  rows = _table(markdown)
  header = rows[0]
  assert header[:3] == ["Method", "n", "Mean rank"]
  assert header[3:] == [m for m in evaluation.METRIC_ORDER if m in QUICK["metrics"]]
  by_method = {r[0]: r for r in rows[1:]}
  assert set(by_method) == {"max", "average", "EFRUFN-test (fusionjax)"}
  means = {m: s["metrics"] for m, (_, s) in baselines.items()}
  for column, name in enumerate(header[3:], start=3):
    top, low = means["max"][name]["mean"], means["average"][name]["mean"]
    cells = (
      by_method["max"][column],
      by_method["average"][column],
      by_method["EFRUFN-test (fusionjax)"][column],
    )
    assert cells[1] == cells[2]  # 'average' and its copy tie: they share a rank
    if top > low:
      assert cells[0].startswith("**") and cells[0].endswith("(1)")
      assert cells[1].startswith("*") and not cells[1].startswith("**") and cells[1].endswith("(2)")
    elif low > top:
      assert cells[1].startswith("**") and cells[1].endswith("(1)")
      assert not cells[0].startswith("*") and cells[0].endswith("(3)")
  mean_ranks = [float(r[2]) for r in rows[1:]]
  assert mean_ranks == sorted(mean_ranks)
  if _has_matplotlib():
    png = tmp_path / "cmp" / "compare.png"
    assert text.rstrip().endswith(f"Wrote {tmp_path / 'cmp' / 'compare.md'} and {png}.")
    with Image.open(png) as image:
      assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 100
  monkeypatch.setitem(sys.modules, "matplotlib", None)  # as without the docs extra
  text = evaluation.compare_summaries(paths, tmp_path / "cmp_no_mpl")
  assert "compare.png was not drawn: matplotlib is not installed" in text
  assert sorted(p.name for p in (tmp_path / "cmp_no_mpl").iterdir()) == ["compare.md"]
  # The old form: a path ending in .md gets the plain side-by-side table.
  text = evaluation.compare_summaries(paths, tmp_path / "table.md")
  assert (tmp_path / "table.md").read_text() == text and _table(text)[0][:2] == ["Method", "n"]


# --- fusionjax export ------------------------------------------------------------------------------------


def test_traceable_window_mask_equals_the_numpy_one():
  import jax
  from jax import export as jax_export
  from fusionjax.models import swin

  for height, width, window, shift_h, shift_w in (
    (8, 8, 4, 2, 2),
    (16, 24, 4, 2, 0),
    (12, 8, 2, 1, 1),
    (32, 40, 8, 4, 4),
  ):
    expected = swin.shifted_window_mask(height, width, window, shift_h, shift_w)
    # Symbolic sizes (as while exporting) take the jax.numpy path; evaluate it at the concrete size.
    h, w = jax_export.symbolic_shape(f"{window}*a, {window}*b")
    spec = jax.ShapeDtypeStruct((h, w), np.float32)
    masked = jax_export.export(
      jax.jit(
        lambda x: swin.shifted_window_mask(x.shape[0], x.shape[1], window, shift_h, shift_w).astype(
          np.float32
        )
      )
    )(spec)
    traced = masked.call(np.zeros((height, width), np.float32))
    np.testing.assert_array_equal(np.asarray(traced).astype(bool), expected)


_JAX_ONLY = r'''
import sys
import jax, numpy as np
fuse = jax.export.deserialize(open(sys.argv[1], "rb").read())
for k, name in enumerate(sys.argv[2:]):
    y1, y2 = np.load(name)["y1"], np.load(name)["y2"]
    np.save(f"{name}.out.npy", np.asarray(fuse.call(y1, y2)))
assert not {"flax", "orbax", "optax"} & {m.split(".")[0] for m in sys.modules}, sorted(sys.modules)
print("ok", fuse.fun_name)
'''


def test_export_runs_with_jax_only_and_equals_fuse(tmp_path, capsys):
  out = tmp_path / "ivf.jaxexport"
  code, _, err = run_cli(["export", "--task", "ivf", "-o", out], capsys)
  wrote = [line for line in err.splitlines() if line.startswith("Wrote")]
  assert code == 0 and wrote[0].startswith(f"Wrote {out} (") and wrote[0].endswith("H, W >= 8.")
  model = stages.load_model(None, task="ivf")
  visible = imageio.load_image(SAMPLES / "tno" / "vi" / "37.png")
  infrared = imageio.load_image(SAMPLES / "tno" / "ir" / "37.png")
  # Two sizes, one with a single 4-px window on the coarsest (1/8) scale and one with several.
  crops = {"a": (slice(0, 27), slice(0, 44)), "b": (slice(100, 197), slice(150, 270))}
  inputs = []
  for name, crop in crops.items():
    np.savez(tmp_path / f"{name}.npz", y1=visible[crop][None], y2=infrared[crop][None])
    inputs.append(tmp_path / f"{name}.npz")
  result = subprocess.run(
    [sys.executable, "-c", _JAX_ONLY, str(out), *map(str, inputs)],
    capture_output=True,
    text=True,
    timeout=600,
    cwd=tmp_path,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ["ok", "fusionjax_luma_ivf_m8"]
  for name, crop in crops.items():
    exported = np.load(tmp_path / f"{name}.npz.out.npy")[0]
    expected = inference.fuse_images(
      model, [visible[crop], infrared[crop]], grey=True
    )  # what `fuse --grey` writes
    assert exported.shape == expected.shape
    np.testing.assert_allclose(exported, expected, atol=1e-5, rtol=0)
  # `fusionjax fuse --exported` writes that fusion; wrong use is one line.
  imageio.save_image(tmp_path / "vis.png", visible[crops["a"]])
  imageio.save_image(tmp_path / "ir.png", infrared[crops["a"]])
  fused = tmp_path / "fused.png"
  code, _, err = run_cli(
    ["fuse", tmp_path / "vis.png", tmp_path / "ir.png", "-o", fused, "--exported", out], capsys
  )
  assert code == 0 and f"exported ivf program {out}" in err
  # The CLI pads before the program (tiling), the direct call inside it: float32 rounding may move a level.
  written = imageio.to_uint8(imageio.load_image(fused)).astype(int)
  assert (
    np.abs(written - imageio.to_uint8(np.load(tmp_path / "a.npz.out.npy")[0]).astype(int)).max()
    <= 1
  )
  (tmp_path / "junk.jaxexport").write_bytes(b"\x00" * 64)
  for argv, message in (
    (["--exported", out, "--task", "ivf"], "carries its own weights"),
    (["--exported", tmp_path / "junk.jaxexport"], "is not a readable jax.export file"),
    (["--exported", tmp_path / "none.jaxexport"], "not found"),
  ):
    code, _, err = run_cli(
      ["fuse", tmp_path / "vis.png", tmp_path / "ir.png", "-o", tmp_path / "x.png", *argv], capsys
    )
    assert code == 2 and err.count("\n") == 1 and message in err, err
  assert not (tmp_path / "x.png").exists()


# --- --task auto ---------------------------------------------------------------------------------------

_AUTO_SETS = [
  ("tno", None),
  ("roadscene", "all"),
  ("lytro", None),
  ("lytro_triple", None),
  ("mfi_whu", "all"),
  ("mefb", None),
  ("sice", "all"),
  ("harvard_mri_ct", None),
  ("harvard_mri_spect", None),
]


def _confusion(pairs) -> dict[tuple[str, str], int]:
  from fusionjax import detect

  counts: dict[tuple[str, str], int] = {}
  for pair in pairs:
    picked = detect.detect_task([imageio.load_image(p) for p in pair.sources]).task
    counts[(pair.task, picked)] = counts.get((pair.task, picked), 0) + 1
  return counts


def test_task_auto_is_right_on_every_shipped_sample():
  from fusionjax import data

  pairs = (
    data.list_sample_pairs()
    + data.list_pairs("roadscene", SAMPLES, split="all")
    + data.list_pairs("sice", SAMPLES, split="train")
  )
  counts = _confusion(pairs)
  assert sum(counts.values()) == len(pairs) == 9
  assert all(true == picked for true, picked in counts), counts


@pytest.mark.slow
@needs_data
def test_task_auto_is_right_on_every_benchmark_pair():
  from fusionjax import data

  pairs = [
    p
    for name, split in _AUTO_SETS
    for p in data.list_pairs(name, SHARED_DATA, split=split, validate=False)
  ]
  counts = _confusion(pairs)
  print(counts)
  assert sum(counts.values()) == len(pairs) and all(true == picked for true, picked in counts), (
    counts
  )
  assert {true for true, _ in counts} == {"mfif", "meif", "ivf", "mif"}


def test_task_auto_says_what_it_picked(tmp_path, capsys):
  folder = SAMPLES / "harvard" / "MRI_CT"
  sources = [folder / "MRI" / "25.png", folder / "CT" / "25.png"]
  code, _, err = run_cli(["fuse", *sources, "-o", tmp_path / "auto.png", "--task", "auto"], capsys)
  assert code == 0, err
  assert (
    "fusionjax fuse: note: --task auto picked mif: a grey source and black background in every source"
    in err
  )
  expected = inference.fuse_images(
    stages.load_model(None, task="mif"), [imageio.load_image(p) for p in sources]
  )
  np.testing.assert_array_equal(
    imageio.to_uint8(imageio.load_image(tmp_path / "auto.png")), imageio.to_uint8(expected)
  )
  code, _, err = run_cli(
    ["fuse", *sources, "-o", tmp_path / "x.png", "--task", "auto", "--ckpt", tmp_path], capsys
  )
  assert (
    code == 2
    and "--task auto picks one of the shipped stages" in err
    and not (tmp_path / "x.png").exists()
  )
