"""Fusing files: one set of source files (:func:`fuse_files`), and whole folders, as
``fusionjax fuse --dirs A B [C ...] -o OUT`` and ``fusionjax fuse --dataset NAME`` do.

A *job* is one set of sources and the name of its output, ``OUT/<name>.png``. :func:`folder_jobs`
pairs the files of two or more folders by name stem, case-insensitively and whatever their suffixes
(``a/01.JPG`` goes with ``b/01.png``); :func:`dataset_jobs` takes the pairs of a benchmark reader of
:mod:`fusionjax.data`. :func:`fuse_jobs` runs them one by one with a progress bar:

- an output that exists already is skipped unless ``overwrite`` (a rerun redoes only what failed or
  is new);
- a job that cannot be done (a file without partner, an unreadable file, sources of different
  sizes, a write that fails) is recorded with its reason and the run goes on; the :class:`Report`
  lists them at the end;
- every output is written atomically (:func:`fusionjax.imageio.save_image`), so an interrupted run
  leaves no partial image, and a rerun sees only complete ones.

Images of many sizes share compiled programs when the fusion pads them to a coarser multiple
(``pad_multiple`` of :func:`fusionjax.inference.fuse_images`); the report counts the shapes that
were compiled.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fusionjax import imageio
from fusionjax import inference
from fusionjax import stages
from fusionjax import tiling

#: Default ``--pad_multiple`` of folder fusion: sizes within 64 px share one compiled program.
DEFAULT_PAD_MULTIPLE = 64


@functools.lru_cache(maxsize=1)
def readable_suffixes() -> frozenset[str]:
  """Lower-case file suffixes of every format Pillow can open (``.png``, ``.jpg``, ``.tif``, ...)."""
  from PIL import Image

  Image.init()
  return frozenset(
    ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN
  )


def is_readable_image(path: Path) -> bool:
  """Whether ``path`` is a visible file with a suffix Pillow opens."""
  return (
    path.is_file() and not path.name.startswith(".") and path.suffix.lower() in readable_suffixes()
  )


@dataclasses.dataclass(frozen=True)
class Job:
  """One fusion to do.

  Attributes:
    name: the output's stem (``OUT/<name>.png``).
    sources: the source files, in the task's order.
    problem: why the job cannot be attempted (e.g. a file without partner), or None.
  """

  name: str
  sources: tuple[Path, ...]
  problem: str | None = None


def _natural_key(text: str):
  from fusionjax.data.pairs import (
    natural_key,
  )  # Deferred: fusionjax.data imports more than this needs.

  return natural_key(text)


def folder_jobs(dirs: Sequence[str | os.PathLike]) -> list[Job]:
  """Pairs the images of two or more folders by file stem (case-insensitive, any readable suffix).

  Args:
    dirs: the source folders, in the task's source order.

  Returns:
    One job per stem found in any folder, naturally sorted; a stem missing from some folder, or
    held by two files of one folder (``a.png`` and ``A.jpg``), gives a job with its ``problem``.

  Raises:
    ValueError: fewer than two folders.
    FileNotFoundError: a folder does not exist or holds no image.
  """
  folders = [Path(d) for d in dirs]
  if len(folders) < 2:
    raise ValueError(f"--dirs needs two or more source folders, got {len(folders)}.")
  listings: list[dict[str, list[Path]]] = []
  for folder in folders:
    if not folder.is_dir():
      raise FileNotFoundError(
        f"Source folder {folder} does not exist or is not a folder; pass --dirs with "
        "existing folders of images."
      )
    by_key: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
      if is_readable_image(path):
        by_key.setdefault(path.stem.lower(), []).append(path)
    if not by_key:
      raise FileNotFoundError(
        f"No image files in {folder}; pass folders holding the source images."
      )
    listings.append(by_key)
  keys = sorted(set().union(*listings), key=_natural_key)
  jobs = []
  for key in keys:
    found = [listing.get(key, []) for listing in listings]
    name = next(paths[0].stem for paths in found if paths)
    problems = []
    for folder, paths in zip(folders, found):
      if not paths:
        problems.append(f"no file named {name}.* in {folder}")
      elif len(paths) > 1:
        problems.append(f"{' and '.join(str(p) for p in paths)} share the name {name!r}; keep one")
    jobs.append(
      Job(name=name, sources=tuple(p[0] for p in found if p), problem="; ".join(problems) or None)
    )
  return jobs


def dataset_jobs(
  dataset: str, data_dir: str | os.PathLike | None, split: str | None = None
) -> list[Job]:
  """The pairs of a benchmark reader of :mod:`fusionjax.data` as jobs named after the pairs.

  Files are not opened here: an unreadable file or a size mismatch fails its job only.

  Raises:
    ValueError, FileNotFoundError: unknown dataset or split, missing data, files without partner.
  """
  from fusionjax import data

  pairs = data.list_pairs(dataset, data_dir, split=split, validate=False)
  return [
    Job(name=pair.name.replace("/", "_").replace("\\", "_"), sources=pair.sources) for pair in pairs
  ]


@dataclasses.dataclass
class Report:
  """What :func:`fuse_jobs` did.

  Attributes:
    out_dir: the output folder.
    fused: names fused in this run.
    skipped: names whose output existed already (not redone).
    failed: ``(name, reason)`` of the jobs that could not be done.
    compiled: how many new input shapes were compiled.
    seconds: wall time of the run.
  """

  out_dir: Path
  fused: list[str] = dataclasses.field(default_factory=list)
  skipped: list[str] = dataclasses.field(default_factory=list)
  failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  compiled: int = 0
  seconds: float = 0.0

  def lines(self) -> list[str]:
    """The report for people: one summary line, then one line per failure."""
    total = len(self.fused) + len(self.skipped) + len(self.failed)
    parts = [
      f"Fused {len(self.fused)} of {total} pairs into {self.out_dir} in {self.seconds:.1f} s "
      f"({self.compiled} input shape{'s' if self.compiled != 1 else ''} compiled)"
    ]
    if self.skipped:
      parts.append(f"skipped {len(self.skipped)} already fused (--overwrite redoes them)")
    if self.failed:
      parts.append(f"{len(self.failed)} failed:")
    lines = [", ".join(parts) + ("" if self.failed else ".")]
    lines += [f"  {name}: {reason}" for name, reason in self.failed]
    return lines


def _output_alpha(decoded: Sequence[imageio.DecodedImage]) -> np.ndarray | None:
  alphas = [d.alpha for d in decoded if d.alpha is not None]
  return np.minimum.reduce(alphas) if alphas else None


def fuse_jobs(
  jobs: Sequence[Job],
  out_dir: str | os.PathLike,
  fuse: Callable[[list[np.ndarray]], tuple[np.ndarray, bool]],
  *,
  overwrite: bool = False,
  bit_depth: int | None = None,
  progress: bool = True,
) -> Report:
  """Fuses every job into ``out_dir/<name>.png``, going on past failures.

  Args:
    jobs: from :func:`folder_jobs` or :func:`dataset_jobs`.
    out_dir: the output folder (created when missing).
    fuse: ``images -> (fused image, whether a new shape was compiled)``; images are float32
      (H, W, 1 | 3) in [0, 1] of one size.
    overwrite: redo jobs whose output exists (default: skip them).
    bit_depth: bits of data in 16-bit grey sources (None: from the data; see
      :func:`fusionjax.imageio.read_image`).
    progress: show a progress bar (pairs done / total, rate, ETA) on stderr.

  Returns:
    The :class:`Report`.
  """
  import time
  from tqdm import tqdm

  out_dir = Path(out_dir)
  report = Report(out_dir=out_dir)
  started = time.perf_counter()
  bar = tqdm(
    total=len(jobs),
    unit="pair",
    desc="fuse",
    file=sys.stderr,
    disable=not progress,
    dynamic_ncols=True,
    mininterval=0.5,
  )
  write = bar.write if progress else (lambda line: print(line, file=sys.stderr))
  try:
    for job in jobs:
      bar.set_postfix_str(job.name, refresh=False)
      out = out_dir / f"{job.name}.png"
      try:
        if job.problem:
          raise ValueError(job.problem)
        if out.exists() and not overwrite:
          report.skipped.append(job.name)
          continue
        if any(out.resolve() == Path(s).resolve() for s in job.sources):
          raise ValueError(f"the output {out} is one of its sources; write to another folder")
        decoded = [imageio.read_image(path, bit_depth=bit_depth) for path in job.sources]
        images = [d.pixels for d in decoded]
        inference.check_sources(images, [str(p) for p in job.sources])
        for note in [n for d in decoded for n in d.notes]:
          write(f"note: {note}")
        fused, compiled = fuse(images)
        report.compiled += int(bool(compiled))
        if not np.isfinite(fused).all():
          raise ValueError(
            "the fused image holds NaN or infinite values (a damaged or diverged checkpoint); "
            "nothing was written"
          )
        imageio.save_image(out, fused, alpha=_output_alpha(decoded))
        report.fused.append(job.name)
      except (FileNotFoundError, ValueError, OSError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        report.failed.append((job.name, reason))
      finally:
        bar.update(1)
  finally:
    bar.close()
  report.seconds = time.perf_counter() - started
  return report


def load_sources(paths: Sequence[str | os.PathLike]) -> list[np.ndarray]:
  """Reads source images and checks them (:func:`fusionjax.inference.check_sources`, with the file names).

  Args:
    paths: image files (any format Pillow reads).

  Returns:
    float32 arrays (H, W, 1 | 3) in [0, 1].

  Raises:
    FileNotFoundError: a file does not exist.
    ValueError: fewer than two files, a file is not an image, or the sizes differ.
  """
  images = [imageio.load_image(p) for p in paths]
  inference.check_sources(images, [str(p) for p in paths])
  return images


def fuse_files(
  paths: Sequence[str | os.PathLike],
  out_path: str | os.PathLike,
  *,
  ckpt,
  task: str | None = None,
  tile_size: int = tiling.DEFAULT_TILE_SIZE,
  tile_overlap: int = tiling.DEFAULT_TILE_OVERLAP,
  grey: bool = False,
) -> Path:
  """Fuses image files and writes the result atomically.

  Every check (sources readable and of one size, output suffix, checkpoint present and of the
  right task) runs before anything is written, and the result is written through
  :func:`fusionjax.imageio.save_image`, so a failure leaves no partial file and leaves an
  existing ``out_path`` untouched.

  Args:
    paths: two or more registered source images of one size.
    out_path: where to write the fused image; its suffix picks the format.
    ckpt: a stage workdir (as written by ``train.py``) or an already loaded ``FusionModel``.
    task: if given ('mfif', 'meif', 'ivf' or 'mif'), the checkpoint must have been trained for it
      ('mif' expects the 'meif' checkpoint, the paper's protocol).
    tile_size: images larger than this on either side are fused in overlapping tiles.
    tile_overlap: overlap of neighbouring tiles.
    grey: write the fused luma only.

  Returns:
    The written path.

  Raises:
    FileNotFoundError: a source or the checkpoint does not exist.
    ValueError: unreadable sources, mismatched sizes, an unknown output suffix, bad tile sizes, or a
      checkpoint of another task.
  """
  out_path = check_output_path(out_path)
  images = load_sources(paths)
  fusion_model = stages.load_model(ckpt, task=task)
  fused = inference.fuse_images(
    fusion_model,
    images,
    tile_size=tile_size,
    tile_overlap=tile_overlap,
    grey=grey,
    use_colornet=True,
    pad_multiple=None,
    tile_batch=1,
    progress=None,
  )
  return imageio.save_image(out_path, fused)


def check_output_path(
  out_path: str | os.PathLike, sources: Sequence[str | os.PathLike] = ()
) -> Path:
  """Checks that ``out_path`` can name an image file (suffix known, not a folder, not a source).

  Args:
    out_path: the intended output file.
    sources: the source files, none of which may be ``out_path`` (also through a link).

  Returns:
    It as a Path.

  Raises:
    ValueError: no known image suffix, the path is a directory, or it is one of ``sources``.
  """
  out_path = Path(out_path)
  for source in sources:
    if out_path.resolve() == Path(source).resolve() or (
      out_path.exists() and Path(source).exists() and os.path.samefile(out_path, source)
    ):
      raise ValueError(
        f"Output {out_path} would overwrite source {source}; write the result to another file."
      )
  if out_path.is_dir():
    raise ValueError(
      f"Output {out_path} is a directory; give a file name such as {out_path / 'fused.png'}."
    )
  if not imageio.is_image_file(out_path):
    raise ValueError(
      f"Output {out_path} has no image suffix; use one of {', '.join(imageio.IMAGE_SUFFIXES)} "
      "(e.g. fused.png)."
    )
  return out_path
