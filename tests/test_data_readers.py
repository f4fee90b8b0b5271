"""Readers, pair records, validation and bad-data messages (fusionjax.data.pairs / readers / samples)."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusionjax.data import (
  DATASETS,
  Pair,
  dataset_dir,
  folder_pairs,
  image_header,
  list_images,
  list_pairs,
  list_sample_pairs,
  load_pair,
  sample_pair,
  sample_path,
  samples_dir,
  validate_pairs,
)
from fusionjax.imageio import load_image
from shared_data import SHARED_DATA

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(
  not DATA.is_dir(),
  reason=f"benchmark images not found at {DATA} (set FUSIONJAX_TEST_DATA to a copy)",
)


def write_image(
  path: Path, height: int, width: int, channels: int = 3, seed: int = 0
) -> np.ndarray:
  """Writes a random uint8 image (grey when channels == 1) and returns its pixels."""
  rng = np.random.default_rng(seed)
  shape = (height, width) if channels == 1 else (height, width, channels)
  pixels = rng.integers(0, 256, shape, dtype=np.uint8)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path)
  return pixels


def make_tno(root: Path, names=("01", "02", "03"), height=16, width=24) -> Path:
  for k, name in enumerate(names):
    write_image(root / "vi" / f"{name}.png", height, width, 3, seed=k)
    write_image(root / "ir" / f"{name}.png", height, width, 1, seed=100 + k)
  return root


# ---------------------------------------------------------------------------------------------------
# Real benchmark layouts


@needs_data
@pytest.mark.parametrize(
  "dataset, split, count",
  [
    ("tno", None, 42),
    ("roadscene", "test", 50),
    ("roadscene", "train", 171),
    ("roadscene", "all", 221),
    ("lytro", None, 20),
    ("lytro_triple", None, 4),
    ("mfi_whu", "benchmark30", 30),
    ("mfi_whu", "origin20", 20),
    ("mefb", None, 100),
    ("sice", "train", 11),
    ("sice", "test", 5),
    ("harvard_mri_ct", None, 21),
    ("harvard_mri_spect", None, 73),
  ],
)
def test_real_counts(dataset, split, count):
  pairs = list_pairs(dataset, DATA, split)
  assert len(pairs) == count
  names = [p.name for p in pairs]
  assert len(set(names)) == count
  assert all(p.task == DATASETS[dataset].task for p in pairs)
  assert all(all(s.is_file() for s in p.files) for p in pairs)
  expected_sources = 3 if dataset == "lytro_triple" else 2
  assert all(len(p.sources) == expected_sources for p in pairs)
  assert all((p.reference is not None) == (dataset == "sice") for p in pairs)


@needs_data
def test_real_source_order_and_names():
  tno = list_pairs("tno", DATA)
  assert tno[0].name == "01" and tno[-1].name == "42"
  assert [s.parent.name for s in tno[0].sources] == ["vi", "ir"]
  road = list_pairs("roadscene", DATA, "all")
  assert [s.parent.name for s in road[0].sources] == ["crop_LR_visible", "cropinfrared"]
  test_names = {p.name for p in list_pairs("roadscene", DATA, "test")}
  train_names = {p.name for p in list_pairs("roadscene", DATA, "train")}
  assert not test_names & train_names and len(test_names | train_names) == 221
  listed = {
    Path(line.strip()).stem for line in (DATA / "roadscene" / "test50.txt").read_text().split()
  }
  assert test_names == listed
  lytro = list_pairs("lytro", DATA)
  assert lytro[0].name == "lytro-01" and [s.name for s in lytro[0].sources] == [
    "lytro-01-A.jpg",
    "lytro-01-B.jpg",
  ]
  triple = list_pairs("lytro_triple", DATA)[0]
  assert [s.name[-5] for s in triple.sources] == ["A", "B", "C"]
  assert triple.sources[0].parent.name == "Triple Series"
  # MEFB: the role letter and the prefix may differ in case from the folder.
  mefb = {p.name: p for p in list_pairs("mefb", DATA)}
  assert mefb["Sky"].sources[0].name == "sKY_a.png" and mefb["Sky"].sources[1].name == "Sky_B.png"
  assert mefb["garage"].sources[0].name == "Garage_A.jpg"
  assert {s.suffix.lower() for p in mefb.values() for s in p.sources} == {".jpg", ".png", ".tif"}
  sice = list_pairs("sice", DATA, "test")[0]
  assert [s.parent.name for s in sice.sources] == [
    "under",
    "over",
  ] and sice.reference.parent.name == "reference"
  origin = list_pairs("mfi_whu", DATA, "origin20")
  assert [p.name for p in origin[:3]] == ["1", "2", "3"]  # natural order
  spect = list_pairs("harvard_mri_spect", DATA)[0]
  assert [s.parent.name for s in spect.sources] == ["MRI", "SPECT"]


@needs_data
def test_real_harvard_accepts_root_harvard_or_subfolder():
  by_root = list_pairs("harvard_mri_ct", DATA)
  by_harvard = list_pairs("harvard_mri_ct", DATA / "harvard")
  by_sub = list_pairs("harvard_mri_ct", DATA / "harvard" / "MRI_CT")
  assert by_root == by_harvard == by_sub
  assert list_pairs("tno", DATA / "tno") == list_pairs("tno", DATA)


@needs_data
def test_real_clean_natural_and_loading():
  images = list_images(DATA)
  assert len(images) == 210
  assert {p.parent.name for p in images} == {"CUrban100", "CBSD68", "Kodak24", "McMaster"}
  with pytest.raises(ValueError, match="list_images"):
    list_pairs("clean_natural", DATA)
  # TNO stores grey as three channels: the loader folds them to one.
  loaded = load_pair(list_pairs("tno", DATA)[36])
  assert [s.shape for s in loaded.sources] == [
    (247, 359, 1),
    (247, 359, 1),
  ] and loaded.reference is None
  road = load_pair(list_pairs("roadscene", DATA, "test")[0])
  assert road.sources[0].shape[-1] == 3 and road.sources[1].shape[-1] == 1


# ---------------------------------------------------------------------------------------------------
# Built trees: Real-MFF, folders, every layout's bad data


def test_real_mff_tree(tmp_path):
  root = tmp_path / "Real-MFF"
  for k, name in enumerate(["710", "9", "10"]):
    write_image(root / "imageA" / f"{name}_A.png", 9, 14, 3, seed=k)
    write_image(root / "imageB" / f"{name}_B.png", 9, 14, 3, seed=10 + k)
    write_image(root / "Fusion" / f"{name}_F.png", 9, 14, 3, seed=20 + k)
  # A root holding Real-MFF/ works as well as the folder itself.
  pairs = list_pairs("real_mff", tmp_path)
  assert [p.name for p in pairs] == ["9", "10", "710"]
  assert pairs == list_pairs("real_mff", root, "train")
  assert pairs[0].sources[0].name == "9_A.png" and pairs[0].reference.name == "9_F.png"
  loaded = load_pair(pairs[1])
  np.testing.assert_array_equal(loaded.reference, load_image(root / "Fusion" / "10_F.png"))
  (root / "Fusion" / "9_F.png").unlink()
  with pytest.raises(ValueError, match=r"9_A\.png has no partner.*Fusion"):
    list_pairs("real_mff", root)


def test_folder_pairs_matches_stems_with_any_suffix(tmp_path):
  write_image(tmp_path / "a" / "x.png", 7, 11, 3)
  write_image(tmp_path / "b" / "x.jpg", 7, 11, 1)
  write_image(tmp_path / "a" / "y2.png", 7, 11, 3)
  write_image(tmp_path / "b" / "y2.bmp", 7, 11, 3)
  write_image(tmp_path / "a" / "y10.png", 5, 6, 3)
  write_image(tmp_path / "b" / "y10.png", 5, 6, 3)
  write_image(tmp_path / "ref" / "x.png", 7, 11, 3)
  write_image(tmp_path / "ref" / "y2.png", 7, 11, 3)
  write_image(tmp_path / "ref" / "y10.png", 5, 6, 3)
  (tmp_path / "a" / "notes.txt").write_text("not an image")
  pairs = folder_pairs(tmp_path / "a", tmp_path / "b", task="ivf", reference_dir=tmp_path / "ref")
  assert [p.name for p in pairs] == ["x", "y2", "y10"]
  assert pairs[0].sources == (tmp_path / "a" / "x.png", tmp_path / "b" / "x.jpg")
  assert pairs[0].task == "ivf" and pairs[0].reference == tmp_path / "ref" / "x.png"
  assert folder_pairs(tmp_path / "a", tmp_path / "b")[0].task is None
  write_image(tmp_path / "b" / "x.tif", 7, 11, 1)
  with pytest.raises(ValueError, match=r"Ambiguous files .*x\.(jpg|tif)"):
    folder_pairs(tmp_path / "a", tmp_path / "b")
  with pytest.raises(ValueError, match="at least two source folders"):
    folder_pairs(tmp_path / "a")


def test_corrupt_file_is_named(tmp_path):
  root = make_tno(tmp_path / "tno")
  (root / "vi" / "02.png").write_bytes(b"this is not a PNG file at all")
  with pytest.raises(ValueError, match=r"Cannot read image .*vi/02\.png"):
    list_pairs("tno", tmp_path)


def test_truncated_file_passes_header_and_fails_on_load_with_its_name(tmp_path):
  root = make_tno(tmp_path / "tno", height=40, width=50)
  path = root / "ir" / "03.png"
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  pairs = list_pairs("tno", root)  # The header is intact: listing succeeds.
  with pytest.raises(ValueError, match=r"ir/03\.png"):
    load_pair(pairs[2])


def test_size_mismatch_is_named(tmp_path):
  root = make_tno(tmp_path / "tno")
  write_image(root / "ir" / "03.png", 17, 24, 1)
  with pytest.raises(
    ValueError, match=r"pair '03' mixes image sizes.*vi/03\.png is 16x24.*ir/03\.png is 17x24"
  ):
    list_pairs("tno", root)
  pairs = list_pairs("tno", root, validate=False)
  with pytest.raises(ValueError, match=r"mixes image sizes.*ir/03\.png is 17x24"):
    load_pair(pairs[2])


def test_missing_partner_is_named(tmp_path):
  root = make_tno(tmp_path / "tno")
  write_image(root / "ir" / "04.png", 16, 24, 1)
  with pytest.raises(
    ValueError, match=r"ir/04\.png has no partner named 04\.<image suffix> in .*vi"
  ):
    list_pairs("tno", root)


def test_all_problems_reported_at_once(tmp_path):
  root = make_tno(tmp_path / "tno")
  (root / "vi" / "01.png").write_bytes(b"garbage")
  write_image(root / "ir" / "02.png", 3, 3, 1)
  with pytest.raises(ValueError) as error:
    list_pairs("tno", root)
  assert (
    "2 bad pairs" in str(error.value)
    and "01.png" in str(error.value)
    and "'02'" in str(error.value)
  )


def test_empty_missing_and_unset_data_dir(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(
    FileNotFoundError, match=rf"{empty}.*set data_dir.*--config\.data\.data_dir.*--data_dir"
  ):
    list_pairs("tno", empty)
  with pytest.raises(FileNotFoundError, match=rf"{empty}.*set data_dir"):
    list_images(empty)
  missing = tmp_path / "nowhere"
  with pytest.raises(FileNotFoundError, match=rf"{missing} for tno does not exist; set data_dir"):
    list_pairs("tno", missing)
  with pytest.raises(ValueError, match="No data directory given for sice; set data_dir"):
    list_pairs("sice", None)
  # A TNO layout with empty folders has no pairs: an error, not an empty list.
  (tmp_path / "tno" / "ir").mkdir(parents=True)
  (tmp_path / "tno" / "vi").mkdir()
  with pytest.raises(FileNotFoundError, match="No tno pairs"):
    list_pairs("tno", tmp_path)


def test_unknown_dataset_and_split(tmp_path):
  make_tno(tmp_path / "tno")
  with pytest.raises(ValueError, match="Unknown dataset 'tnoo'.*tno"):
    list_pairs("tnoo", tmp_path)
  with pytest.raises(ValueError, match="Unknown split 'train' for tno; use one of test, all"):
    list_pairs("tno", tmp_path, "train")
  assert list_pairs("tno", tmp_path, "all") == list_pairs("tno", tmp_path)


def test_roadscene_splits_and_bad_test_list(tmp_path):
  root = tmp_path / "roadscene"
  names = ["FLIR_00006", "FLIR_00211", "FLIR_video_01", "FLIR_00977"]
  for k, name in enumerate(names):
    write_image(root / "crop_LR_visible" / f"{name}.jpg", 12, 15, 3, seed=k)
    write_image(root / "cropinfrared" / f"{name}.jpg", 12, 15, 1, seed=k)
  with pytest.raises(FileNotFoundError, match="test50.txt"):
    list_pairs("roadscene", tmp_path, "test")
  assert len(list_pairs("roadscene", tmp_path, "all")) == 4
  (root / "test50.txt").write_text("FLIR_00211.jpg\nFLIR_00977.jpg\n\n")
  assert [p.name for p in list_pairs("roadscene", tmp_path)] == ["FLIR_00211", "FLIR_00977"]
  assert [p.name for p in list_pairs("roadscene", tmp_path, "train")] == [
    "FLIR_00006",
    "FLIR_video_01",
  ]
  (root / "test50.txt").write_text("FLIR_00211.jpg\nFLIR_99999.jpg\n")
  with pytest.raises(ValueError, match="FLIR_99999"):
    list_pairs("roadscene", tmp_path, "test")


def test_scene_folders_mefb_and_mfi_whu(tmp_path):
  mefb = tmp_path / "mefb"
  write_image(mefb / "Sky" / "sKY_a.png", 9, 13, 3)
  write_image(mefb / "Sky" / "Sky_B.tif", 9, 13, 3)
  write_image(mefb / "garage" / "Garage_A.JPG", 8, 8, 3)
  write_image(mefb / "garage" / "Garage_B.jpg", 8, 8, 3)
  pairs = list_pairs("mefb", tmp_path)
  assert [p.name for p in pairs] == ["garage", "Sky"]
  assert pairs[1].sources[0].name == "sKY_a.png" and pairs[1].task == "meif"
  write_image(mefb / "Lone" / "Lone_A.png", 8, 8, 3)
  with pytest.raises(ValueError, match=r"Lone_A\.png has no partner Lone_B"):
    list_pairs("mefb", tmp_path)

  whu = tmp_path / "mfi_whu"
  for k in (1, 2):
    write_image(whu / "benchmark30" / f"MFI-WHU_0{k}" / f"MFI-WHU_0{k}_A.jpg", 10, 12, 3)
    write_image(whu / "benchmark30" / f"MFI-WHU_0{k}" / f"MFI-WHU_0{k}_B.jpg", 10, 12, 3)
  assert [p.name for p in list_pairs("mfi_whu", tmp_path)] == ["MFI-WHU_01", "MFI-WHU_02"]
  with pytest.raises(FileNotFoundError, match="origin20"):
    list_pairs("mfi_whu", tmp_path, "origin20")


def test_lytro_pairs_and_triples(tmp_path):
  root = tmp_path / "lytro"
  for role in "AB":
    write_image(root / f"lytro-01-{role}.jpg", 10, 10, 3)
    write_image(root / f"lytro-02-{role}.jpg", 10, 10, 3)
  for role in "ABC":
    write_image(root / "Triple Series" / f"lytro-01-{role}.jpg", 10, 10, 3)
  write_image(root / "lytro-05-A.jpg", 10, 10, 3)
  write_image(root / "lytro-05-B.jpg", 10, 10, 3)
  write_image(root / "lytro-05-C.jpg", 10, 10, 3)
  assert [p.name for p in list_pairs("lytro", tmp_path)] == ["lytro-01", "lytro-02", "lytro-05"]
  triples = list_pairs("lytro_triple", tmp_path)
  assert [p.name for p in triples] == ["lytro-01", "lytro-05"]
  assert triples[0].sources[2] == root / "Triple Series" / "lytro-01-C.jpg"
  assert triples[1].sources[2] == root / "lytro-05-C.jpg"
  write_image(root / "lytro-01-C.jpg", 10, 10, 3)
  with pytest.raises(ValueError, match="'lytro-01' is both in"):
    list_pairs("lytro_triple", tmp_path)
  (root / "lytro-02-B.jpg").unlink()
  with pytest.raises(ValueError, match=r"lytro-02-A\.jpg has no partner lytro-02-B"):
    list_pairs("lytro", tmp_path)


def test_sice_and_harvard_trees(tmp_path):
  for split, names in (("train", ["1", "12", "2"]), ("test", ["3"])):
    for k, name in enumerate(names):
      for part in ("under", "over", "reference"):
        write_image(tmp_path / "sice16" / split / part / f"{name}.jpg", 6, 9, 3, seed=k)
  assert [p.name for p in list_pairs("sice", tmp_path, "train")] == ["1", "2", "12"]
  assert len(list_pairs("sice", tmp_path, "all")) == 4
  write_image(tmp_path / "harvard" / "MRI_CT" / "MRI" / "11.png", 8, 8, 1)
  write_image(tmp_path / "harvard" / "MRI_CT" / "CT" / "11.png", 8, 8, 1)
  assert dataset_dir("harvard_mri_ct", tmp_path / "harvard") == tmp_path / "harvard" / "MRI_CT"
  with pytest.raises(FileNotFoundError, match="No harvard_mri_spect data"):
    list_pairs("harvard_mri_spect", tmp_path)


def test_clean_natural_refuses_a_root_without_it(tmp_path):
  make_tno(tmp_path / "tno")
  # Without clean_natural/, the root's benchmark images must not become training photographs.
  with pytest.raises(FileNotFoundError, match="No clean_natural data"):
    list_images(tmp_path)
  write_image(tmp_path / "clean_natural" / "b" / "2.jpg", 8, 8, 3)
  write_image(tmp_path / "clean_natural" / "b" / "10.jpg", 8, 8, 3)
  write_image(tmp_path / "clean_natural" / "a.png", 8, 8, 1)
  (tmp_path / "clean_natural" / ".hidden.png").write_bytes(b"x")
  images = list_images(tmp_path)
  assert [p.relative_to(tmp_path / "clean_natural").as_posix() for p in images] == [
    "a.png",
    "b/2.jpg",
    "b/10.jpg",
  ]
  (tmp_path / "clean_natural" / "b" / "bad.jpg").write_bytes(b"junk")
  with pytest.raises(ValueError, match=r"(?s)1 unreadable images.*bad\.jpg"):
    list_images(tmp_path)


def test_pair_record_checks(tmp_path):
  with pytest.raises(ValueError, match="at least two sources"):
    Pair(name="x", sources=(tmp_path / "a.png",))
  with pytest.raises(ValueError, match="unknown task 'fusion'"):
    Pair(name="x", sources=("a.png", "b.png"), task="fusion")
  pair = Pair(name="x", sources=("a.png", "b.png"), reference="r.png", task="mfif")
  assert pair.sources == (Path("a.png"), Path("b.png")) and pair.files[-1] == Path("r.png")
  with pytest.raises(ValueError, match=r"Image file not found: .*a\.png"):
    validate_pairs([pair])
  with pytest.raises(FileNotFoundError, match=r"a\.png"):
    load_pair(pair)


def test_header_follows_exif_orientation(tmp_path):
  rng = np.random.default_rng(7)
  pixels = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
  exif = Image.Exif()
  exif[0x0112] = 6  # rotate 90° on display: width and height swap
  path = tmp_path / "rotated.jpg"
  Image.fromarray(pixels).save(path, exif=exif.tobytes())
  height, width, mode = image_header(path)
  assert (height, width, mode) == (10, 6, "RGB")
  assert load_image(path).shape[:2] == (height, width)


# ---------------------------------------------------------------------------------------------------
# Shipped samples


def test_shipped_samples():
  pairs = list_sample_pairs()
  assert [p.task for p in pairs] == ["ivf", "mfif", "meif", "mif", "mif"]
  assert sample_pair("tno").name == "37" and sample_pair("lytro").name == "lytro-20"
  assert sample_path("harvard_mri_ct") == samples_dir() / "harvard" / "MRI_CT"
  for pair in pairs:
    loaded = load_pair(pair)
    assert len({s.shape[:2] for s in loaded.sources}) == 1
  assert load_pair(sample_pair("harvard_mri_spect")).sources[1].shape[-1] == 3
  total = sum(p.stat().st_size for p in samples_dir().rglob("*") if p.is_file())
  assert total < 1.5e6
  readme = (samples_dir() / "README.md").read_text()
  for credit in ("TNO (Soesterberg, NL)", "Nejati", "MEFB", "Harvard Whole Brain Atlas"):
    assert credit in readme
  with pytest.raises(ValueError, match="Unknown sample"):
    sample_pair("roadscene")


@needs_data
def test_shipped_samples_are_byte_copies_of_the_benchmarks():
  for pair in list_sample_pairs():
    for path in pair.sources:
      original = DATA / path.relative_to(samples_dir())
      assert path.read_bytes() == original.read_bytes(), path
