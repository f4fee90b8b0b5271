"""Fusion samples as file records: :class:`Pair`, header validation, loading, folder matching.

A :class:`Pair` names files only; nothing is decoded until :func:`load_pair`. Listings are checked
up front by :func:`validate_pairs`, which opens every file's header (size and mode, no pixel decode),
so that a run never starts on a dataset that silently lost pairs to unreadable or mismatched files.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from fusionjax import tasks
from fusionjax.imageio import is_image_file, load_image

#: Tasks a pair can belong to, with the order of its sources (paper §3.2, docs/DESIGN.md §2).
TASKS = tasks.SOURCE_ORDER

#: How a missing or empty data directory is set, named in every such error.
DATA_DIR_HINT = (
  "set data_dir: `--config.data.data_dir=DIR` for training, `--data_dir=DIR` for evaluation, "
  "or the `data_dir` argument in Python"
)

# EXIF orientations 5..8 are transposed: load_image (exif_transpose) swaps width and height for them.
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)
# Problems listed in one error message before the rest are counted.
_MAX_LISTED_PROBLEMS = 20


@dataclasses.dataclass(frozen=True)
class Pair:
  """One fusion sample: the files of its sources and of its reference, if there is one.

  Attributes:
    name: stable sample name; each reader documents how it is formed (TNO: ``'01'``), and fused
      results of other methods are matched to the sample by it.
    sources: source files in the order of docs/DESIGN.md §2: MFIF (near, far), MEIF (under, over),
      IVF (visible, infrared), MIF (MRI, other). Three-source multi-focus sets have three.
    reference: the reference (ground truth) file, or None.
    task: ``'mfif'``, ``'meif'``, ``'ivf'`` or ``'mif'``; None for folders whose task was not stated.
  """

  name: str
  sources: tuple[Path, ...]
  reference: Path | None = None
  task: str | None = None

  def __post_init__(self):
    if not isinstance(self.name, str) or not self.name:
      raise ValueError(f"Pair name must be a non-empty string, got {self.name!r}.")
    sources = tuple(Path(s) for s in self.sources)
    if len(sources) < 2:
      raise ValueError(f"Pair {self.name!r} needs at least two sources, got {len(sources)}.")
    if self.task is not None and self.task not in TASKS:
      raise ValueError(
        f"Pair {self.name!r}: unknown task {self.task!r}; use one of {sorted(TASKS)}."
      )
    # Frozen dataclass: normalise str paths to Path once, here.
    object.__setattr__(self, "sources", sources)
    if self.reference is not None:
      object.__setattr__(self, "reference", Path(self.reference))

  @property
  def files(self) -> tuple[Path, ...]:
    """All files of the pair: sources, then the reference when present."""
    return self.sources + ((self.reference,) if self.reference is not None else ())


@dataclasses.dataclass(frozen=True)
class LoadedPair:
  """The decoded images of a :class:`Pair`.

  Attributes:
    pair: the record the images came from.
    sources: float32 arrays (H, W, 1|3) in [0, 1], in the pair's source order; grey files stored as
      three identical channels are folded to one channel (see :func:`fusionjax.imageio.load_image`).
    reference: the reference array, or None.
  """

  pair: Pair
  sources: list[np.ndarray]
  reference: np.ndarray | None


def natural_key(text: str) -> tuple:
  """Sort key that orders digit runs numerically ('2' before '10'), then case-insensitively."""
  parts = re.split(r"(\d+)", text)
  return tuple((0, int(p), p) if p.isdigit() else (1, p.lower(), p) for p in parts if p), text


def check_data_dir(data_dir: str | os.PathLike | None, what: str = "data") -> Path:
  """Returns ``data_dir`` as a Path after checking that it is set and is a directory.

  Args:
    data_dir: the directory a reader or pipeline was pointed at.
    what: what was being looked for, for the message (e.g. ``"TNO"``).

  Returns:
    The directory as a Path.

  Raises:
    ValueError: ``data_dir`` is None or empty.
    FileNotFoundError: it does not exist or is not a directory.
  """
  if data_dir is None or str(data_dir) == "":
    raise ValueError(f"No data directory given for {what}; {DATA_DIR_HINT}.")
  path = Path(data_dir).expanduser()
  if not path.exists():
    raise FileNotFoundError(f"Data directory {path} for {what} does not exist; {DATA_DIR_HINT}.")
  if not path.is_dir():
    raise FileNotFoundError(
      f"Data directory {path} for {what} is not a directory; {DATA_DIR_HINT}."
    )
  return path


def image_files(directory: str | os.PathLike) -> list[Path]:
  """Image files directly inside ``directory`` (hidden files skipped), naturally sorted by name."""
  directory = Path(directory)
  files = [
    p
    for p in directory.iterdir()
    if p.is_file() and not p.name.startswith(".") and is_image_file(p)
  ]
  return sorted(files, key=lambda p: natural_key(p.name))


def files_by_stem(directory: str | os.PathLike, strip_suffix: str | None = None) -> dict[str, Path]:
  """Maps the stem of every image file in ``directory`` to its path.

  Args:
    directory: folder to scan (not recursive).
    strip_suffix: a regular expression removed from the end of each stem before matching, e.g.
      ``'_[Aa]'`` for Real-MFF's ``NAME_A.png``; files whose stem does not end with it are ignored.

  Returns:
    Dict stem -> path.

  Raises:
    FileNotFoundError: ``directory`` does not exist.
    ValueError: two files share a stem (``a.png`` and ``a.jpg``): the pair would be ambiguous.
  """
  directory = Path(directory)
  if not directory.is_dir():
    raise FileNotFoundError(
      f"Folder {directory} does not exist; check the dataset layout and data_dir."
    )
  pattern = re.compile(f"^(.*?)(?:{strip_suffix})$") if strip_suffix else None
  by_stem: dict[str, Path] = {}
  for path in image_files(directory):
    stem = path.stem
    if pattern is not None:
      match = pattern.match(stem)
      if match is None:
        continue
      stem = match.group(1)
    if stem in by_stem:
      raise ValueError(
        f"Ambiguous files {by_stem[stem]} and {path}: both give the sample name {stem!r}. "
        "Remove or rename one of them."
      )
    by_stem[stem] = path
  return by_stem


def match_stems(folders: Sequence[dict[str, Path]], dirs: Sequence[Path]) -> list[str]:
  """Stems present in every folder; raises naming the files that lack a partner.

  Args:
    folders: one stem -> path dict per folder (from :func:`files_by_stem`).
    dirs: the folders themselves, for the message.

  Returns:
    The common stems, naturally sorted.

  Raises:
    ValueError: some file has no partner of the same name in another folder.
  """
  all_stems = set().union(*(f.keys() for f in folders))
  problems = []
  for stem in sorted(all_stems, key=natural_key):
    present = [f[stem] for f in folders if stem in f]
    if len(present) != len(folders):
      missing = [str(d) for d, f in zip(dirs, folders) if stem not in f]
      problems.append(
        f"{present[0]} has no partner named {stem}.<image suffix> in {', '.join(missing)}"
      )
  if problems:
    raise ValueError(format_problems("files without a partner", problems))
  return sorted(all_stems, key=natural_key)


def pairs_by_stem(
  task: str | None, folders: list[dict[str, Path]], stems: list[str], num_sources: int
) -> list[Pair]:
  """One pair per stem from ``files_by_stem`` maps: the first ``num_sources`` maps are the sources,
  a further one (if any) the references."""
  return [
    Pair(
      name=stem,
      sources=tuple(f[stem] for f in folders[:num_sources]),
      reference=folders[num_sources][stem] if len(folders) > num_sources else None,
      task=task,
    )
    for stem in stems
  ]


def folder_pairs(
  *dirs: str | os.PathLike,
  task: str | None = None,
  reference_dir: str | os.PathLike | None = None,
  validate: bool = True,
) -> list[Pair]:
  """Pairs from folders of matching file names: ``a/x.png`` goes with ``b/x.jpg`` (stems match).

  The source order is the order of ``dirs`` and should follow docs/DESIGN.md §2 for the task (e.g. visible
  then infrared). Pair names are the shared file stems.

  Args:
    *dirs: two or more source folders.
    task: the task of the pairs ('mfif', 'meif', 'ivf', 'mif') or None when unstated.
    reference_dir: optional folder of references with the same stems.
    validate: check every file's header and the sizes (:func:`validate_pairs`).

  Returns:
    Pairs sorted naturally by name.

  Raises:
    ValueError: fewer than two folders, a file without partner, ambiguous stems, bad files.
    FileNotFoundError: a folder is missing or no images were found.
  """
  if len(dirs) < 2:
    raise ValueError(f"folder_pairs needs at least two source folders, got {len(dirs)}.")
  paths = [check_data_dir(d, "a source folder") for d in dirs]
  if reference_dir is not None:
    paths.append(check_data_dir(reference_dir, "the reference folder"))
  folders = [files_by_stem(p) for p in paths]
  for path, folder in zip(paths, folders):
    if not folder:
      raise FileNotFoundError(f"No image files in {path}; {DATA_DIR_HINT}.")
  pairs = pairs_by_stem(task, folders, match_stems(folders, paths), len(dirs))
  if validate:
    validate_pairs(pairs)
  return pairs


def image_header(path: str | os.PathLike) -> tuple[int, int, str]:
  """Reads an image's size and mode from its header, without decoding the pixels.

  The size is the one :func:`fusionjax.imageio.load_image` returns, i.e. after EXIF orientation.

  Args:
    path: image file.

  Returns:
    (height, width, Pillow mode).

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: Pillow cannot identify the file as an image.
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"Image file not found: {path}. Check the dataset layout and data_dir.")
  try:
    with Image.open(path) as image:
      width, height = image.size
      mode = image.mode
      try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
      except Exception:  # pylint: disable=broad-except
        # A damaged EXIF block does not make the pixels unreadable; load_image ignores it too.
        orientation = 1
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
    raise ValueError(f"Cannot read image {path}: {error}. Replace or remove the file.") from error
  if orientation in _TRANSPOSED_ORIENTATIONS:
    width, height = height, width
  return height, width, mode


def validate_pairs(pairs: Iterable[Pair]) -> list[Pair]:
  """Checks every file of every pair from its header: readable, and all files of a pair the same size.

  Every problem is collected before raising, so one run reports all bad files at once.

  Args:
    pairs: the listing to check.

  Returns:
    The pairs, as a list, when all are valid.

  Raises:
    ValueError: some file is missing or unreadable, or a pair mixes sizes; the message names each file.
  """
  pairs = list(pairs)
  problems = []
  for pair in pairs:
    sizes = {}
    for path in pair.files:
      try:
        height, width, _ = image_header(path)
      except (FileNotFoundError, ValueError) as error:
        problems.append(str(error))
        continue
      sizes[path] = (height, width)
    if len(set(sizes.values())) > 1:
      listed = ", ".join(f"{p} is {h}x{w}" for p, (h, w) in sizes.items())
      problems.append(f"pair {pair.name!r} mixes image sizes (HxW): {listed}")
  if problems:
    raise ValueError(format_problems("bad pairs", problems))
  return pairs


def load_pair(pair: Pair) -> LoadedPair:
  """Decodes the images of a pair and checks that their sizes agree.

  Args:
    pair: the record to load.

  Returns:
    A :class:`LoadedPair` of float32 arrays in [0, 1].

  Raises:
    FileNotFoundError: a file is missing.
    ValueError: a file is unreadable, or the images differ in height or width (naming the files).
  """
  sources = [load_image(p) for p in pair.sources]
  reference = load_image(pair.reference) if pair.reference is not None else None
  arrays = sources + ([reference] if reference is not None else [])
  shapes = {a.shape[:2] for a in arrays}
  if len(shapes) > 1:
    listed = ", ".join(f"{p} is {a.shape[0]}x{a.shape[1]}" for p, a in zip(pair.files, arrays))
    raise ValueError(
      f"Pair {pair.name!r} mixes image sizes (HxW): {listed}. The images of a pair must align."
    )
  return LoadedPair(pair=pair, sources=sources, reference=reference)


def format_problems(title: str, problems: list[str]) -> str:
  """One error message listing data problems (the first 20, then a count) and what to do.

  Args:
    title: what the problems are, e.g. ``"bad pairs"``.
    problems: one line per problem, each naming its file.

  Returns:
    The message.
  """
  shown = problems[:_MAX_LISTED_PROBLEMS]
  lines = [f"{len(problems)} {title}:"] + [f"  - {p}" for p in shown]
  if len(problems) > len(shown):
    lines.append(f"  ... and {len(problems) - len(shown)} more.")
  lines.append("Fix or remove these files; a run does not start on a partial dataset.")
  return "\n".join(lines)
