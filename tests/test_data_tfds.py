"""TFDS builders: build from a local tree and read back bit-exact, without TensorFlow."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow_datasets")

from fusionjax.data import tfds_builders  # pylint: disable=wrong-import-position


def save(path: Path, pixels: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path)


def file_pixels(path: Path) -> np.ndarray:
  pixels = np.asarray(Image.open(path))
  return pixels[..., None] if pixels.ndim == 2 else pixels


def test_tno_round_trip_is_bit_exact(tmp_path):
  rng = np.random.default_rng()
  manual = tmp_path / "manual" / "tno"
  for name in ("01", "02", "10"):
    save(manual / "vi" / f"{name}.png", rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    save(manual / "ir" / f"{name}.png", rng.integers(0, 256, (16, 24), dtype=np.uint8))
  with pytest.raises(FileNotFoundError, match="not built"):
    tfds_builders.data_source("tno", tmp_path / "tfds", "test")
  builder = tfds_builders.build("tno", tmp_path / "manual", tmp_path / "tfds")
  assert builder.name == "fusionjax_tno"
  assert (tmp_path / "tfds" / "fusionjax_tno" / "1.0.0").is_dir()
  source = tfds_builders.data_source("tno", tmp_path / "tfds", "test")
  assert len(source) == 3
  records = {source[i]["name"].decode(): source[i] for i in range(len(source))}
  assert sorted(records) == ["01", "02", "10"]
  for name, record in records.items():
    # Sources in reader order: visible first, infrared second.
    np.testing.assert_array_equal(record["source1"], file_pixels(manual / "vi" / f"{name}.png"))
    np.testing.assert_array_equal(record["source2"], file_pixels(manual / "ir" / f"{name}.png"))
    assert record["source1"].dtype == np.uint8 and "reference" not in record


def test_sice_round_trip_with_reference_and_splits(tmp_path):
  rng = np.random.default_rng()
  images = {}
  for split, names in (("train", ("1", "2")), ("test", ("3",))):
    for name in names:
      for part in ("under", "over", "reference"):
        pixels = rng.integers(0, 256, (15, 22, 3), dtype=np.uint8)
        save(tmp_path / "sice16" / split / part / f"{name}.png", pixels)
        images[name, part] = pixels
  tfds_builders.build("sice", tmp_path, tmp_path / "tfds")
  for split, count in (("train", 2), ("test", 1)):
    source = tfds_builders.data_source("sice", tmp_path / "tfds", split)
    assert len(source) == count
    for i in range(count):
      record = source[i]
      name = record["name"].decode()
      np.testing.assert_array_equal(record["source1"], images[name, "under"])
      np.testing.assert_array_equal(record["source2"], images[name, "over"])
      np.testing.assert_array_equal(record["reference"], images[name, "reference"])


def test_builder_registry_names_do_not_clash():
  names = [cls.name for cls in tfds_builders.BUILDERS.values()]
  assert len(set(names)) == len(names) and all(n.startswith("fusionjax_") for n in names)
  with pytest.raises(ValueError, match="No TFDS builder for 'imagenet'"):
    tfds_builders.data_source("imagenet", "/nonexistent", "test")
