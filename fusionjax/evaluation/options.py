"""What an evaluation is asked to do: :class:`EvalOptions`, one field per flag of ``evaluate.py``."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from fusionjax import tiling


@dataclasses.dataclass
class EvalOptions:
  """What ``evaluate.py`` was asked to do (one field per flag).

  Exactly one of ``ckpt``, ``fused_dir`` and ``method`` produces the fused images, unless
  ``compare`` is given, which only tabulates earlier evaluations.
  """

  out: str | None = None  # Output folder (or the Markdown file for ``compare``).
  ckpt: Any = None  # Stage workdir of a trained model, 'shipped', or a loaded FusionModel.
  fused_dir: str | None = None  # Folder of another method's fused images, named after the pairs.
  fused_pattern: str | None = (
    None  # File-name template of the fused images ('{name}_IFCNN.*'); None: by name.
  )
  pattern_method: str | None = (
    None  # The value of {method} in fused_pattern (set per method by methods_dir).
  )
  methods_dir: str | None = (
    None  # Folder of several methods' results (subfolders or method suffixes).
  )
  method: str | None = None  # A built-in baseline: 'average', 'max' or 'mertens'.
  compare: Sequence[
    str
  ] = ()  # Evaluation folders (or summary.json files) to tabulate side by side.
  progress: bool = True  # A progress bar for methods_dir runs.
  dataset: str | None = None  # A fusionjax.data.DATASETS key, or 'folders'.
  data_dir: str | None = None  # Data root or the dataset's own folder.
  split: str | None = None  # Dataset split; None takes the reader's default.
  dirs: Sequence[str] = ()  # Source folders for dataset 'folders' (in the task's source order).
  reference_dir: str | None = None  # Reference folder for dataset 'folders'.
  task: str | None = None  # Task of the 'folders' pairs (one of fusionjax.tasks.TASKS).
  convention: str = "clean"  # Metric convention: 'clean' or 'paper' (docs/DESIGN.md §6).
  metrics: Sequence[str] | None = None  # Metric names; None for all.
  max_pairs: int | None = None  # Evaluate the first N pairs only.
  max_side: int | None = None  # Downscale pairs whose longer side exceeds this (quick runs only).
  allow_missing: bool = (
    False  # With fused_dir: score the pairs that have a fused file, skip the rest.
  )
  overwrite: bool = False  # Replace the results already in ``out`` (as a whole).
  strict: bool = False  # evaluate.py exits with code 1 when some pair could not be scored.
  tile_size: int = tiling.DEFAULT_TILE_SIZE  # Larger images are fused in tiles.
  tile_overlap: int = tiling.DEFAULT_TILE_OVERLAP  # Overlap of neighbouring tiles.
  pad_multiple: int | None = (
    None  # Coarser input padding: fewer compiled shapes, slightly other results.
  )
  sequence: str | None = (
    None  # Rule for more than two sources (fusionjax.inference); None: the task's.
  )
  name: str | None = None  # Label of the method in tables; default derived from the source.
  measure_flops: bool = True  # XLA cost analysis of the forward pass at the first image's size.
