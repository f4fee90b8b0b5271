"""The ``fusionjax fuse`` command: colour rules, sequences, and every user error (exit code 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fusionjax import cli
from fusionjax import imageio
from fusionjax import inference
from fusionjax import stages

from test_inference import SIZE, TINY_FRUFN, real_pair, save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """A tiny IVF checkpoint and real sources cropped to an odd, non-square size (95 x 89)."""
  root = tmp_path_factory.mktemp("cli")
  seed = int(np.random.default_rng().integers(2**31))
  print(f"seed={seed}")
  ckpt = save_tiny_checkpoint(root / "ivf", task="ivf", config=TINY_FRUFN, seed=seed)
  h, w = SIZE
  visible, infrared = real_pair("roadscene", 3)  # RGB visible, grey infrared
  near, far = real_pair("lytro", 5)  # two colour images
  files = {}
  for name, image in (
    ("visible.jpg", visible[:h, :w]),
    ("infrared.png", infrared[:h, :w]),
    ("near.png", near[:h, :w]),
    ("far.tif", far[:h, :w]),
    ("grey.bmp", infrared[-h:, -w:]),
    ("small.png", near[: h - 1, :w]),
  ):
    files[name] = imageio.save_image(root / name, image)
  (root / "broken.png").write_bytes(b"not an image at all")
  files["broken.png"] = root / "broken.png"
  return {"root": root, "ckpt": ckpt, "files": files, "model": stages.load_fusion_model(ckpt)}


def _run(argv, capsys):
  code = cli.main([str(a) for a in argv])
  captured = capsys.readouterr()
  return code, captured.err


@pytest.mark.parametrize(
  "names,channels,sequence",
  [
    (("visible.jpg", "infrared.png"), 3, None),
    (("infrared.png", "grey.bmp"), 1, None),
    (("near.png", "far.tif"), 3, None),
    (("near.png", "far.tif", "visible.jpg"), 3, None),
    (("near.png", "far.tif", "visible.jpg"), 3, "adjacent"),
  ],
)
def test_fuse_writes_the_expected_image(setup, tmp_path, capsys, names, channels, sequence):
  out = tmp_path / "fused.png"
  sources = [setup["files"][n] for n in names]
  option = ["--sequence", sequence] if sequence else []
  code, err = _run(["fuse", *sources, "-o", out, "--ckpt", setup["ckpt"], *option], capsys)
  assert code == 0, err
  assert "ivf checkpoint" in err and "step 7" in err
  written = imageio.load_image(out)
  assert written.shape == SIZE + (channels,)
  expected = inference.fuse_images(
    setup["model"], [imageio.load_image(p) for p in sources], sequence=sequence
  )
  np.testing.assert_array_equal(imageio.to_uint8(written), imageio.to_uint8(expected))
  if names[0] == "visible.jpg":
    # Colour + grey: the colour source's chroma survives (up to 8-bit rounding and gamut clipping).
    from fusionjax import color

    chroma = color.rgb_to_ycrcb(written.astype(np.float64))[..., 1:]
    source_chroma = color.rgb_to_ycrcb(imageio.load_image(sources[0]).astype(np.float64))[..., 1:]
    assert np.median(np.abs(chroma - source_chroma)) < 2 / 255


def test_grey_flag_and_tile_options(setup, tmp_path, capsys):
  out = tmp_path / "grey.png"
  code, err = _run(
    [
      "fuse",
      setup["files"]["near.png"],
      setup["files"]["far.tif"],
      "-o",
      out,
      "--ckpt",
      setup["ckpt"],
      "--grey",
      "--tile_size",
      "96",
      "--overlap",
      "40",
    ],
    capsys,
  )
  assert code == 0, err
  assert imageio.load_image(out).shape == SIZE + (1,)
  assert "deprecated" not in err
  # The hyphen spelling of earlier releases still works, with one note naming the new spelling.
  old = tmp_path / "old.png"
  code, err = _run(
    [
      "fuse",
      setup["files"]["near.png"],
      setup["files"]["far.tif"],
      "-o",
      old,
      "--ckpt",
      setup["ckpt"],
      "--grey",
      "--tile-size=96",
      "--overlap",
      "40",
      "--pad-multiple",
      "1",
    ],
    capsys,
  )
  notes = [line for line in err.splitlines() if "deprecated" in line]
  assert code == 0, err
  assert notes == [
    "fusionjax fuse: note: --tile-size is deprecated; spell it --tile_size, as train.py and "
    "evaluate.py do (the hyphen spelling goes in the next release).",
    "fusionjax fuse: note: --pad-multiple is deprecated; spell it --pad_multiple, as train.py and "
    "evaluate.py do (the hyphen spelling goes in the next release).",
  ]
  np.testing.assert_array_equal(imageio.load_image(old), imageio.load_image(out))


def test_respelling_keeps_values_and_positionals():
  argv, respelled = cli._respell(
    [
      "fuse",
      "a.png",
      "--bit-depth",
      "12",
      "--no-progress",
      "--tile-size=64",
      "--tile-size",
      "32",
      "--",
      "--tile-size",
    ]
  )
  assert argv == [
    "fuse",
    "a.png",
    "--bit_depth",
    "12",
    "--no_progress",
    "--tile_size=64",
    "--tile_size",
    "32",
    "--",
    "--tile-size",
  ]
  assert respelled == ["--bit-depth", "--no-progress", "--tile-size"]
  assert cli._respell(["fuse", "--tile_size", "64", "--data_dir", "d"]) == (
    ["fuse", "--tile_size", "64", "--data_dir", "d"],
    [],
  )


def _assert_fails(setup, argv, capsys, message, out):
  code, err = _run(argv, capsys)
  assert code == cli.USAGE_ERROR
  assert err.startswith("fusionjax fuse: error:") and message in err, err
  assert len(err.strip().splitlines()) == 1, err
  return code


@pytest.mark.parametrize(
  "case",
  [
    "sizes",
    "unreadable",
    "missing_file",
    "missing_ckpt",
    "no_ckpt",
    "wrong_task",
    "bad_suffix",
    "one_source",
    "bad_overlap",
    "bad_overlap_old_spelling",
    "bad_sequence",
  ],
)
def test_user_errors_exit_2_and_write_nothing(setup, tmp_path, capsys, case):
  files, ckpt = setup["files"], setup["ckpt"]
  out = tmp_path / "out.png"
  pair = [files["near.png"], files["far.tif"]]
  argv, message = {
    "sizes": (
      ["fuse", files["near.png"], files["small.png"], "-o", out, "--ckpt", ckpt],
      "94x89 (HxW)",
    ),
    "unreadable": (
      ["fuse", files["near.png"], files["broken.png"], "-o", out, "--ckpt", ckpt],
      "Cannot read image",
    ),
    "missing_file": (
      ["fuse", files["near.png"], tmp_path / "nope.png", "-o", out, "--ckpt", ckpt],
      "not found",
    ),
    "missing_ckpt": (["fuse", *pair, "-o", out, "--ckpt", tmp_path / "no_run"], "does not exist"),
    "no_ckpt": (["fuse", *pair, "-o", out], "pass --ckpt"),
    "wrong_task": (
      ["fuse", *pair, "-o", out, "--ckpt", ckpt, "--task", "mfif"],
      "trained for task 'ivf'",
    ),
    "bad_suffix": (["fuse", *pair, "-o", tmp_path / "out.xyz", "--ckpt", ckpt], "no image suffix"),
    "one_source": (["fuse", files["near.png"], "-o", out, "--ckpt", ckpt], "at least two"),
    "bad_overlap": (
      ["fuse", *pair, "-o", out, "--ckpt", ckpt, "--tile_size", "64", "--overlap", "32"],
      "half the tile size",
    ),
    "bad_overlap_old_spelling": (
      ["fuse", *pair, "-o", out, "--ckpt", ckpt, "--tile-size", "64", "--overlap", "32"],
      "half the tile size",
    ),
    "bad_sequence": (
      ["fuse", *pair, files["visible.jpg"], "-o", out, "--ckpt", ckpt, "--sequence", "tree"],
      "invalid choice: 'tree'",
    ),
  }[case]
  _assert_fails(setup, argv, capsys, message, out)
  assert not out.exists() and list(tmp_path.iterdir()) == []
  # An existing output file is left untouched.
  out.write_bytes(b"previous result")
  _assert_fails(setup, argv, capsys, message, out)
  assert out.read_bytes() == b"previous result"


def test_medical_task_expects_the_multi_exposure_stage(setup, tmp_path, capsys):
  pair = [setup["files"]["infrared.png"], setup["files"]["grey.bmp"]]
  code, err = _run(
    ["fuse", *pair, "-o", tmp_path / "o.png", "--ckpt", setup["ckpt"], "--task", "mif"], capsys
  )
  assert code == 2 and "'meif'" in err and "Medical fusion uses the multi-exposure" in err


def test_module_entry_point(setup, tmp_path):
  out = tmp_path / "o.png"
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "fusionjax",
      "fuse",
      str(setup["files"]["near.png"]),
      str(setup["files"]["far.tif"]),
      "-o",
      str(out),
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 2 and "pass --ckpt" in result.stderr and not out.exists()
  usage = subprocess.run(
    [sys.executable, "-m", "fusionjax", "fuse", "--help"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert (
    usage.returncode == 0 and "--tile_size" in usage.stdout and "--pad_multiple" in usage.stdout
  )
  assert "--tile-size" not in usage.stdout
