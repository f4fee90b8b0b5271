"""Training pipeline: determinism, resume, prefetch, augmentation, config checks, shard_batch."""

import gc
import os
import threading
import time
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from PIL import Image

from fusionjax.color import rgb_to_ycrcb
from fusionjax.data import default_data_config, make_training_source, shard_batch
from shared_data import SHARED_DATA

PATCH = 16
SEED = int(np.random.SeedSequence().generate_state(1)[0])


def save(path: Path, pixels: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path)


def random_pixels(rng, height, width, channels):
  shape = (height, width) if channels == 1 else (height, width, channels)
  return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
  """A data root with tiny clean_natural/, sice16/ and roadscene/ trees (odd, non-square, small sizes)."""
  root = tmp_path_factory.mktemp("data")
  rng = np.random.default_rng(1234)
  sizes = [(23, 31, 3), (40, 17, 3), (10, 13, 3), (29, 29, 1), (33, 45, 3)]
  for k, (h, w, c) in enumerate(sizes):
    save(root / "clean_natural" / f"set{k % 2}" / f"{k}.png", random_pixels(rng, h, w, c))
  for k, (h, w) in enumerate([(21, 35), (18, 18), (12, 40)]):
    for part in ("under", "over", "reference"):
      save(root / "sice16" / "train" / part / f"{k}.png", random_pixels(rng, h, w, 3))
  for part in ("under", "over", "reference"):
    save(root / "sice16" / "test" / part / "99.png", random_pixels(rng, 20, 20, 3))
  # Test pairs are pure white: no IVF training batch may contain them.
  names = {"FLIR_1": False, "FLIR_2": False, "FLIR_3": True, "FLIR_4": False}
  for k, (name, is_test) in enumerate(names.items()):
    h, w = 19 + k, 26 + 2 * k
    visible = np.full((h, w, 3), 255, np.uint8) if is_test else random_pixels(rng, h, w, 3) // 2
    infrared = np.full((h, w), 255, np.uint8) if is_test else random_pixels(rng, h, w, 1) // 2
    save(root / "roadscene" / "crop_LR_visible" / f"{name}.png", visible)
    save(root / "roadscene" / "cropinfrared" / f"{name}.png", infrared)
  (root / "roadscene" / "test50.txt").write_text("FLIR_3.jpg\n")
  return root


def config_for(task, root, **overrides):
  config = default_data_config(task)
  config.data_dir = str(root)
  config.batch_size = 4
  config.patch_size = PATCH
  config.seed = SEED
  for key, value in overrides.items():
    config[key] = value
  return config


def assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize(
  "task, keys",
  [
    ("mfif", {"y1", "y2", "reference"}),
    ("meif", {"y1", "y2", "reference", "crcb1", "crcb2", "reference_crcb"}),
    ("ivf", {"y1", "y2"}),
  ],
)
def test_batch_keys_shapes_ranges(data_root, task, keys):
  print("seed", SEED)
  source = make_training_source(task, config_for(task, data_root))
  batch = source.batch(0)
  assert set(batch) == keys
  for key, value in batch.items():
    channels = 2 if "crcb" in key else 1
    assert value.shape == (4, PATCH, PATCH, channels) and value.dtype == np.float32, key
    assert value.min() >= 0.0 and value.max() <= 1.0, key


@pytest.mark.parametrize("task", ["mfif", "meif", "ivf"])
def test_same_seed_and_step_give_identical_batches(data_root, task):
  print("seed", SEED)
  first = make_training_source(task, config_for(task, data_root))
  second = make_training_source(task, config_for(task, data_root, cache=False, num_workers=2))
  for step in (0, 7, 123456):
    assert_batches_equal(first.batch(step), second.batch(step))
  assert not np.array_equal(first.batch(1)["y1"], first.batch(2)["y1"])
  other_seed = make_training_source(task, config_for(task, data_root, seed=SEED + 1))
  assert not np.array_equal(first.batch(1)["y1"], other_seed.batch(1)["y1"])
  second.close()


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_resume_and_prefetch_do_not_change_batches(data_root, prefetch):
  source = make_training_source("meif", config_for("meif", data_root))
  expected = [source.batch(step) for step in range(5, 9)]
  with source.iterate(start_step=5, prefetch=prefetch, num_steps=4) as iterator:
    got = list(iterator)
  assert len(got) == 4
  for a, b in zip(expected, got):
    assert_batches_equal(a, b)
  # An endless iterator can be abandoned half-way.
  iterator = source.iterate(start_step=6, prefetch=prefetch)
  assert_batches_equal(next(iterator), expected[1])
  assert iterator.next_step == 7
  iterator.close()


def test_prefetch_reraises_errors_in_the_consumer(data_root, tmp_path):
  root = tmp_path / "copy"
  (root / "clean_natural").mkdir(parents=True)
  save(root / "clean_natural" / "a.png", random_pixels(np.random.default_rng(0), 20, 20, 3))
  source = make_training_source("mfif", config_for("mfif", root, cache=False))
  (root / "clean_natural" / "a.png").unlink()
  iterator = source.iterate(prefetch=2)
  with pytest.raises(FileNotFoundError, match=r"a\.png"):
    next(iterator)
  with pytest.raises(StopIteration):
    next(iterator)


def test_dropped_iterator_stops_its_thread(data_root):
  source = make_training_source("ivf", config_for("ivf", data_root))
  iterator = source.iterate(prefetch=2)
  next(iterator)
  del iterator
  gc.collect()
  deadline = time.monotonic() + 5.0
  while (
    any(t.name == "fusionjax-prefetch" for t in threading.enumerate())
    and time.monotonic() < deadline
  ):
    time.sleep(0.05)
  assert not any(t.name == "fusionjax-prefetch" for t in threading.enumerate())


def test_processes_split_the_global_batch(data_root):
  whole = make_training_source("mfif", config_for("mfif", data_root)).batch(3)
  parts = [
    make_training_source(
      "mfif", config_for("mfif", data_root), process_index=i, process_count=2
    ).batch(3)
    for i in range(2)
  ]
  for key in whole:
    np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])
  with pytest.raises(ValueError, match="not divisible by the 3 processes"):
    make_training_source("mfif", config_for("mfif", data_root), process_index=0, process_count=3)


def test_same_crop_and_transform_for_every_image_of_an_item(tmp_path):
  """Aligned items whose images are equal must stay equal after crop, flip and rotation."""
  rng = np.random.default_rng(5)
  for k, (h, w) in enumerate([(21, 37), (9, 12)]):  # the second is smaller than the patch
    pixels = random_pixels(rng, h, w, 3)
    for part in ("under", "over", "reference"):
      save(tmp_path / "sice16" / "train" / part / f"{k}.png", pixels)
    visible = pixels
    infrared = np.round(rgb_to_ycrcb(pixels / 255.0)[..., 0] * 255).astype(np.uint8)
    save(tmp_path / "roadscene" / "crop_LR_visible" / f"{k}.png", visible)
    save(tmp_path / "roadscene" / "cropinfrared" / f"{k}.png", infrared)
  (tmp_path / "roadscene" / "test50.txt").write_text("")
  meif = make_training_source(
    "meif", config_for("meif", tmp_path, synthetic_fraction=0.0, batch_size=8)
  )
  ivf = make_training_source("ivf", config_for("ivf", tmp_path, batch_size=8))
  for step in range(3):
    batch = meif.batch(step)
    np.testing.assert_array_equal(batch["y1"], batch["reference"])
    np.testing.assert_array_equal(batch["y2"], batch["reference"])
    np.testing.assert_array_equal(batch["crcb1"], batch["reference_crcb"])
    np.testing.assert_array_equal(batch["crcb2"], batch["reference_crcb"])
    # The infrared file is the visible image's luma rounded to 8 bits.
    batch = ivf.batch(step)
    assert np.abs(batch["y1"] - batch["y2"]).max() <= 0.5 / 255 + 1e-6
  # Augmented crops are flips/rotations of the plain crops at the same place, not all the identity.
  plain = make_training_source(
    "meif", config_for("meif", tmp_path, synthetic_fraction=0.0, augment=False, batch_size=8)
  )
  transformed = 0
  for step in range(3):
    for augmented, original in zip(meif.batch(step)["y1"], plain.batch(step)["y1"]):
      candidates = [np.rot90(o, k) for o in (original, original[:, ::-1]) for k in range(4)]
      matches = [k for k, c in enumerate(candidates) if np.array_equal(c, augmented)]
      assert matches, "an augmented crop is not a dihedral transform of the plain crop"
      transformed += 0 not in matches
  assert transformed > 0


def test_grey_photographs_get_neutral_chroma(tmp_path):
  save(tmp_path / "clean_natural" / "grey.png", random_pixels(np.random.default_rng(2), 24, 30, 1))
  batch = make_training_source("meif", config_for("meif", tmp_path, synthetic_fraction=1.0)).batch(
    0
  )
  for key in ("crcb1", "crcb2", "reference_crcb"):
    np.testing.assert_array_equal(batch[key], 0.5)
  assert batch["y1"].mean() < batch["reference"].mean() < batch["y2"].mean()


def test_ivf_never_reads_the_test_pairs(data_root):
  source = make_training_source("ivf", config_for("ivf", data_root, batch_size=8))
  assert "RoadScene train: 3 items" in source.describe()
  for step in range(10):
    # Training images are at most 127/255; the white test pair would show as 1.0.
    assert source.batch(step)["y1"].max() < 0.51


def test_real_mff_mixing(data_root, tmp_path):
  rng = np.random.default_rng(9)
  for name in ("a", "b"):
    pixels = random_pixels(rng, 20, 22, 3)
    save(tmp_path / "imageA" / f"{name}_A.png", pixels)
    save(tmp_path / "imageB" / f"{name}_B.png", pixels)
    save(tmp_path / "Fusion" / f"{name}_F.png", pixels)
  only_real = make_training_source(
    "mfif", config_for("mfif", data_root, real_mff_dir=str(tmp_path), real_mff_fraction=1.0)
  )
  batch = only_real.batch(0)
  np.testing.assert_array_equal(batch["y1"], batch["reference"])
  mixed = make_training_source("mfif", config_for("mfif", data_root, real_mff_dir=str(tmp_path)))
  assert (
    "Real-MFF: 2 items, 50%" in mixed.describe()
    and "clean_natural): 5 items, 50%" in mixed.describe()
  )


def test_max_images_caps_each_set(data_root):
  source = make_training_source("meif", config_for("meif", data_root, max_images=2))
  assert (
    "SICE train: 2 items" in source.describe() and "clean_natural): 2 items" in source.describe()
  )


def test_holdout_splits_every_set_into_disjoint_parts(data_root):
  """holdout_every=k holds back positions k-1, 2k-1, ... of every set; the two parts cover it."""
  parts = {}
  for held in (False, True):
    source = make_training_source(
      "meif", config_for("meif", data_root, holdout_every=2, holdout=held)
    )
    parts[held] = source
  assert "SICE train: 2 items" in parts[False].describe()  # 3 scenes: the 2nd is held back
  assert "SICE train: 1 items" in parts[True].describe()
  assert "clean_natural): 3 items" in parts[False].describe()  # 5 photographs: 2nd, 4th held
  assert "clean_natural): 2 items" in parts[True].describe()
  for kind in range(2):
    kept = {
      tuple(map(str, parts[False]._sets[kind].paths(i))) for i in parts[False]._sets[kind].items
    }
    held = {
      tuple(map(str, parts[True]._sets[kind].paths(i))) for i in parts[True]._sets[kind].items
    }
    assert kept.isdisjoint(held)
  full = make_training_source("meif", config_for("meif", data_root))
  assert "SICE train: 3 items" in full.describe()
  with pytest.raises(ValueError, match=r"config\.data\.holdout must be False unless"):
    make_training_source("mfif", config_for("mfif", data_root, holdout=True))
  with pytest.raises(ValueError, match=r"config\.data\.holdout_every must be a non-negative"):
    make_training_source("mfif", config_for("mfif", data_root, holdout_every=-1))


def test_image_sets_add_more_natural(data_root, tmp_path):
  root = tmp_path / "root"
  rng = np.random.default_rng(5)
  for name, count in (("clean_natural", 2), ("more_natural", 3)):
    for k in range(count):
      save(root / name / f"{k}.png", random_pixels(rng, 24, 24, 3))
  both = make_training_source(
    "mfif", config_for("mfif", root, image_sets=("clean_natural", "more_natural"))
  )
  assert "synthetic multi-focus (clean_natural + more_natural): 5 items" in both.describe()
  only = make_training_source("mfif", config_for("mfif", root))
  assert "(clean_natural): 2 items" in only.describe()
  with pytest.raises(ValueError, match=r"config\.data\.image_sets must be distinct names"):
    make_training_source("mfif", config_for("mfif", root, image_sets=("tno",)))
  with pytest.raises(FileNotFoundError, match="No more_natural data"):
    make_training_source(
      "mfif", config_for("mfif", data_root, image_sets=("clean_natural", "more_natural"))
    )


def test_holdout_split_partitions_a_set():
  from fusionjax.data.pipeline import holdout_split

  assert holdout_split(range(10), 4, held_back=True) == [3, 7]
  assert holdout_split(range(10), 4, held_back=False) == [0, 1, 2, 4, 5, 6, 8, 9]
  assert holdout_split(range(3), 4, held_back=True) == []  # too few items: nothing held back
  assert holdout_split(range(3), 0, held_back=False) == [0, 1, 2]


def test_black_out_fraction_blacks_out_synthetic_exposures(data_root):
  """With black_out_fraction=1 every synthetic reference has true-black regions, and both
  exposures are black there too; 0 draws nothing, so the batches are those of before."""
  config = config_for("meif", data_root, synthetic_fraction=1.0, batch_size=8, patch_size=24)
  plain = make_training_source("meif", config).batch(3)
  config.black_out_fraction = 0.0
  assert_batches_equal(plain, make_training_source("meif", config).batch(3))
  config.black_out_fraction = 1.0
  black = make_training_source("meif", config).batch(3)
  reference = black["reference"][..., 0]
  zero = reference == 0
  assert all(0.1 < z.mean() < 0.8 for z in zero), zero.mean(axis=(1, 2))
  # Black apart from read noise, which the response curve lifts (a few levels on average).
  assert black["y1"][..., 0][zero].mean() < 0.05 and black["y2"][..., 0][zero].mean() < 0.05


def test_black_out_one_source_keeps_the_reference(data_root):
  """With black_out_one_source=1 one exposure of every synthetic pair has true-black regions and
  the other and the reference keep the photograph there; a share of 0 leaves the batches of
  black_out_fraction alone unchanged."""
  config = config_for(
    "meif", data_root, synthetic_fraction=1.0, batch_size=8, patch_size=24, black_out_fraction=1.0
  )
  both = make_training_source("meif", config).batch(3)
  config.black_out_one_source = 0.0
  assert_batches_equal(both, make_training_source("meif", config).batch(3))
  config.black_out_one_source = 1.0
  one = make_training_source("meif", config).batch(3)
  y1, y2, reference = (one[key][..., 0] for key in ("y1", "y2", "reference"))
  assert (reference > 0).mean() > 0.95  # the photograph survives in the reference
  black1, black2 = y1 == 0, y2 == 0
  for b1, b2, r in zip(black1, black2, reference):
    blacked, other = (b1, b2) if b1.mean() > b2.mean() else (b2, b1)
    # The other exposure is not blacked out (a dark, under-exposed shot has a few true zeros of its
    # own), and the reference keeps the photograph where the blacked-out one is black.
    assert 0.1 < blacked.mean() < 0.85 and blacked.mean() > other.mean() + 0.1, blacked.mean()
    assert r[blacked & ~other].mean() > 0.1
  # Both exposures get blacked out in some examples of the batch.
  assert (black1.mean(axis=(1, 2)) > 0.1).any() and (black2.mean(axis=(1, 2)) > 0.1).any()
  with pytest.raises(ValueError, match=r"config\.data\.black_out_one_source must be in \[0, 1\]"):
    make_training_source("meif", config_for("meif", data_root, black_out_one_source=2.0))


def test_config_errors_name_the_field(data_root):
  config = default_data_config("mfif")
  with pytest.raises(
    ValueError, match=r"config\.data\.data_dir is not set: set --config\.data\.data_dir"
  ):
    make_training_source("mfif", config)
  with pytest.raises(ValueError, match=r"Unknown data config field config\.data\.bach_size"):
    make_training_source("mfif", {"data_dir": str(data_root), "bach_size": 3})
  with pytest.raises(ValueError, match=r"config\.data\.patch_size must be an integer >= 11"):
    make_training_source("mfif", {"data_dir": str(data_root), "patch_size": 4})
  with pytest.raises(ValueError, match=r"config\.data\.multi_focus\.sigmas"):
    make_training_source("mfif", {"data_dir": str(data_root), "multi_focus": {"sigmas": (1, 2)}})
  with pytest.raises(ValueError, match="Unknown training task 'mif'"):
    default_data_config("mif")
  with pytest.raises(FileNotFoundError, match="No sice data"):
    make_training_source("meif", {"data_dir": str(data_root / "clean_natural")})
  with pytest.raises(ValueError, match="step must be a non-negative integer"):
    make_training_source("ivf", {"data_dir": str(data_root)}).batch(-1)
  # A plain dict and a ConfigDict are the same config.
  as_dict = make_training_source("mfif", {"data_dir": str(data_root), "batch_size": 2}).batch(4)
  as_config = make_training_source(
    "mfif", ml_collections.ConfigDict({"data_dir": str(data_root), "batch_size": 2})
  ).batch(4)
  assert_batches_equal(as_dict, as_config)


def test_shard_batch():
  rng = np.random.default_rng(SEED)
  batch = {
    "y1": rng.random((6, 5, 7, 1), dtype=np.float32),
    "crcb1": rng.random((6, 5, 7, 2), dtype=np.float32),
  }
  sharded = shard_batch(batch, 3)
  assert sharded["y1"].shape == (3, 2, 5, 7, 1) and sharded["crcb1"].shape == (3, 2, 5, 7, 2)
  np.testing.assert_array_equal(sharded["y1"][1, 0], batch["y1"][2])
  with pytest.raises(ValueError, match="Batch size 6 is not divisible by 4 devices"):
    shard_batch(batch, 4)
  with pytest.raises(ValueError, match="same leading"):
    shard_batch({"a": np.zeros((4, 2)), "b": np.zeros((2, 2))}, 2)
  with pytest.raises(ValueError, match="positive integer"):
    shard_batch(batch, 0)


REAL_DATA = SHARED_DATA


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"benchmark images not found at {REAL_DATA}")
@pytest.mark.parametrize("task", ["mfif", "meif", "ivf"])
def test_real_data_root(task):
  config = config_for(task, REAL_DATA, max_images=2, cache=False, batch_size=2)
  config.patch_size = 64
  source = make_training_source(task, config)
  batch = source.batch(0)
  assert batch["y1"].shape == (2, 64, 64, 1)
  assert all(0.0 <= v.min() and v.max() <= 1.0 for v in batch.values())
