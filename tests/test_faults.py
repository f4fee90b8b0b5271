"""Bad input and broken environments: one clear line, the right exit code, nothing already written lost.

One test (or a few) per fault, on real images (the shipped samples, or the benchmark copies) and real
checkpoints (a copy of a shipped stage, damaged on purpose). Each checks the exit code, the one-line
message, and that every file that existed before is unchanged (hashes before and after).
"""

from __future__ import annotations

import errno
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
from fusionjax import weights

from test_inference import TINY_FRUFN, save_tiny_checkpoint
from shared_data import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "fusionjax" / "data" / "samples"
VISIBLE, INFRARED = SAMPLES / "tno" / "vi" / "37.png", SAMPLES / "tno" / "ir" / "37.png"
needs_data = pytest.mark.skipif(
  not (SHARED_DATA / "harvard").is_dir(), reason=f"benchmark images not at {SHARED_DATA}"
)
# XLA's lowest CPU optimisation level: same numbers, compilation several times faster.
FAST_XLA = {"XLA_FLAGS": "--xla_backend_optimization_level=0", "JAX_PLATFORMS": "cpu"}


def digest(path: Path) -> dict[str, str]:
  """SHA-256 of every file under ``path`` (or of ``path`` itself), by relative name."""
  path = Path(path)
  files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
  return {
    str(p.relative_to(path) if p != path else p.name): hashlib.sha256(p.read_bytes()).hexdigest()
    for p in files
  }


def run(args, *, cwd=REPO, env=None, timeout=300):
  """Runs a command of the repository; returns (exit code, stdout, stderr lines)."""
  result = subprocess.run(
    [str(a) for a in args],
    cwd=cwd,
    capture_output=True,
    text=True,
    timeout=timeout,
    env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})},
  )
  return (
    result.returncode,
    result.stdout,
    [line for line in result.stderr.splitlines() if line.strip()],
  )


def fuse(argv, capsys):
  code = cli.main([str(a) for a in argv])
  return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
  return save_tiny_checkpoint(
    tmp_path_factory.mktemp("ckpt") / "ivf", task="ivf", config=TINY_FRUFN, seed=3
  )


@pytest.fixture
def crops(tmp_path):
  """The TNO 37 pair cropped to 72 x 88 (visible, infrared), as 8-bit arrays and files."""
  visible = np.asarray(Image.open(VISIBLE).convert("L"))[100:172, 150:238]
  infrared = np.asarray(Image.open(INFRARED).convert("L"))[100:172, 150:238]
  Image.fromarray(visible).save(tmp_path / "vis.png")
  Image.fromarray(infrared).save(tmp_path / "ir.png")
  return visible, infrared, tmp_path / "vis.png", tmp_path / "ir.png"


# --- evaluate.py: an unreadable fused image ---------------------------------------------------------


@needs_data
def test_corrupt_fused_image_leaves_its_pair_unscored_and_scores_the_rest(tmp_path):
  reference = evaluation.evaluate_baseline(
    "average",
    "harvard_mri_ct",
    tmp_path / "ref",
    data_dir=str(SHARED_DATA),
    max_pairs=6,
    metrics=["EN", "SD", "SF"],
  )
  expected = {r["name"]: r for r in evaluation.read_metrics_csv(tmp_path / "ref" / "metrics.csv")}
  fused = tmp_path / "fused"
  shutil.copytree(tmp_path / "ref" / "fused", fused)
  broken = sorted(fused.iterdir())[4]  # the 5th pair, as in the report
  broken.write_bytes(broken.read_bytes()[:300])  # truncated
  before = digest(fused)
  out = tmp_path / "scored"
  args = [
    sys.executable,
    "evaluate.py",
    f"--fused_dir={fused}",
    "--dataset=harvard_mri_ct",
    f"--data_dir={SHARED_DATA}",
    "--max_pairs=6",
    "--metrics=EN,SD,SF",
    f"--out={out}",
  ]
  code, stdout, _ = run(args)
  assert code == 0 and "Pairs not scored (1" in stdout
  rows = {r["name"]: r for r in evaluation.read_metrics_csv(out / "metrics.csv")}
  assert list(rows) == list(expected)  # every pair has a row, in pair order
  assert "Cannot read image" in rows[broken.stem]["error"] and rows[broken.stem]["EN"] == ""
  for name, row in expected.items():
    if name != broken.stem:
      assert [rows[name][m] for m in ("EN", "SD", "SF")] == [row[m] for m in ("EN", "SD", "SF")]
      assert rows[name]["error"] == ""
  summary = json.loads((out / "summary.json").read_text())
  assert (
    summary["num_pairs"] == 5
    and summary["metrics"]["EN"]["n"] == 5
    and summary["num_unscored"] == 1
  )
  assert (
    summary["unscored_pairs"][0]["name"] == broken.stem
    and "truncated" in summary["unscored_pairs"][0]["reason"]
  )
  assert summary["metrics"]["EN"]["mean"] == pytest.approx(
    np.mean([float(r["EN"]) for n, r in expected.items() if n != broken.stem])
  )
  assert reference["num_pairs"] == 6
  # --strict: the same results, and exit code 1 with one line.
  code, _, err = run(args[:-1] + [f"--out={tmp_path / 'strict'}", "--strict"])
  assert (
    code == 1
    and err[-1].startswith("evaluate.py: error: 1 of 6 pairs were not scored")
    and "--strict" in err[-1]
  )
  assert json.loads((tmp_path / "strict" / "summary.json").read_text())["num_pairs"] == 5
  assert digest(fused) == before


# --- evaluate.py: an --out that already holds results -----------------------------------------------


@needs_data
def test_out_with_results_is_refused_and_overwrite_replaces_it_whole(tmp_path):
  out = tmp_path / "out"
  base = [
    sys.executable,
    "evaluate.py",
    "--method=average",
    "--dataset=harvard_mri_ct",
    f"--data_dir={SHARED_DATA}",
    "--metrics=EN",
    f"--out={out}",
  ]
  assert run(base + ["--max_pairs=3"])[0] == 0
  before = digest(out)
  code, _, err = run(base + ["--max_pairs=2"])
  assert (
    code == 2
    and len(err) == 1
    and err[0].startswith(f"evaluate.py: error: --out {out} already holds results")
  )
  assert "--overwrite" in err[0] and digest(out) == before
  # A run that fails part-way (no pair can be scored) leaves the earlier results as they were.
  bad = tmp_path / "bad"
  bad.mkdir()
  for path in sorted((out / "fused").iterdir()):
    (bad / path.name).write_bytes(b"not an image")
  code, _, err = run(
    [
      sys.executable,
      "evaluate.py",
      f"--fused_dir={bad}",
      "--dataset=harvard_mri_ct",
      f"--data_dir={SHARED_DATA}",
      "--max_pairs=3",
      f"--out={out}",
      "--overwrite",
    ]
  )
  assert code == 2 and err[-1].startswith("evaluate.py: error: None of the 3 pairs could be scored")
  assert digest(out) == before
  # With --overwrite the old results go as a whole: no stale fused image of the 3-pair run is left.
  assert run(base + ["--max_pairs=2", "--overwrite"])[0] == 0
  assert (
    len(list((out / "fused").iterdir())) == 2
    and len(evaluation.read_metrics_csv(out / "metrics.csv")) == 2
  )
  assert sorted(p.name for p in tmp_path.iterdir()) == [
    "bad",
    "out",
  ]  # no temporary folder left behind
  # Files an evaluation does not write are never replaced.
  (out / "notes.txt").write_text("mine")
  code, _, err = run(base + ["--max_pairs=2", "--overwrite"])
  assert code == 2 and "notes.txt" in err[-1] and (out / "notes.txt").read_text() == "mine"


# --- fusionjax fuse: the output is a source, a source is a folder --------------------------------------


def test_output_that_is_a_source_is_refused(crops, capsys, tiny_ckpt, tmp_path_factory):
  _, _, vis, ir = crops
  before = {**digest(vis), **digest(ir)}
  link = tmp_path_factory.mktemp("links") / "link.png"
  link.symlink_to(vis)
  for out in (vis, Path(os.path.relpath(vis)), link):  # the same file, however it is named
    code, err = fuse(["fuse", vis, ir, "-o", out, "--ckpt", tiny_ckpt], capsys)
    assert code == 2 and len(err) == 1
    assert (
      err[0]
      == f"fusionjax fuse: error: Output {out} would overwrite source {vis}; write the result to another file."
    )
  assert {**digest(vis), **digest(ir)} == before
  assert sorted(p.name for p in vis.parent.iterdir()) == ["ir.png", "vis.png"]


def test_source_that_is_a_folder_is_named_a_folder(crops, capsys, tiny_ckpt, tmp_path):
  _, _, vis, ir = crops
  code, err = fuse(
    ["fuse", vis.parent, ir, "-o", tmp_path / "out.png", "--ckpt", tiny_ckpt], capsys
  )
  assert code == 2 and len(err) == 1
  assert (
    err[0]
    == f"fusionjax fuse: error: {vis.parent} is a folder, not an image file; pass an image file inside it "
    f"(e.g. {ir})."
  )
  assert not (tmp_path / "out.png").exists()


# --- checkpoints: truncated or corrupted files --------------------------------------------------------


def _shipped_copy(tmp_path) -> Path:
  copy = tmp_path / "ivf"
  shutil.copytree(weights.shipped_checkpoint("ivf"), copy)
  return copy


def _largest(folder: Path) -> Path:
  return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("damage", ["truncate_data", "truncate_manifest", "flip_metadata"])
def test_damaged_checkpoint_is_one_line_naming_its_folder(tmp_path, damage):
  ckpt = _shipped_copy(tmp_path)
  step_dir = next((ckpt / "checkpoints").iterdir())
  target = {
    "truncate_data": lambda: _largest(step_dir / "state" / "ocdbt.process_0" / "d"),
    "truncate_manifest": lambda: step_dir / "state" / "manifest.ocdbt",
    "flip_metadata": lambda: step_dir / "state" / "_METADATA",
  }[damage]()
  content = bytearray(target.read_bytes())
  if damage.startswith("truncate"):
    content = content[: len(content) // 2]
  else:
    content[len(content) // 3 : len(content) // 3 + 16] = bytes(
      b ^ 0xFF for b in content[len(content) // 3 :][:16]
    )
  target.write_bytes(bytes(content))
  before = digest(ckpt)
  out = tmp_path / "fused.png"
  # The late TensorStore callbacks that printed tracebacks showed up in some runs only: repeat one case.
  for _ in range(2 if damage == "truncate_manifest" else 1):
    code, _, err = run(
      [sys.executable, "-m", "fusionjax", "fuse", VISIBLE, INFRARED, "-o", out, "--ckpt", ckpt]
    )
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"fusionjax fuse: error: Checkpoint {step_dir} is damaged (")
    assert "Re-train the stage" in err[0] and "another checkpoint" in err[0]
  assert digest(ckpt) == before and not out.exists()


def test_flipped_parameter_bytes_fail_the_recorded_checksum(tmp_path):
  ckpt = save_tiny_checkpoint(tmp_path / "ivf", task="ivf", config=TINY_FRUFN, seed=5)
  # Which data file holds the parameters varies from save to save: flip bytes in each of them. A flip
  # inside compressed data often decodes without error; the recorded checksum catches it.
  for chunk in (ckpt / "checkpoints" / "7" / "state" / "ocdbt.process_0" / "d").iterdir():
    content = bytearray(chunk.read_bytes())
    for start in (len(content) * 3 // 10, len(content) // 2, len(content) * 8 // 10):
      content[start : start + 8] = bytes(b ^ 0x55 for b in content[start : start + 8])
    chunk.write_bytes(bytes(content))
  with pytest.raises(checkpoints.DamagedCheckpointError, match=r"checkpoints/7 is damaged \("):
    checkpoints.load_fusion_model(ckpt)


# --- train.py: bad input ----------------------------------------------------------------------------


def test_train_py_input_errors_are_one_line_exit_2(tmp_path):
  teacher = weights.shipped_checkpoint("ivf")
  teacher_files = digest(teacher)
  workdir = tmp_path / "run"
  cases = [
    (
      [
        "--config=configs/meif.py:smoke",
        f"--config.data.data_dir={SAMPLES}",
        f"--config.teacher_ckpt={tmp_path / 'no_mfif'}",
      ],
      [
        "Teacher checkpoint for stage 'meif' not found",
        "--config.teacher_ckpt",
        f"python train.py --config=configs/mfif.py:smoke --workdir={tmp_path / 'no_mfif'}",
      ],
    ),
    (
      [
        "--config=configs/ivf.py:smoke",
        f"--config.data.data_dir={SAMPLES}",
        f"--config.teacher_ckpt={teacher}",
      ],
      ["was trained for 'ivf', but stage 'ivf' needs a 'meif' teacher", "--config.teacher_ckpt"],
    ),
    (
      ["--config=configs/mfif.py:smoke", f"--config.data.data_dir={tmp_path / 'no_data'}"],
      ["Training data directory", "does not exist", "--config.data.data_dir"],
    ),
  ]
  for flags, parts in cases:
    code, _, err = run([sys.executable, "train.py", f"--workdir={workdir}", *flags])
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("train.py: error: ") and all(p in err[0] for p in parts), err[0]
    assert not workdir.exists()
  assert digest(teacher) == teacher_files
  # FUSIONJAX_TRACEBACK shows where it came from.
  code, _, err = run(
    [sys.executable, "train.py", f"--workdir={workdir}", *cases[2][0]],
    env={"FUSIONJAX_TRACEBACK": "1"},
  )
  assert (
    code == 1 and "Traceback (most recent call last):" in err and "MissingInputError" in err[-1]
  )


# --- train.py: the disk fills while a checkpoint is written --------------------------------------------


def _can_mount_tmpfs() -> bool:
  if shutil.which("unshare") is None:
    return False
  probe = subprocess.run(
    ["unshare", "-rm", "sh", "-c", 'd=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs "$d"'],
    capture_output=True,
    timeout=30,
  )
  return probe.returncode == 0


_VERIFY = r'''
import json, sys
from fusionjax import checkpoints
ckpt = checkpoints.StageCheckpointer(sys.argv[1], create=False)
state, metadata = ckpt.restore(3)  # checks the recorded parameter checksum
ckpt.close()
print(json.dumps({"steps": ckpt.committed_steps(), "step": int(state["step"]),
                  "digest_ok": checkpoints.params_digest(state) == metadata["params_sha256"]}))
'''


@pytest.mark.skipif(
  not _can_mount_tmpfs(), reason="cannot mount a tmpfs here (needs root or user namespaces)"
)
def test_disk_full_on_a_real_small_filesystem_is_one_line_and_keeps_the_last_checkpoint(tmp_path):
  mount = tmp_path / "small"
  mount.mkdir()
  log = tmp_path / "stderr.txt"
  # 800 KiB hold one smoke checkpoint (about 500 KiB) but not two: step 3 is saved, step 6 finds no space.
  script = (
    f'mount -t tmpfs -o size=800k tmpfs "{mount}" && '
    f'{sys.executable} train.py --config=configs/mfif.py:smoke --config.data.data_dir={SAMPLES} '
    f'--config.model.max_iter=1 --config.data.max_images=2 --workdir={mount}/run 2> "{log}"; echo "rc=$?"; '
    f'{sys.executable} -c \'{_VERIFY}\' {mount}/run; ls -a {mount}/run/checkpoints'
  )
  result = subprocess.run(
    ["unshare", "-rm", "sh", "-c", script],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
    env={**os.environ, **FAST_XLA},
  )
  out = result.stdout.splitlines()
  assert out[0] == "rc=1", result.stdout + result.stderr
  err = [line for line in log.read_text().splitlines() if line.strip()]
  errors = [line for line in err if "loop.py" not in line]  # the progress lines
  assert len(errors) == 1 and "Traceback" not in log.read_text(), err
  assert errors[0].startswith(
    f"train.py: error: No space left on device for checkpoint step 6 in {mount}/run: "
    "the last good checkpoint (step 3) is intact. A checkpoint needs about "
  )
  assert json.loads(out[1]) == {"steps": [3], "step": 3, "digest_ok": True}
  assert out[2:] == [".", "..", "3"]  # the partial step-6 folder is gone


def test_disk_full_inside_orbax_save_keeps_the_earlier_checkpoint(tmp_path, monkeypatch):
  from orbax.checkpoint._src.handlers import json_checkpoint_handler

  workdir = save_tiny_checkpoint(tmp_path / "run", task="ivf", config=TINY_FRUFN, seed=1, step=1)
  before = digest(workdir / "checkpoints" / "1")
  with checkpoints.StageCheckpointer(workdir, create=False) as reader:
    state, metadata = reader.restore(1)
  original = json_checkpoint_handler.JsonCheckpointHandler._save_fn

  async def no_space(self, item, directory):
    if "/2." in str(directory):  # the files of step 2, as the OS would refuse them on a full disk
      raise OSError(errno.ENOSPC, "No space left on device", str(directory))
    return await original(self, item, directory)

  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", no_space)
  checkpointer = checkpoints.StageCheckpointer(workdir)
  with pytest.raises(checkpoints.DiskFullError) as raised:
    try:
      checkpointer.save(2, state, metadata, force=True)
    finally:
      checkpointer.close()  # an asynchronous save reports its error here
  assert raised.value.errno == errno.ENOSPC
  assert raised.value.strerror.startswith(
    f"No space left on device for checkpoint step 2 in {workdir}: the last "
    "good checkpoint (step 1) is intact."
  )
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["1"]
  assert digest(workdir / "checkpoints" / "1") == before


# --- transparency and bit depth -------------------------------------------------------------------------


def test_transparent_pixels_are_carried_to_the_output(crops, capsys, tiny_ckpt, tmp_path):
  visible, infrared, vis, ir = crops
  alpha = np.full(visible.shape, 255, np.uint8)
  alpha[:, :30] = 0  # a transparent band whose hidden colour is black, as such files often store it
  rgba = np.stack([np.where(alpha > 0, visible, 0)] * 3 + [alpha], axis=-1)
  Image.fromarray(rgba, "RGBA").save(tmp_path / "vis_rgba.png")
  before = digest(tmp_path / "vis_rgba.png")
  code, err = fuse(
    ["fuse", tmp_path / "vis_rgba.png", ir, "-o", tmp_path / "fused.png", "--ckpt", tiny_ckpt],
    capsys,
  )
  assert code == 0
  notes = [line for line in err if "note:" in line]
  assert notes == [
    f"fusionjax fuse: note: {tmp_path / 'vis_rgba.png'} has transparent pixels (34.1% not fully "
    "opaque); fused.png is transparent where any source is (alpha = the smallest source alpha)."
  ]
  written = Image.open(tmp_path / "fused.png")
  assert written.mode == "LA"
  np.testing.assert_array_equal(np.asarray(written)[..., 1], alpha)
  # The visible pixels are the fusion of the stored pixels.
  model = checkpoints.load_fusion_model(tiny_ckpt)
  expected = imageio.to_uint8(
    inference.fuse_images(
      model, [imageio.load_image(tmp_path / "vis_rgba.png"), imageio.load_image(ir)]
    )
  )[..., 0]
  np.testing.assert_array_equal(np.asarray(written)[..., 0], expected)
  # A format without alpha: composited on black, and said so.
  code, err = fuse(
    ["fuse", tmp_path / "vis_rgba.png", ir, "-o", tmp_path / "fused.jpg", "--ckpt", tiny_ckpt],
    capsys,
  )
  assert code == 0 and "composited on black where any source is transparent" in err[0]
  assert (
    np.asarray(Image.open(tmp_path / "fused.jpg").convert("L"))[:, :24].max() <= 8
  )  # JPEG ringing at the edge
  assert digest(tmp_path / "vis_rgba.png") == before


def test_twelve_bit_data_in_a_sixteen_bit_png_is_read_at_its_depth(
  crops, capsys, tiny_ckpt, tmp_path
):
  visible, infrared, vis, ir = crops
  levels = np.round(infrared.astype(np.float64) / 255 * 4095).astype(
    np.uint16
  )  # 12-bit thermal levels
  Image.fromarray(levels).save(tmp_path / "ir12.png")
  before = digest(tmp_path / "ir12.png")
  decoded = imageio.read_image(tmp_path / "ir12.png")
  assert decoded.bit_depth == 12 and np.array_equal(
    imageio.to_uint8(decoded.pixels[..., 0]), infrared
  )
  full_range = imageio.read_image(tmp_path / "ir12.png", bit_depth=16).pixels
  assert full_range.max() <= 4095 / 65535 + 1e-6  # what the old reading gave: near-black
  code, err = fuse(
    ["fuse", vis, tmp_path / "ir12.png", "-o", tmp_path / "f12.png", "--ckpt", tiny_ckpt], capsys
  )
  assert code == 0
  assert err[0] == (
    f"fusionjax fuse: note: {tmp_path / 'ir12.png'}: 16-bit image whose values fit in 12 bits "
    f"(largest {levels.max()}): read as 12-bit data (levels 0-4095); --bit_depth 16 reads it as "
    "full-range 16-bit."
  )
  assert fuse(["fuse", vis, ir, "-o", tmp_path / "f8.png", "--ckpt", tiny_ckpt], capsys)[0] == 0
  twelve, eight = (np.asarray(Image.open(tmp_path / n), np.int16) for n in ("f12.png", "f8.png"))
  assert np.abs(twelve - eight).max() <= 1  # the same fusion as the 8-bit infrared image
  code, err = fuse(
    [
      "fuse",
      vis,
      tmp_path / "ir12.png",
      "-o",
      tmp_path / "f10.png",
      "--ckpt",
      tiny_ckpt,
      "--bit_depth",
      "10",
    ],
    capsys,
  )
  assert code == 2 and err == [
    f"fusionjax fuse: error: {tmp_path / 'ir12.png'} holds values up to {levels.max()}, "
    "more than 10-bit data can (at most 1023); pass a larger --bit_depth (at least 12)."
  ]
  assert not (tmp_path / "f10.png").exists() and digest(tmp_path / "ir12.png") == before


# --- --help and the documented timings --------------------------------------------------------------------


def test_help_exits_0_and_train_help_says_how_to_list_the_config_fields(tmp_path):
  code, stdout, _ = run([sys.executable, "evaluate.py", "--help"], timeout=120)
  assert code == 0 and "--overwrite" in stdout and "--strict" in stdout and "--helpfull" in stdout
  code, stdout, _ = run([sys.executable, "train.py", "--help"], timeout=120)
  assert code == 0 and "--print_config" in stdout and "--config=configs/ivf.py" in stdout
  code, stdout, err = run(
    [
      sys.executable,
      "train.py",
      "--config=configs/ivf.py:smoke",
      "--print_config",
      f"--workdir={tmp_path / 'run'}",
      "--config.num_steps=4",
    ],
    timeout=120,
  )
  assert code == 0 and "num_steps: 4" in stdout and "teacher_ckpt: runs/smoke/meif" in stdout
  assert not (tmp_path / "run").exists()
  code, _, err = run(
    [sys.executable, "train.py", "--config=configs/ivf.py", "--config.no_such_field=1"], timeout=120
  )
  assert code == 2 and err == [
    "train.py: error: no config field 'no_such_field' to set; check the --config.<field> "
    "flags (--print_config lists them)."
  ]


def test_timing_claims_agree_everywhere():
  import re

  texts = {
    name: (REPO / name).read_text() for name in ("README.md", "train.py", "configs/common.py")
  }
  for name, text in texts.items():
    flat = " ".join(text.split())
    for stale in (
      "one-minute",
      "couple of minutes",
      "two and a half minutes",
      "a minute or two",
      "about 30 seconds",
    ):
      assert stale not in flat, (name, stale)
    assert re.search(r"smoke.{0,200}a few minutes|a few minutes.{0,200}smoke", flat), name
