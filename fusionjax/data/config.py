"""The data fields of a training config: defaults with their reasons, and their validation (once).

``config.data`` of every stage config is :func:`default_data_config` of its stage, overridden by
``--config.data.<field>=value``; :func:`resolve_data_config` completes a partial config with the
defaults and checks every field (:func:`fusionjax.data.make_training_source` calls it).
"""

from __future__ import annotations

from typing import Mapping

import ml_collections
import numpy as np

from fusionjax import tasks
from fusionjax.data import readers, synthetic


def default_data_config(task: str) -> ml_collections.ConfigDict:
  """The data fields of a training config, with the reason for each default.

  Experiment configs put this under ``config.data`` and override fields, e.g.
  ``--config.data.data_dir=/path/to/data --config.data.batch_size=16``.

  Args:
    task: 'mfif', 'meif' or 'ivf'.

  Returns:
    A ConfigDict with the fields below.
  """
  _check_task(task)
  config = ml_collections.ConfigDict()
  # Root laid out as in docs/DESIGN.md §5 (clean_natural/, sice16/, roadscene/, ...). Required.
  config.data_dir = ml_collections.config_dict.placeholder(str)
  # Global batch size (all processes and devices together). The paper does not give it; 8 patches of
  # 128 px fit a single accelerator for FRUFN (N=5) and EFRUFN with room to spare.
  config.batch_size = 8
  # Square crop side in pixels. 128 is a multiple of every window and pooling factor of the network
  # (windows 2 and 4, pooling 8) and large enough for blobs of defocus and exposure context.
  config.patch_size = 128
  # Seed of the data order and of the synthesis; batches are a pure function of (seed, step).
  config.seed = 0
  # Use only the first N items (naturally sorted) of each set: a cap for smoke runs. None = all.
  config.max_images = ml_collections.config_dict.placeholder(int)
  # Keep every decoded image in memory as uint8; the sets are small (clean_natural decodes to about
  # 290 MB, RoadScene to 110 MB) and decoding dominates the cost of a batch otherwise.
  config.cache = True
  # Random horizontal/vertical flips and 90° rotations, the same for both sources and the reference;
  # fusion is equivariant to them, so they multiply the data for free.
  config.augment = True
  # Threads computing the examples of one batch (numpy, scipy and Pillow release the GIL). 1 = serial.
  config.num_workers = 1
  # Every k-th item (in natural order) of every set is held back from training when k > 0: the
  # validation split (synthetic pairs from held-back photographs, held-back RoadScene training pairs,
  # held-back SICE training scenes), never a test set. 0 = train on everything.
  config.holdout_every = 0
  # True: the source yields only the held-back items (the validation split) instead of the rest.
  config.holdout = False

  if task in ("mfif", "meif"):
    # Image sets (list_images names) the synthetic pairs are made from: 'clean_natural' (210 photos)
    # and, where the data root has it, 'more_natural' (99 more), e.g. ('clean_natural', 'more_natural').
    config.image_sets = ("clean_natural",)
  if task == "mfif":
    # Real-MFF root (imageA/, imageB/, Fusion/), optional: real multi-focus triples with references.
    config.real_mff_dir = ml_collections.config_dict.placeholder(str)
    # Share of examples drawn from Real-MFF when real_mff_dir is set: half real, half synthetic keeps
    # real defocus in every batch while the synthetic pairs add scene variety.
    config.real_mff_fraction = 0.5
    config.multi_focus = ml_collections.ConfigDict(
      {
        "sigma_range": synthetic.DEFAULT_SIGMA_RANGE,
        "mask_fraction_range": synthetic.DEFAULT_MASK_FRACTION_RANGE,
        "mask_cells_range": synthetic.DEFAULT_MASK_CELLS_RANGE,
        "gamma": synthetic.DEFAULT_BLUR_GAMMA,
      }
    )
  elif task == "meif":
    # Share of the synthetic pairs made from a photograph with random regions set to true black
    # (synthetic.black_out), so that black stays black (medical backgrounds, night skies). 0 draws
    # nothing extra, so runs from before the field keep their data.
    config.black_out_fraction = 0.0
    # Share of those black-out pairs in which one exposure alone (drawn at random) is blacked out
    # after synthesis while the reference keeps the photograph: a black source carries nothing and
    # the other one's content must survive (a SPECT slice is black where the MRI shows tissue). The
    # rest black out the photograph itself, so both exposures and the reference are black there.
    config.black_out_one_source = 0.0
    # Share of synthetic multi-exposure pairs (from clean_natural); the rest are SICE training pairs.
    # Half and half: SICE has real exposures and references but few scenes (11 staged here).
    config.synthetic_fraction = 0.5
    # SICE split used for training; its 'test' split stays for evaluation.
    config.sice_split = "train"
    config.multi_exposure = ml_collections.ConfigDict(
      {
        "under_ev": synthetic.DEFAULT_UNDER_EV,
        "over_ev": synthetic.DEFAULT_OVER_EV,
        "response_gamma_range": synthetic.DEFAULT_RESPONSE_GAMMA_RANGE,
        "response_contrast_range": synthetic.DEFAULT_RESPONSE_CONTRAST_RANGE,
        "shot_noise_range": synthetic.DEFAULT_SHOT_NOISE_RANGE,
        "read_noise_range": synthetic.DEFAULT_READ_NOISE_RANGE,
      }
    )
  else:
    # RoadScene split used for training: 'train' excludes the 50 test pairs; TNO is never trained on.
    config.roadscene_split = "train"
  return config


def _check_task(task: str) -> None:
  # The trained stages; MIF is fused by the stage-2 model, never trained (docs/DESIGN.md §1).
  if task not in tasks.STAGES:
    raise ValueError(
      f"Unknown training task {task!r}; use one of {', '.join(tasks.STAGES)} "
      "(MIF uses the MEIF model without training)."
    )


def _merge(defaults: dict, overrides: Mapping, prefix: str) -> dict:
  merged = dict(defaults)
  for key, value in overrides.items():
    if key not in defaults:
      raise ValueError(
        f"Unknown data config field {prefix}{key}; known fields: {', '.join(sorted(defaults))}."
      )
    if isinstance(defaults[key], dict):
      if not isinstance(value, Mapping):
        raise ValueError(f"{prefix}{key} must be a mapping, got {value!r}.")
      merged[key] = _merge(defaults[key], value, f"{prefix}{key}.")
    else:
      merged[key] = value
  return merged


#: The smallest crop: every stage's loss takes SSIM with an 11 x 11 window (fusionjax.losses).
MIN_PATCH_SIZE = 11


def check_patch_size(value) -> None:
  """Raises ValueError unless ``value`` is an integer crop size the losses can use."""
  if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < MIN_PATCH_SIZE:
    raise ValueError(
      f"config.data.patch_size must be an integer >= {MIN_PATCH_SIZE} (the SSIM window of "
      f"the losses), got {value!r}; set --config.data.patch_size larger."
    )


def resolve_data_config(task: str, data_config: Mapping | ml_collections.ConfigDict | None) -> dict:
  """Completes ``data_config`` with :func:`default_data_config` and checks every field.

  Args:
    task: 'mfif', 'meif' or 'ivf'.
    data_config: a ConfigDict or dict of the fields to set (unknown fields are errors, to catch typos).

  Returns:
    A plain dict of all fields.

  Raises:
    ValueError: unknown field, data_dir unset, or a value out of range (naming ``config.data.<field>``).
  """
  _check_task(task)
  defaults = default_data_config(task).to_dict()
  if data_config is None:
    data_config = {}
  if isinstance(data_config, ml_collections.ConfigDict):
    data_config = data_config.to_dict()
  config = _merge(defaults, data_config, "config.data.")
  if config["data_dir"] is None or str(config["data_dir"]) == "":
    raise ValueError(
      "config.data.data_dir is not set: set --config.data.data_dir=DIR (a root laid out "
      "as in docs/DESIGN.md §5, e.g. with clean_natural/, sice16/, roadscene/)."
    )

  def require(condition: bool, field: str, what: str):
    if not condition:
      raise ValueError(f"config.data.{field} must be {what}, got {config[field]!r}.")

  def is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

  require(
    is_int(config["batch_size"]) and config["batch_size"] > 0, "batch_size", "a positive integer"
  )
  check_patch_size(config["patch_size"])
  require(is_int(config["seed"]) and config["seed"] >= 0, "seed", "a non-negative integer")
  require(
    config["max_images"] is None or (is_int(config["max_images"]) and config["max_images"] > 0),
    "max_images",
    "None or a positive integer",
  )
  require(
    is_int(config["num_workers"]) and config["num_workers"] >= 1, "num_workers", "an integer >= 1"
  )
  require(
    is_int(config["holdout_every"]) and config["holdout_every"] >= 0,
    "holdout_every",
    "a non-negative integer",
  )
  require(isinstance(config["holdout"], bool), "holdout", "True or False")
  require(
    not config["holdout"] or config["holdout_every"] > 0,
    "holdout",
    "False unless config.data.holdout_every > 0 (nothing is held back)",
  )
  if "image_sets" in config:
    if isinstance(config["image_sets"], str):
      config["image_sets"] = (config["image_sets"],)
    sets = tuple(config["image_sets"])
    known = tuple(name for name, r in readers.DATASETS.items() if r.is_image_set)
    require(
      len(sets) > 0 and all(name in known for name in sets) and len(set(sets)) == len(sets),
      "image_sets",
      f"distinct names among {', '.join(known)}",
    )
    config["image_sets"] = sets
  fractions = (
    "real_mff_fraction",
    "synthetic_fraction",
    "black_out_fraction",
    "black_out_one_source",
  )
  for field in fractions:
    if field in config:
      require(0.0 <= config[field] <= 1.0, field, "in [0, 1]")
  return config
