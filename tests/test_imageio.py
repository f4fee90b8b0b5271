"""Image reading and atomic writing."""

import os

import numpy as np
import pytest
from PIL import Image

from fusionjax import imageio


def test_grey_folding_and_colour(tmp_path):
  rng = np.random.default_rng()
  grey = rng.integers(0, 256, (9, 11), dtype=np.uint8)
  Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "g3.png")
  Image.fromarray(grey).save(tmp_path / "g1.png")
  rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
  Image.fromarray(rgb).save(tmp_path / "c.png")
  for name in ("g3.png", "g1.png"):
    image = imageio.load_image(tmp_path / name)
    assert image.shape == (9, 11, 1) and image.dtype == np.float32
    np.testing.assert_array_equal(imageio.to_uint8(image[..., 0]), grey)
  colour = imageio.load_image(tmp_path / "c.png")
  assert colour.shape == (9, 11, 3)
  np.testing.assert_array_equal(imageio.to_uint8(colour), rgb)
  assert imageio.load_image(tmp_path / "g3.png", fold_grey=False).shape == (9, 11, 3)


def test_sixteen_bit(tmp_path):
  data = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
  Image.fromarray(data).save(tmp_path / "d.png")
  image = imageio.load_image(tmp_path / "d.png")
  np.testing.assert_allclose(image[..., 0], data / 65535.0, atol=1e-6)


def test_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="not found"):
    imageio.load_image(tmp_path / "missing.png")
  (tmp_path / "bad.png").write_bytes(b"not an image")
  with pytest.raises(ValueError, match="Cannot read image"):
    imageio.load_image(tmp_path / "bad.png")


def test_save_is_atomic(tmp_path):
  target = tmp_path / "out.png"
  image = np.random.default_rng().random((6, 7, 3))
  imageio.save_image(target, image)
  before = target.read_bytes()
  np.testing.assert_array_equal(
    imageio.to_uint8(imageio.load_image(target)), imageio.to_uint8(image)
  )
  with pytest.raises(ValueError):
    imageio.save_image(target, np.zeros((6, 7, 2)))
  with pytest.raises(ValueError, match="suffix"):
    imageio.save_image(tmp_path / "out.xyz", image)
  assert target.read_bytes() == before
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_saved_file_follows_umask(tmp_path):
  old = os.umask(0o022)
  try:
    path = imageio.save_image(tmp_path / "shared.png", np.zeros((3, 3)))
  finally:
    os.umask(old)
  assert path.stat().st_mode & 0o777 == 0o644
