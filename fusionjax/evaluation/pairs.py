"""The pairs an evaluation scores, and their images as the metrics see them.

A pair comes from a registered dataset (``fusionjax.data.DATASETS``) or from folders of matching
file names (``'folders'``). A pair whose files cannot be used raises :class:`PairError`: the run
records it as unscored, with the reason, and goes on with the others.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from fusionjax import imageio

#: ``--dataset`` value for pairs matched by file name across ``--dirs`` (any folders of images).
FOLDERS = "folders"


def _data_module():
  from fusionjax import data  # Deferred: compare and the baselines on folders need little of it.

  return data


def select_pairs(
  dataset: str,
  data_dir: str | None = None,
  *,
  split: str | None = None,
  dirs: Sequence[str] = (),
  reference_dir: str | None = None,
  task: str | None = None,
  max_pairs: int | None = None,
) -> tuple[list, str | None, str | None]:
  """Lists the pairs to evaluate.

  Args:
    dataset: a ``fusionjax.data.DATASETS`` key, or ``'folders'`` with ``dirs``.
    data_dir: the data root or the dataset's own folder (registered datasets).
    split: the split; ``None`` takes the reader's default.
    dirs: for ``'folders'``: two or more source folders whose files match by name.
    reference_dir: for ``'folders'``: an optional reference folder.
    task: for ``'folders'``: the task of the pairs.
    max_pairs: keep the first N pairs (in natural name order).

  Returns:
    ``(pairs, task of the pairs, resolved split)``.
  """
  data = _data_module()
  if max_pairs is not None and max_pairs < 1:
    raise ValueError(f"max_pairs must be positive, got {max_pairs}.")
  if dataset is None:
    raise ValueError(
      f"No dataset given; pass --dataset with one of {', '.join(sorted(data.DATASETS))} or "
      f"'{FOLDERS}' (with --dirs)."
    )
  if dataset == FOLDERS:
    if len(dirs) < 2:
      raise ValueError(
        f"--dataset {FOLDERS} needs --dirs with two or more comma-separated source folders, "
        "in the task's source order (e.g. --dirs vis,ir)."
      )
    pairs = data.folder_pairs(*dirs, task=task, reference_dir=reference_dir)
    resolved_split, pairs_task = None, task
  else:
    if dirs:
      raise ValueError(
        f"--dirs is only used with --dataset {FOLDERS}; drop it or use --dataset {FOLDERS}."
      )
    reader = data.DATASETS.get(dataset)
    if reader is None:
      raise ValueError(
        f"Unknown dataset {dataset!r}; use one of {', '.join(sorted(data.DATASETS))} or "
        f"'{FOLDERS}'."
      )
    resolved_split = split if split is not None else reader.default_split
    pairs = data.list_pairs(dataset, data_dir, split=resolved_split)
    pairs_task = reader.task
  if max_pairs is not None:
    pairs = pairs[:max_pairs]
  return list(pairs), pairs_task, resolved_split


class PairError(ValueError):
  """A pair that cannot be scored (its files are missing, unreadable or of the wrong size)."""


def load_pair(pair):
  """The pair's images; a file that cannot be used makes a :class:`PairError` with the reason."""
  try:
    return _data_module().load_pair(pair)
  except (FileNotFoundError, ValueError) as error:
    raise PairError(str(error)) from error


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Resizes a [0, 1] image with Lanczos filtering (through 8-bit levels, as the files hold)."""
  u8 = imageio.to_uint8(image)
  squeeze = u8.ndim == 3 and u8.shape[-1] == 1
  pil = Image.fromarray(u8[..., 0] if squeeze else u8)
  out = np.asarray(pil.resize((width, height), Image.Resampling.LANCZOS), np.float32) / 255.0
  return out[..., None] if out.ndim == 2 else out


def downscaled_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
  """The size after shrinking so the longer side is at most ``max_side`` (aspect ratio kept)."""
  if not max_side or max(height, width) <= max_side:
    return height, width
  scale = max_side / max(height, width)
  return max(1, round(height * scale)), max(1, round(width * scale))
