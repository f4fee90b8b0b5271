"""Running a trained stage, a baseline or another method's fused images over a benchmark set.

One core loop (:func:`_evaluate`) serves the three sources of fused images; they differ only in how a
pair's fused image is produced:

- :func:`evaluate_checkpoint`: a stage checkpoint fuses the pair (tiled above ``tile_size``);
- :func:`evaluate_baseline`: a pixel-wise rule of :mod:`fusionjax.evaluation.baselines`;
- :func:`evaluate_fused_dir`: a file of another method, matched to the pair by name, or by a file-name
  template (``fused_pattern``: ``'{name}_IFCNN.*'``, ``'lytro_{index:02d}_SESF.*'``, see
  :func:`fused_pattern_regex`) for results as their authors distribute them.

Metrics are computed on the 8-bit luma of the fused image exactly as it is written to disk (the
BT.601 Y of the rounded RGB, DESIGN §6), and on the 8-bit luma of the sources (and of the reference,
when the pair has one): scoring a folder of fused PNGs afterwards with ``--fused_dir`` gives the
same numbers as the run that wrote them.

A pair whose files cannot be used (an unreadable or truncated image, a fused image of another size,
a fused file missing under ``allow_missing``) is not scored: it gets a row in ``metrics.csv`` with
the reason in the ``error`` column and an entry in ``summary.json``'s ``unscored_pairs``, and every
other pair is scored; only when no pair can be scored is it an error.

The output folder is written as a whole: everything goes to a temporary folder beside it, which
replaces it once complete. A folder that already holds results is refused unless ``overwrite`` is
set, so a run never mixes its files with an earlier run's, and a failed run leaves no files behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import math
import os
import re
import shutil
import string
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from fusionjax import imageio
from fusionjax import inference
from fusionjax.evaluation import baselines
from fusionjax.evaluation import reports

logger = logging.getLogger(__name__)

#: ``--dataset`` value for pairs matched by file name across ``--dirs`` (any folders of images).
FOLDERS = "folders"

# How many missing names an error lists before counting the rest.
_MAX_LISTED = 10
#: What an evaluation writes into its output folder (``overwrite`` replaces only such folders).
OUTPUT_FILES = ("fused", "metrics.csv", "summary.json", "summary.md")
# BT.601 luma weights (as fusionjax.color and OpenCV) applied to 8-bit RGB.
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


@dataclasses.dataclass
class EvalOptions:
  """What ``evaluate.py`` was asked to do (one field per flag).

  Exactly one of ``ckpt``, ``fused_dir`` and ``method`` produces the fused images, unless
  ``compare`` is given, which only tabulates earlier evaluations.
  """

  out: str | None = None  # Output folder (or the Markdown file for ``compare``).
  ckpt: str | None = None  # Stage workdir of a trained model.
  fused_dir: str | None = None  # Folder of another method's fused images, named after the pairs.
  fused_pattern: str | None = None  # File-name template of the fused images ('{name}_IFCNN.*'); None: by name.
  methods_dir: str | None = None  # Folder of several methods' results (subfolders or method suffixes).
  method: str | None = None  # A built-in baseline: 'average' or 'max'.
  compare: Sequence[str] = ()  # Evaluation folders (or summary.json files) to tabulate side by side.
  progress: bool = True  # A progress bar for methods_dir runs.
  dataset: str | None = None  # A fusionjax.data.DATASETS key, or 'folders'.
  data_dir: str | None = None  # Data root or the dataset's own folder.
  split: str | None = None  # Dataset split; None takes the reader's default.
  dirs: Sequence[str] = ()  # Source folders for dataset 'folders' (in the task's source order).
  reference_dir: str | None = None  # Reference folder for dataset 'folders'.
  task: str | None = None  # Task of the 'folders' pairs ('mfif', 'meif', 'ivf', 'mif').
  convention: str = "clean"  # Metric convention: 'clean' or 'paper' (DESIGN §6).
  metrics: Sequence[str] | None = None  # Metric names; None for all.
  max_pairs: int | None = None  # Evaluate the first N pairs only.
  max_side: int | None = None  # Downscale pairs whose longer side exceeds this (quick runs only).
  allow_missing: bool = False  # With fused_dir: score the pairs that have a fused file, skip the rest.
  overwrite: bool = False  # Replace the results already in ``out`` (as a whole).
  strict: bool = False  # evaluate.py exits with code 1 when some pair could not be scored.
  tile_size: int = inference.DEFAULT_TILE_SIZE  # Larger images are fused in tiles.
  tile_overlap: int = inference.DEFAULT_TILE_OVERLAP  # Overlap of neighbouring tiles.
  pad_multiple: int | None = None  # Coarser input padding: fewer compiled shapes, slightly other results.
  name: str | None = None  # Label of the method in tables; default derived from the source.
  measure_flops: bool = True  # XLA cost analysis of the forward pass at the first image's size.


def _metrics_module():
  from fusionjax import metrics  # Deferred: scipy-heavy, and compare needs none of it.
  return metrics


def _data_module():
  from fusionjax import data  # Deferred: compare and the baselines on folders need little of it.
  return data


def check_metric_names(names: Sequence[str] | None) -> list[str]:
  """Validates ``--metrics`` (case-sensitive names of DESIGN §6); ``None`` means all.

  Args:
    names: metric names or None.

  Returns:
    The list of names, in the order given.
  """
  known = list(_metrics_module().METRIC_NAMES)
  if names is None or len(names) == 0:
    return known
  names = [n.strip() for n in names if n.strip()]
  unknown = [n for n in names if n not in known]
  if unknown:
    lower = {k.lower(): k for k in known}
    hints = [f"{n} (did you mean {lower[n.lower()]}?)" if n.lower() in lower else n for n in unknown]
    raise ValueError(f"Unknown metric(s): {', '.join(hints)}. Known metrics: {', '.join(known)}.")
  return names


def check_convention(convention: str) -> str:
  """Raises ValueError unless ``convention`` is 'clean' or 'paper'."""
  if convention not in ("clean", "paper"):
    raise ValueError(f"Unknown metric convention {convention!r}; use 'clean' (textbook definitions, the "
                     "default) or 'paper' (the conventions behind the paper's tables).")
  return convention


def select_pairs(dataset: str, data_dir: str | None = None, *, split: str | None = None,
                 dirs: Sequence[str] = (), reference_dir: str | None = None, task: str | None = None,
                 max_pairs: int | None = None) -> tuple[list, str | None, str | None]:
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
    raise ValueError(f"No dataset given; pass --dataset with one of {', '.join(sorted(data.DATASETS))} or "
                     f"'{FOLDERS}' (with --dirs).")
  if dataset == FOLDERS:
    if len(dirs) < 2:
      raise ValueError(f"--dataset {FOLDERS} needs --dirs with two or more comma-separated source folders, "
                       "in the task's source order (e.g. --dirs vis,ir).")
    pairs = data.folder_pairs(*dirs, task=task, reference_dir=reference_dir)
    resolved_split, pairs_task = None, task
  else:
    if dirs:
      raise ValueError(f"--dirs is only used with --dataset {FOLDERS}; drop it or use --dataset {FOLDERS}.")
    reader = data.DATASETS.get(dataset)
    if reader is None:
      raise ValueError(f"Unknown dataset {dataset!r}; use one of {', '.join(sorted(data.DATASETS))} or "
                       f"'{FOLDERS}'.")
    resolved_split = split if split is not None else reader.default_split
    pairs = data.list_pairs(dataset, data_dir, split=resolved_split)
    pairs_task = reader.task
  if max_pairs is not None:
    pairs = pairs[:max_pairs]
  return list(pairs), pairs_task, resolved_split


def luma_levels(image: np.ndarray) -> np.ndarray:
  """The 8-bit luma of an image as stored on disk: (H, W) uint8.

  Colour images are rounded to 8-bit RGB first (what :func:`fusionjax.imageio.save_image` writes)
  and converted with the BT.601 weights, then rounded; grey images are rounded directly.

  Args:
    image: (H, W), (H, W, 1) or (H, W, 3) in [0, 1].

  Returns:
    uint8 array (H, W).
  """
  u8 = imageio.to_uint8(image)
  if u8.ndim == 2:
    return u8
  if u8.shape[-1] == 1:
    return u8[..., 0]
  if u8.shape[-1] != 3:
    raise ValueError(f"Expected a grey or RGB image, got shape {np.shape(image)}.")
  y = u8.astype(np.float64) @ _LUMA_WEIGHTS
  return np.clip(np.round(y), 0, 255).astype(np.uint8)


def score_image(fused: np.ndarray, sources: Sequence[np.ndarray], reference: np.ndarray | None = None, *,
                metrics: Sequence[str] | None = None, convention: str = "clean") -> dict:
  """Scores one fused image against its sources (and reference) on the 8-bit luma.

  Args:
    fused: (H, W, 1 | 3) in [0, 1].
    sources: the sources, same H x W.
    reference: the reference image, or None.
    metrics: names to compute (default all).
    convention: 'clean' or 'paper'.

  Returns:
    ``{name: MetricResult}``.
  """
  fused_y = luma_levels(fused)
  source_y = [luma_levels(s) for s in sources]
  for k, s in enumerate(source_y):
    if s.shape != fused_y.shape:
      raise ValueError(f"The fused image is {fused_y.shape[0]}x{fused_y.shape[1]} (HxW) but source {k + 1} is "
                       f"{s.shape[0]}x{s.shape[1]}; fused images must keep the sources' size.")
  reference_y = luma_levels(reference) if reference is not None else None
  return _metrics_module().compute_metrics(fused_y, source_y, reference=reference_y,
                                           names=list(metrics) if metrics else None, convention=convention)


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


def _safe_name(name: str) -> str:
  """A pair name as a file name: path separators would create folders."""
  return name.replace("/", "_").replace("\\", "_")


def fused_file_index(fused_dir: str | os.PathLike, *, check_stems: bool = True) -> dict[str, Path]:
  """Maps the stem of every image file in ``fused_dir`` (not recursive) to its path.

  Args:
    fused_dir: the folder.
    check_stems: raise when two files share a stem; otherwise the map is keyed by file name.

  Raises:
    FileNotFoundError: the folder does not exist or holds no images.
    ValueError: two files share a stem (e.g. ``01.png`` and ``01.jpg``).
  """
  folder = Path(fused_dir)
  if not folder.is_dir():
    raise FileNotFoundError(f"Fused-image folder {folder} does not exist; pass --fused_dir with the folder of "
                            "fused images named after the pairs (e.g. 01.png for TNO pair 01).")
  index: dict[str, Path] = {}
  for path in sorted(folder.iterdir()):
    if not path.is_file() or path.name.startswith(".") or not imageio.is_image_file(path):
      continue
    key = path.stem if check_stems else path.name
    if key in index:
      raise ValueError(f"Ambiguous fused images {index[key]} and {path}: both are named {key!r}. "
                       "Remove one of them.")
    index[key] = path
  if not index:
    raise FileNotFoundError(f"No image files in {folder}; pass the folder holding the fused images.")
  return index


#: The fields a ``fused_pattern`` may use.
PATTERN_FIELDS = ("name", "index", "method")


def fused_pattern_regex(template: str, name: str | None = None, index: int | None = None,
                        method: str | None = None) -> re.Pattern:
  """The regular expression of the file names a ``fused_pattern`` template stands for.

  The template is a file name with ``str.format`` fields and shell wildcards: ``{name}`` is the
  pair's name (as its reader gives it: TNO ``01``, Lytro ``lytro-01``, MFI-WHU ``MFI-WHU_01``),
  ``{index}`` its 1-based position in the split (``{index:02d}`` zero-padded), ``{method}`` the
  method's name (for ``methods_dir``); ``*`` matches any text and ``?`` one character. Matching is
  case-insensitive on the whole file name. Examples: ``'{name}_IFCNN.*'`` matches
  ``MFI-WHU_01_IFCNN.png`` for pair ``MFI-WHU_01``; ``'lytro_{index:02d}_SESF.*'`` matches
  ``lytro_01_SESF.jpg`` for the first Lytro pair; ``'{index}.bmp'`` matches ``1.bmp``.

  Args:
    template: the template.
    name: the pair's name (None: any text, for checking a template).
    index: the pair's 1-based index (None: any digits).
    method: the method (None: any text, captured as the group ``method``).

  Returns:
    A compiled pattern for ``re.fullmatch``.

  Raises:
    ValueError: a field other than :data:`PATTERN_FIELDS`, no ``{name}`` or ``{index}``, a path
      separator, or a malformed template.
  """
  if "/" in template or "\\" in template:
    raise ValueError(f"--fused_pattern {template!r} holds a path separator; give a file-name template such as "
                     "'{name}_IFCNN.*' and the folder with --fused_dir.")
  try:
    parts = list(string.Formatter().parse(template))
  except ValueError as error:
    raise ValueError(f"--fused_pattern {template!r} is not a valid template ({error}); use fields like {{name}} "
                     "or {index:02d}, and write a literal brace as {{ or }}.") from error
  regex, fields = "", set()
  for literal, field, spec, conversion in parts:
    regex += "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in literal)
    if field is None:
      continue
    if field not in PATTERN_FIELDS or conversion:
      raise ValueError(f"--fused_pattern {template!r} has the field {{{field}}}; use {{name}} (the pair's name), "
                       "{index} or {index:02d} (its 1-based position) and, with --methods_dir, {method}.")
    fields.add(field)
    if field == "name":
      regex += re.escape(name) if name is not None else ".+"
    elif field == "index":
      try:
        regex += re.escape(format(index, spec)) if index is not None else "[0-9]+"
      except ValueError as error:
        raise ValueError(f"--fused_pattern {template!r}: {{index:{spec}}} is not an integer format ({error}); "
                         "use e.g. {index:02d}.") from error
    else:
      regex += re.escape(method) if method is not None else "(?P<method>.+)"
  if not fields & {"name", "index"}:
    raise ValueError(f"--fused_pattern {template!r} names no pair; put {{name}} or {{index}} (e.g. {{index:02d}}) "
                     "where the pair's name or number is in the file names.")
  return re.compile(regex, re.IGNORECASE)


def _pattern_matches(pairs: Sequence, fused_dir: str | os.PathLike, pattern: str, method: str | None
                     ) -> dict[int, Path]:
  """``{position: path}`` of the pairs that one file of ``fused_dir`` matches by ``pattern``."""
  folder = Path(fused_dir)
  files = [p for p in fused_file_index(fused_dir, check_stems=False).values()]
  found: dict[int, Path] = {}
  for k, pair in enumerate(pairs):
    regex = fused_pattern_regex(pattern, _safe_name(pair.name), k + 1, method)
    hits = [p for p in files if regex.fullmatch(p.name)]
    if len(hits) > 1:
      raise ValueError(f"--fused_pattern {pattern!r} matches {len(hits)} files in {folder} for pair {pair.name!r} "
                       f"({', '.join(p.name for p in hits[:4])}); make the pattern more specific (e.g. the suffix).")
    if hits:
      found[k] = hits[0]
  return found


def match_fused_files(pairs: Sequence, fused_dir: str | os.PathLike, *, allow_missing: bool = False,
                      pattern: str | None = None, method: str | None = None
                      ) -> tuple[list[tuple[Any, Path]], list[str]]:
  """Matches fused files to pairs by the pair's name (any image suffix; case-insensitive fallback).

  Args:
    pairs: the pairs to score, in the split's order (``{index}`` counts them from 1).
    fused_dir: the folder of fused images.
    allow_missing: skip pairs without a file instead of raising.
    pattern: a file-name template (:func:`fused_pattern_regex`) instead of the pair's name.
    method: the value of ``{method}`` in ``pattern``.

  Returns:
    ``([(pair, fused path), ...], [names of the pairs without a file])``.

  Raises:
    FileNotFoundError: some pair has no fused file and ``allow_missing`` is false; the message lists
      the first few names.
    ValueError: a bad pattern, or one that matches several files for a pair.
  """
  matched, missing = [], []
  if pattern is not None:
    found = _pattern_matches(pairs, fused_dir, pattern, method)
    for k, pair in enumerate(pairs):
      (matched.append((pair, found[k])) if k in found else missing.append(pair.name))
    how = f"matching --fused_pattern {pattern!r}"
    example = pattern.format(name=_safe_name(pairs[0].name), index=1, method=method or "METHOD") if pairs else ""
  else:
    index = fused_file_index(fused_dir)
    lower: dict[str, list[Path]] = {}
    for stem, path in index.items():
      lower.setdefault(stem.lower(), []).append(path)
    for pair in pairs:
      name = _safe_name(pair.name)
      path = index.get(name)
      if path is None and len(lower.get(name.lower(), [])) == 1:
        path = lower[name.lower()][0]
      if path is None:
        missing.append(pair.name)
      else:
        matched.append((pair, path))
    how, example = "named after its pair", (f"{pairs[0].name}.png" if pairs else "")
  if missing and not allow_missing:
    shown = ", ".join(missing[:_MAX_LISTED]) + (f", ... ({len(missing) - _MAX_LISTED} more)"
                                                if len(missing) > _MAX_LISTED else "")
    hint = ("Name each fused file after its pair (<pair name>.<image suffix>) or pass --fused_pattern with the "
            "file-name template (e.g. '{name}_IFCNN.*')" if pattern is None else
            f"Check the template against the file names (pair 1 expects e.g. {example})")
    raise FileNotFoundError(
        f"{len(missing)} of {len(pairs)} pairs have no fused image {how} in {fused_dir}: {shown}. {hint}, or pass "
        "--allow_missing to score only the pairs that have one.")
  if not matched:
    raise FileNotFoundError(f"None of the {len(pairs)} pairs has a fused image {how} in {fused_dir}; the fused files "
                            f"must be named like {example}" + (" (or pass --fused_pattern)." if pattern is None
                                                              else "."))
  return matched, missing


class PairError(ValueError):
  """A pair that cannot be scored (its files are missing, unreadable or of the wrong size)."""


def _load_pair(pair):
  """The pair's images; a file that cannot be used makes a :class:`PairError` with the reason."""
  try:
    return _data_module().load_pair(pair)
  except (FileNotFoundError, ValueError) as error:
    raise PairError(str(error)) from error


def _is_within(path: Path, folder: Path) -> bool:
  path, folder = path.resolve(), folder.resolve()
  return path == folder or folder in path.parents


def check_output_folder(out: str | os.PathLike, *, overwrite: bool = False,
                        inputs: Sequence[str | os.PathLike | None] = ()) -> Path:
  """Checks the ``--out`` folder of an evaluation before any work is done.

  Args:
    out: the output folder.
    overwrite: allow replacing a folder of earlier results (as a whole).
    inputs: folders or files the run reads (fused images, checkpoint, data); ``out`` must not hold them,
      as replacing it would delete them.

  Returns:
    ``out`` as a Path.

  Raises:
    ValueError: ``out`` is a file, holds results and ``overwrite`` is false, holds files an evaluation
      does not write, or holds one of ``inputs``.
  """
  out = Path(out)
  if out.exists() and not out.is_dir():
    raise ValueError(f"--out {out} is a file; pass the folder to write the results to (e.g. results/my_eval).")
  for path in inputs:
    if path and Path(path).exists() and _is_within(Path(path), out):
      raise ValueError(f"--out {out} holds {path}, which this evaluation reads; write the results to another folder.")
  held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
  if not held:
    return out
  foreign = [name for name in held if name not in OUTPUT_FILES]
  if foreign:
    shown = ", ".join(foreign[:_MAX_LISTED]) + (", ..." if len(foreign) > _MAX_LISTED else "")
    raise ValueError(f"--out {out} is not empty and holds files an evaluation does not write ({shown}); "
                     "write the results to a new or empty folder.")
  if not overwrite:
    raise ValueError(f"--out {out} already holds results ({', '.join(held)}); pass --overwrite to replace them "
                     "as a whole, or write to another folder.")
  return out


@contextlib.contextmanager
def _staged_folder(out: Path):
  """Yields an empty folder beside ``out`` that replaces ``out`` when the block succeeds.

  On failure the staged folder is removed and ``out`` is left as it was; on success the previous
  ``out`` (if any) is removed only once the new one is in place.
  """
  out.parent.mkdir(parents=True, exist_ok=True)
  staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
  try:
    yield staging
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; give it a plain mkdir's mode.
    previous = None
    if out.exists():
      previous = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
      os.replace(out, previous)  # An empty directory is replaced by a rename.
    try:
      os.replace(staging, out)
    except BaseException:
      if previous is not None:
        os.replace(previous, out)
      raise
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  if previous is not None:
    shutil.rmtree(previous, ignore_errors=True)


def _aggregate(results: list[dict], names: Sequence[str]) -> tuple[dict, dict]:
  """Per-metric mean/std/n over images, and the reasons of undefined values."""
  summary = _metrics_module().summarize(results)
  metrics, missing = {}, {}
  total = len(results)
  for name in names:
    entry = summary.get(name) or {}
    n = int(entry.get("n") or 0)
    if n > 0:
      metrics[name] = {"mean": entry.get("mean"), "std": entry.get("std"), "n": n}
    reasons: dict[str, int] = {}
    for result in results:
      value = result.get(name)
      if value is not None and value.value is None:
        reasons[value.reason] = reasons.get(value.reason, 0) + 1
    if reasons:
      undefined = sum(reasons.values())
      listed = "; ".join(reasons)
      missing[name] = listed if undefined == total else f"undefined on {undefined} of {total} images: {listed}"
  return metrics, missing


def _row(name: str, shape, result: Mapping, names: Sequence[str], extras: Mapping) -> dict:
  row = {"name": name, "height": int(shape[0]), "width": int(shape[1])}
  for metric in names:
    value = result.get(metric)
    row[metric] = value.value if value is not None else None
  row.update(extras)
  return row


def _device_name() -> str:
  import jax
  device = jax.devices()[0]
  kind = getattr(device, "device_kind", "") or ""
  return device.platform if kind.lower() in ("", device.platform) else f"{device.platform} ({kind})"


def _evaluate(pairs: Sequence, produce: Callable, out: str | os.PathLike, *, names: Sequence[str],
              convention: str, max_side: int | None, save_fused: bool,
              header: Mapping[str, Any], finalize: Callable[[dict, list], None] | None = None,
              progress: Callable[[], None] | None = None) -> dict:
  """Scores the fused image of every pair and writes metrics.csv, summary.json and summary.md.

  Args:
    pairs: ``(pair, extra)`` items; ``extra`` is passed to ``produce``.
    produce: ``(pair, extra, sources) -> (fused image, dict of extra CSV columns)``.
    out: output folder.
    names: metric names.
    convention: metric convention.
    max_side: downscale pairs above this size first.
    save_fused: write ``out/fused/<name>.png``.
    header: summary fields that describe the run (method, dataset, model, ...).
    finalize: ``(summary, rows) -> None``, completes the summary before it is written.
    progress: called after each pair (scored or not), e.g. to advance a progress bar.

  Returns:
    The summary dict.
  """
  out = Path(out)
  rows, results, unscored = [], [], []
  started = time.perf_counter()
  with _staged_folder(out) as staging:
    for k, (pair, extra) in enumerate(pairs):
      if progress is not None and k:
        progress()
      try:
        loaded = _load_pair(pair)
        sources, reference = list(loaded.sources), loaded.reference
        height, width = sources[0].shape[:2]
        size = downscaled_size(height, width, max_side)
        if size != (height, width):
          sources = [resize_to(s, *size) for s in sources]
          reference = resize_to(reference, *size) if reference is not None else None
        fused, columns = produce(pair, extra, sources)
      except PairError as error:
        logger.warning("[%d/%d] %s: not scored: %s", k + 1, len(pairs), pair.name, error)
        unscored.append({"name": pair.name, "reason": str(error)})
        rows.append({"name": pair.name, "error": str(error)})
        continue
      if save_fused:
        imageio.save_image(staging / "fused" / f"{_safe_name(pair.name)}.png", fused)
      result = score_image(fused, sources, reference, metrics=names, convention=convention)
      results.append(result)
      rows.append(_row(pair.name, size, result, names, columns))
      shown = ", ".join(f"{n}={result[n].value:.4g}" for n in names[:4] if result[n].value is not None)
      logger.info("[%d/%d] %s (%dx%d): %s", k + 1, len(pairs), pair.name, size[0], size[1], shown)
    if progress is not None and pairs:
      progress()
    if not results:
      listed = "; ".join(f"{u['name']}: {u['reason']}" for u in unscored[:3])
      raise ValueError(f"None of the {len(pairs)} pairs could be scored ({listed}"
                       f"{'; ...' if len(unscored) > 3 else ''}). Nothing was written.")
    metrics, missing = _aggregate(results, names)
    summary = {"format": reports.SUMMARY_FORMAT}
    summary.update(header)
    summary.update({"convention": convention, "num_pairs": len(results), "metrics": metrics, "missing": missing,
                    "num_unscored": len(unscored), "unscored_pairs": unscored,
                    "elapsed_s": time.perf_counter() - started})
    summary.setdefault("created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    if finalize is not None:
      finalize(summary, [r for r in rows if "error" not in r])
    metric_columns = ["name", "height", "width"] + list(names)
    first_scored = next(r for r in rows if "error" not in r)
    columns = metric_columns + [c for c in first_scored if c not in metric_columns] + (["error"] if unscored else [])
    reports.write_metrics_csv(rows, staging / "metrics.csv", columns=columns)
    reports.write_summary_json(summary, staging / "summary.json")
    reports.write_text_atomic(staging / "summary.md", reports.summary_markdown(summary))
  if unscored:
    logger.warning("%d of %d pairs were not scored (listed in %s with the reason).", len(unscored), len(pairs),
                   out / "metrics.csv")
  logger.info("Wrote %s, %s and %s.", out / "metrics.csv", out / "summary.json", out / "summary.md")
  return summary


def _header(method: str, dataset: str, split: str | None, task: str | None, options: Mapping) -> dict:
  from fusionjax import __version__
  return {"method": method, "dataset": dataset, "split": split, "task": task,
          "options": dict(options), "fusionjax_version": __version__}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
  start = time.perf_counter()
  value = fn()
  return value, time.perf_counter() - start


def evaluate_checkpoint(ckpt, dataset: str, out: str | os.PathLike, *, data_dir: str | None = None,
                        split: str | None = None, dirs: Sequence[str] = (), reference_dir: str | None = None,
                        task: str | None = None, convention: str = "clean", metrics: Sequence[str] | None = None,
                        max_pairs: int | None = None, max_side: int | None = None,
                        tile_size: int = inference.DEFAULT_TILE_SIZE,
                        tile_overlap: int = inference.DEFAULT_TILE_OVERLAP, pad_multiple: int | None = None,
                        name: str | None = None, measure_flops: bool = True, overwrite: bool = False) -> dict:
  """Runs a stage checkpoint on a benchmark set and scores it.

  Writes ``out/fused/<pair>.png`` (colour where a source is colour), ``out/metrics.csv``,
  ``out/summary.json`` and ``out/summary.md``. The model section of the summary holds the parameter
  count, the FLOPs of the forward pass at the first image's size (XLA's cost analysis with every
  loop iteration counted, the solver's at its mean iteration count on this set; see
  :func:`fusionjax.inference.forward_cost`) and the mean wall time per image (calls that compiled a
  new input shape excluded).

  Args:
    ckpt: a stage workdir (or a loaded ``FusionModel``); ``'shipped'`` runs the shipped weights of the
      stage that serves the dataset's task (:mod:`fusionjax.weights`).
    dataset: a ``fusionjax.data.DATASETS`` key or ``'folders'``.
    out: output folder.
    data_dir: the data root or the dataset's folder.
    split: dataset split (default: the reader's default).
    dirs: source folders for ``'folders'``.
    reference_dir: reference folder for ``'folders'``.
    task: task of ``'folders'`` pairs.
    convention: metric convention ('clean' or 'paper').
    metrics: metric names (default all).
    max_pairs: evaluate the first N pairs.
    max_side: downscale larger pairs first (quick checks; not comparable with published numbers).
    tile_size: images larger than this are fused in tiles.
    tile_overlap: tile overlap.
    pad_multiple: pad inputs to a multiple of this to share compiled shapes across image sizes
      (``None``: exactly as the network pads; see :mod:`fusionjax.inference`).
    name: method label (default e.g. ``'EFRUFN (meif)'``).
    measure_flops: run XLA's cost analysis.
    overwrite: replace the results already in ``out`` (as a whole); without it such an ``out`` is refused.

  Returns:
    The summary dict (as written to ``summary.json``).
  """
  check_convention(convention)
  names = check_metric_names(metrics)
  pairs, pairs_task, split = select_pairs(dataset, data_dir, split=split, dirs=dirs, reference_dir=reference_dir,
                                          task=task, max_pairs=max_pairs)
  ckpt_path = ckpt if isinstance(ckpt, (str, os.PathLike)) and not inference.is_shipped(ckpt) else None
  check_output_folder(out, overwrite=overwrite, inputs=(ckpt_path, data_dir, reference_dir, *dirs))
  fusion_model = inference.load_model(ckpt, task=pairs_task if inference.is_shipped(ckpt) else None)
  from fusionjax import checkpoints
  expected = inference.stage_for_task(pairs_task)
  if expected is not None and fusion_model.task != expected:
    logger.warning("Evaluating a %s checkpoint on %s pairs (%s); the matching stage is %s.", fusion_model.task,
                   pairs_task, dataset, expected)
  description = inference.describe(fusion_model)
  model_info: dict[str, Any] = {"network": description["network"], "params": description["params"],
                                "network_params": description["network_params"],
                                "colornet_params": description["colornet_params"], "config": description["model_config"],
                                "device": _device_name()}
  first_size: list = []  # (H, W) of the first scored pair, as fused (after max_side)
  latencies: list[float] = []
  last: list = []

  def produce(pair, extra, sources):
    del pair, extra
    (fused, info), seconds = _timed(lambda: inference.fuse_images_with_info(
        fusion_model, sources, tile_size=tile_size, tile_overlap=tile_overlap, pad_multiple=pad_multiple))
    if not info.compiled:
      latencies.append(seconds)
    last[:] = [sources]
    first_size[:] = first_size or list(sources[0].shape[:2])
    columns = {"latency_s": seconds, "compiled": info.compiled, "tiles": info.tiles}
    if info.solver_stats:
      columns.update({f"solver_{k}": v for k, v in info.solver_stats.items()})
    return fused, columns

  method = name or f"{description['network']} ({fusion_model.task})"
  metadata = fusion_model.metadata or {}
  header = _header(method, dataset, split, pairs_task,
                   {"max_pairs": max_pairs, "max_side": max_side, "tile_size": tile_size, "tile_overlap": tile_overlap,
                    "pad_multiple": pad_multiple})
  header["checkpoint"] = {"path": fusion_model.path, "step": fusion_model.step, "task": fusion_model.task,
                          "lineage": checkpoints.stage_lineage(metadata) if metadata else []}
  header["model"] = model_info
  def finalize(summary, rows):
    if not latencies and last:
      # Every image compiled a new shape: time one more call on the last image, now compiled.
      _, seconds = _timed(lambda: inference.fuse_images_with_info(
          fusion_model, last[0], tile_size=tile_size, tile_overlap=tile_overlap, pad_multiple=pad_multiple))
      latencies.append(seconds)
    model_info["latency_s"] = float(np.mean(latencies)) if latencies else None
    model_info["latency_n"] = len(latencies)
    solved = [r for r in rows if r.get("solver_num_steps") is not None]
    if solved:
      summary["solver"] = {"n": len(solved), "mean_steps": float(np.mean([r["solver_num_steps"] for r in solved])),
                           "max_rel_residual": max(r.get("solver_rel_residual", math.nan) for r in solved),
                           "converged": int(sum(bool(r.get("solver_converged")) for r in solved))}
    if measure_flops:
      # The solver's loop is counted for as many iterations as it took on average here.
      trips = summary["solver"]["mean_steps"] if solved else None
      cost = inference.forward_cost(fusion_model, *first_size, pad_multiple=pad_multiple, while_trips=trips)
      model_info.update({"flops": cost["flops"], "flops_xla": cost["flops_xla"],
                         "flops_input_size": cost["input_size"], "flops_while_loops": cost["while_loops"],
                         "flops_while_trips": trips, "colornet_flops": cost.get("colornet_flops")})

  return _evaluate([(p, None) for p in pairs], produce, out, names=names, convention=convention,
                   max_side=max_side, save_fused=True, header=header, finalize=finalize)


def evaluate_baseline(method: str, dataset: str, out: str | os.PathLike, *, data_dir: str | None = None,
                      split: str | None = None, dirs: Sequence[str] = (), reference_dir: str | None = None,
                      task: str | None = None, convention: str = "clean", metrics: Sequence[str] | None = None,
                      max_pairs: int | None = None, max_side: int | None = None, name: str | None = None,
                      overwrite: bool = False) -> dict:
  """Scores a built-in pixel-wise baseline ('average' or 'max') on a benchmark set.

  Writes the same files as :func:`evaluate_checkpoint`; the model section holds 0 parameters and the
  mean wall time of the rule per image.

  Args:
    method: a :data:`fusionjax.evaluation.baselines.BASELINES` key.
    dataset: see :func:`evaluate_checkpoint`.
    out: see :func:`evaluate_checkpoint`.
    data_dir: see :func:`evaluate_checkpoint`.
    split: see :func:`evaluate_checkpoint`.
    dirs: see :func:`evaluate_checkpoint`.
    reference_dir: see :func:`evaluate_checkpoint`.
    task: see :func:`evaluate_checkpoint`.
    convention: see :func:`evaluate_checkpoint`.
    metrics: see :func:`evaluate_checkpoint`.
    max_pairs: see :func:`evaluate_checkpoint`.
    max_side: see :func:`evaluate_checkpoint`.
    name: method label (default the baseline's name).
    overwrite: see :func:`evaluate_checkpoint`.

  Returns:
    The summary dict.
  """
  if method not in baselines.BASELINES:
    raise ValueError(f"Unknown baseline {method!r}; use one of {', '.join(baselines.BASELINES)}.")
  check_convention(convention)
  names = check_metric_names(metrics)
  pairs, pairs_task, split = select_pairs(dataset, data_dir, split=split, dirs=dirs, reference_dir=reference_dir,
                                          task=task, max_pairs=max_pairs)
  check_output_folder(out, overwrite=overwrite, inputs=(data_dir, reference_dir, *dirs))
  rule = baselines.BASELINES[method]
  latencies: list[float] = []

  def produce(pair, extra, sources):
    del pair, extra
    fused, seconds = _timed(lambda: rule(sources))
    latencies.append(seconds)
    return fused, {"latency_s": seconds}

  header = _header(name or method, dataset, split, pairs_task, {"max_pairs": max_pairs, "max_side": max_side})
  header["model"] = {"network": method, "params": 0, "flops": None, "device": "numpy"}
  header["checkpoint"] = None
  def finalize(summary, rows):
    del rows
    summary["model"].update({"latency_s": float(np.mean(latencies)), "latency_n": len(latencies)})

  return _evaluate([(p, None) for p in pairs], produce, out, names=names, convention=convention,
                   max_side=max_side, save_fused=True, header=header, finalize=finalize)


def evaluate_fused_dir(fused_dir: str | os.PathLike, dataset: str, out: str | os.PathLike, *,
                       data_dir: str | None = None, split: str | None = None, dirs: Sequence[str] = (),
                       reference_dir: str | None = None, task: str | None = None, convention: str = "clean",
                       metrics: Sequence[str] | None = None, max_pairs: int | None = None,
                       max_side: int | None = None, allow_missing: bool = False, name: str | None = None,
                       overwrite: bool = False, fused_pattern: str | None = None, pattern_method: str | None = None,
                       progress: Callable[[], None] | None = None) -> dict:
  """Scores existing fused images (e.g. another method's results) on a benchmark set.

  Each pair's fused image is ``fused_dir/<pair name>.<any image suffix>``, or the one file whose name
  matches ``fused_pattern`` (:func:`fused_pattern_regex`), and must have the sources' size (or, with
  ``max_side``, either that size or the downscaled one). A fused file that cannot be read or has
  another size leaves its pair unscored (listed with the reason); the others are scored.

  Args:
    fused_dir: folder of fused images.
    dataset: see :func:`evaluate_checkpoint`.
    out: output folder (metrics.csv, summary.json, summary.md; no images are written).
    data_dir: see :func:`evaluate_checkpoint`.
    split: see :func:`evaluate_checkpoint`.
    dirs: see :func:`evaluate_checkpoint`.
    reference_dir: see :func:`evaluate_checkpoint`.
    task: see :func:`evaluate_checkpoint`.
    convention: see :func:`evaluate_checkpoint`.
    metrics: see :func:`evaluate_checkpoint`.
    max_pairs: see :func:`evaluate_checkpoint`.
    max_side: see :func:`evaluate_checkpoint`.
    allow_missing: score the pairs that have a fused file and list the others in the summary.
    name: method label (default the folder's name, or ``pattern_method``).
    overwrite: see :func:`evaluate_checkpoint`.
    fused_pattern: file-name template of the fused images (None: named after the pairs).
    pattern_method: the value of ``{method}`` in ``fused_pattern``.
    progress: called after each pair.

  Returns:
    The summary dict.
  """
  check_convention(convention)
  names = check_metric_names(metrics)
  pairs, pairs_task, split = select_pairs(dataset, data_dir, split=split, dirs=dirs, reference_dir=reference_dir,
                                          task=task, max_pairs=max_pairs)
  matched, missing_pairs = match_fused_files(pairs, fused_dir, allow_missing=allow_missing, pattern=fused_pattern,
                                             method=pattern_method)
  check_output_folder(out, overwrite=overwrite, inputs=(fused_dir, data_dir, reference_dir, *dirs))
  files = {id(pair): path for pair, path in matched}

  def produce(pair, path, sources):
    if path is None:
      raise PairError(f"no fused image in {fused_dir}")
    try:
      fused = imageio.load_image(path)
    except (FileNotFoundError, ValueError) as error:
      raise PairError(str(error)) from error
    height, width = sources[0].shape[:2]
    if fused.shape[:2] != (height, width):
      original = _load_pair(pair).sources[0].shape[:2]
      if max_side and fused.shape[:2] == original:
        fused = resize_to(fused, height, width)
      else:
        raise PairError(f"Fused image {path} is {fused.shape[0]}x{fused.shape[1]} (HxW) but pair {pair.name!r} "
                        f"is {original[0]}x{original[1]}; fused images must keep the sources' size.")
    return fused, {"file": path.name}

  label = name or pattern_method or Path(fused_dir).resolve().name
  header = _header(label, dataset, split, pairs_task,
                   {"max_pairs": max_pairs, "max_side": max_side, "fused_pattern": fused_pattern,
                    "pattern_method": pattern_method, "allow_missing": allow_missing, "metrics": list(names)})
  header.update({"fused_dir": str(Path(fused_dir).resolve()), "model": None, "checkpoint": None,
                 "skipped_pairs": missing_pairs})
  return _evaluate([(pair, files.get(id(pair))) for pair in pairs], produce, out, names=names,
                   convention=convention, max_side=max_side, save_fused=False, header=header, progress=progress)


def run_evaluation(options: EvalOptions):
  """Does what ``evaluate.py``'s flags ask: one entry point for the script and for tests.

  Args:
    options: the flags.

  Returns:
    The summary dict of an evaluation, the Markdown text of a comparison, or, for ``methods_dir``, a
    :class:`fusionjax.evaluation.methods.MethodsRun`.
  """
  if options.methods_dir:
    if options.ckpt or options.fused_dir or options.method:
      raise ValueError("--methods_dir scores the methods' folders; drop --ckpt, --fused_dir and --method (evaluate "
                       "those separately and pass their folders with --compare to include them).")
    if not options.out:
      raise ValueError("--methods_dir needs --out with the folder to write one evaluation per method and compare.md.")
    from fusionjax.evaluation import methods  # pylint: disable=import-outside-toplevel
    return methods.evaluate_methods(options)
  if options.fused_pattern and not options.fused_dir:
    raise ValueError("--fused_pattern names the files in --fused_dir (or --methods_dir); pass one of them.")
  if options.compare:
    if options.out is None:
      raise ValueError("--compare needs --out with the folder for compare.md and compare.png (or a file ending in "
                       ".md for the table alone).")
    if options.ckpt or options.fused_dir or options.method:
      raise ValueError("--compare only tabulates earlier evaluations; drop --ckpt, --fused_dir and --method.")
    return reports.compare_summaries(list(options.compare), options.out)
  sources = [flag for flag, value in (("--ckpt", options.ckpt), ("--fused_dir", options.fused_dir),
                                      ("--method", options.method)) if value]
  if len(sources) != 1:
    raise ValueError("Pass exactly one of --ckpt (a trained stage), --fused_dir (fused images to score) and "
                     f"--method (average or max), or --compare; got {', '.join(sources) or 'none'}.")
  if not options.out:
    raise ValueError("Pass --out with the folder to write the results to.")
  common = dict(data_dir=options.data_dir, split=options.split, dirs=tuple(options.dirs),
                reference_dir=options.reference_dir, task=options.task, convention=options.convention,
                metrics=options.metrics, max_pairs=options.max_pairs, max_side=options.max_side, name=options.name,
                overwrite=options.overwrite)
  if options.ckpt:
    return evaluate_checkpoint(options.ckpt, options.dataset, options.out, tile_size=options.tile_size,
                               tile_overlap=options.tile_overlap, pad_multiple=options.pad_multiple,
                               measure_flops=options.measure_flops, **common)
  if options.method:
    return evaluate_baseline(options.method, options.dataset, options.out, **common)
  return evaluate_fused_dir(options.fused_dir, options.dataset, options.out, allow_missing=options.allow_missing,
                            fused_pattern=options.fused_pattern, **common)
