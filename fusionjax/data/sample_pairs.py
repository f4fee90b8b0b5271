"""The real sample pairs shipped inside the package (``fusionjax/data/samples/``, see its README.md).

The folder is laid out like a data root, so every reader works on it as well.
"""

from __future__ import annotations

from pathlib import Path

from fusionjax.data.pairs import Pair
from fusionjax.data.readers import dataset_dir, list_pairs

_SAMPLES_DIR = Path(__file__).resolve().parent / "samples"

#: Sample name -> the reader that lists it (one pair each).
SAMPLE_DATASETS = ("tno", "lytro", "mefb", "harvard_mri_ct", "harvard_mri_spect")


def samples_dir() -> Path:
  """The shipped samples' folder, usable as ``data_dir`` for any reader of its sets."""
  if not _SAMPLES_DIR.is_dir():
    raise FileNotFoundError(
      f"The sample folder {_SAMPLES_DIR} is missing: the package was installed without its data "
      "files. Reinstall fusionjax (package data 'samples/**')."
    )
  return _SAMPLES_DIR


def sample_path(name: str) -> Path:
  """The folder of one sample set inside :func:`samples_dir` (e.g. ``'tno'`` -> ``samples/tno``).

  Args:
    name: one of :data:`SAMPLE_DATASETS`.

  Returns:
    The folder, which a reader accepts as ``data_dir``.
  """
  _check_name(name)
  return dataset_dir(name, samples_dir())


def sample_pair(name: str) -> Pair:
  """The shipped pair of one set.

  Args:
    name: one of :data:`SAMPLE_DATASETS` (``'tno'`` is TNO pair '37', ``'lytro'`` lytro-20,
      ``'mefb'`` WindowTrim, ``'harvard_mri_ct'`` '25', ``'harvard_mri_spect'`` '30').

  Returns:
    The validated :class:`Pair`.
  """
  _check_name(name)
  (pair,) = list_pairs(name, samples_dir())
  return pair


def list_sample_pairs() -> list[Pair]:
  """All shipped pairs, in the order of :data:`SAMPLE_DATASETS`."""
  return [sample_pair(name) for name in SAMPLE_DATASETS]


def _check_name(name: str) -> None:
  if name not in SAMPLE_DATASETS:
    raise ValueError(f"Unknown sample {name!r}; samples: {', '.join(SAMPLE_DATASETS)}.")
