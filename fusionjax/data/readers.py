"""Readers for the layouts of the public fusion benchmarks, and a registry of them.

Each reader knows one layout as its authors distribute it (see each entry's ``doc``), so a reader works
on any copy of the set. ``data_dir`` may be the dataset's own folder or a root holding it under its
usual folder name (a root laid out as docs/DESIGN.md §5 describes: ``tno/``, ``roadscene/``, ``lytro/``, ...);
the first of ``ROOT/<folder name>`` and ``ROOT`` itself that has the layout is used.

Usage::

  pairs = list_pairs("tno", "/path/to/data")            # 42 pairs, sources (visible, infrared)
  pairs = list_pairs("roadscene", root, split="train")  # all but the 50 test pairs
  images = list_images(root)                            # clean_natural photographs
  print(DATASETS["mefb"].doc)
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Callable

from fusionjax.data.pairs import (
  DATA_DIR_HINT,
  Pair,
  format_problems,
  check_data_dir,
  files_by_stem,
  image_files,
  image_header,
  match_stems,
  natural_key,
  validate_pairs,
)
from fusionjax.imageio import is_image_file

#: The split name every pair reader accepts: the union of its named splits.
ALL = "all"


@dataclasses.dataclass(frozen=True)
class Reader:
  """One benchmark layout.

  Attributes:
    name: registry key.
    task: task of its pairs (None for single-image sets).
    splits: named splits; ``'all'`` (their union) is accepted as well.
    default_split: the split used when none is given (the one an evaluation uses).
    folder_names: names the set's folder has under a data root (tried before ``data_dir`` itself).
    doc: layout, source order, pair names and splits, for people.
    has_layout: whether a folder has this layout.
    list_split: (dataset folder, split) -> unsorted pairs of that split; None for image sets.
    lists_all: ``list_split`` answers ``'all'`` itself (else 'all' is the union of the splits).
  """

  name: str
  task: str | None
  splits: tuple[str, ...]
  default_split: str
  folder_names: tuple[str, ...]
  doc: str
  has_layout: Callable[[Path], bool]
  list_split: Callable[[Path, str], list[Pair]] | None = None
  lists_all: bool = False

  @property
  def is_image_set(self) -> bool:
    """True for sets of single images (no pairs), read with :func:`list_images`."""
    return self.list_split is None


def _subdirs(root: Path) -> list[Path]:
  return sorted(
    (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
    key=lambda p: natural_key(p.name),
  )


def _stem_pairs(
  task: str,
  dirs: list[Path],
  reference_dir: Path | None = None,
  strip: list[str | None] | None = None,
) -> list[Pair]:
  """Pairs from folders whose files share stems (optionally after removing a role suffix)."""
  all_dirs = dirs + ([reference_dir] if reference_dir is not None else [])
  strip = strip or [None] * len(all_dirs)
  folders = [files_by_stem(d, s) for d, s in zip(all_dirs, strip)]
  stems = match_stems(folders, all_dirs)
  n = len(dirs)
  return [
    Pair(
      name=stem,
      sources=tuple(f[stem] for f in folders[:n]),
      reference=folders[n][stem] if reference_dir is not None else None,
      task=task,
    )
    for stem in stems
  ]


# ---------------------------------------------------------------------------------------------------
# TNO


def _tno_layout(root: Path) -> bool:
  return (root / "ir").is_dir() and (root / "vi").is_dir()


def _tno(root: Path, split: str) -> list[Pair]:
  del split  # one split
  return _stem_pairs("ivf", [root / "vi", root / "ir"])


# ---------------------------------------------------------------------------------------------------
# RoadScene

_ROADSCENE_VISIBLE, _ROADSCENE_INFRARED, _ROADSCENE_TEST = (
  "crop_LR_visible",
  "cropinfrared",
  "test50.txt",
)


def _roadscene_layout(root: Path) -> bool:
  return (root / _ROADSCENE_VISIBLE).is_dir() and (root / _ROADSCENE_INFRARED).is_dir()


def _roadscene(root: Path, split: str) -> list[Pair]:
  pairs = _stem_pairs("ivf", [root / _ROADSCENE_VISIBLE, root / _ROADSCENE_INFRARED])
  if split == ALL:
    return pairs  # The whole set needs no test list.
  test_file = root / _ROADSCENE_TEST
  if not test_file.is_file():
    raise FileNotFoundError(
      f"RoadScene split '{split}' needs the test list {test_file} (one file name per line, as in the "
      f"hanna-xu/RoadScene repository); put it there, or use split='{ALL}'."
    )
  # Entries carry a suffix (FLIR_00211.jpg); match by stem so a re-encoded copy still matches.
  test_names = [
    Path(line.strip()).stem for line in test_file.read_text().splitlines() if line.strip()
  ]
  known = {p.name for p in pairs}
  unknown = [n for n in test_names if n not in known]
  if unknown:
    raise ValueError(
      f"{test_file} lists pairs that are not in {root}: {', '.join(unknown[:10])}. "
      "Restore the missing files or fix the list."
    )
  test_set = set(test_names)
  return [p for p in pairs if (p.name in test_set) == (split == "test")]


# ---------------------------------------------------------------------------------------------------
# Lytro (pairs and triples)

_LYTRO_PATTERN = re.compile(r"^(?P<name>.+)-(?P<role>[ABCabc])$")
_LYTRO_TRIPLES = "Triple Series"


def _lytro_groups(folder: Path) -> dict[str, dict[str, Path]]:
  """name -> {'A': path, 'B': path, 'C': path} for files named NAME-A.*, NAME-B.*, NAME-C.*."""
  groups: dict[str, dict[str, Path]] = {}
  for path in image_files(folder):
    match = _LYTRO_PATTERN.match(path.stem)
    if match is None:
      continue
    role = match.group("role").upper()
    group = groups.setdefault(match.group("name"), {})
    if role in group:
      raise ValueError(
        f"Ambiguous files {group[role]} and {path}: both are source {role} of "
        f"{match.group('name')!r}. Remove or rename one of them."
      )
    group[role] = path
  return groups


def _require_roles(groups: dict[str, dict[str, Path]], roles: str, folder: Path) -> None:
  problems = []
  for name, group in sorted(groups.items(), key=lambda kv: natural_key(kv[0])):
    missing = [r for r in roles if r not in group]
    if missing:
      present = next(iter(group.values()))
      problems.append(
        f"{present} has no partner {', '.join(f'{name}-{r}.<image suffix>' for r in missing)} "
        f"in {folder}"
      )
  if problems:
    raise ValueError(format_problems("files without a partner", problems))


def _lytro_layout(root: Path) -> bool:
  return root.is_dir() and any(r.get("A") for r in _lytro_groups(root).values())


def _lytro(root: Path, split: str) -> list[Pair]:
  del split
  groups = _lytro_groups(root)
  # Top-level C files belong to three-source sets (lytro_triple); pairs are the A/B files.
  pair_groups = {n: g for n, g in groups.items() if "A" in g or "B" in g}
  _require_roles(pair_groups, "AB", root)
  return [Pair(name=n, sources=(g["A"], g["B"]), task="mfif") for n, g in pair_groups.items()]


def _lytro_triple_layout(root: Path) -> bool:
  return (root / _LYTRO_TRIPLES).is_dir() or (
    root.is_dir() and any("C" in g for g in _lytro_groups(root).values())
  )


def _lytro_triple(root: Path, split: str) -> list[Pair]:
  del split
  triples: dict[str, Pair] = {}
  folders = ([root / _LYTRO_TRIPLES] if (root / _LYTRO_TRIPLES).is_dir() else []) + [root]
  for folder in folders:
    groups = _lytro_groups(folder)
    if folder == root:
      groups = {n: g for n, g in groups.items() if "C" in g}
    _require_roles(groups, "ABC", folder)
    for name, group in groups.items():
      if name in triples:
        raise ValueError(
          f"Three-source set {name!r} is both in {triples[name].sources[0].parent} and in "
          f"{folder}; the names would clash. Keep one of them."
        )
      triples[name] = Pair(name=name, sources=(group["A"], group["B"], group["C"]), task="mfif")
  return list(triples.values())


# ---------------------------------------------------------------------------------------------------
# Scene folders: MEFB and MFI-WHU's benchmark (SCENE/SCENE_A.*, SCENE/SCENE_B.*)

_ROLE_PATTERN = re.compile(r"^(?P<name>.+)_(?P<role>[ABab])$")


def _has_scene_folders(root: Path) -> bool:
  if not root.is_dir():
    return False
  return any(_ROLE_PATTERN.match(p.stem) for d in _subdirs(root) for p in image_files(d))


def _scene_folder_pairs(root: Path, task: str) -> list[Pair]:
  """One pair per sub-folder holding ``*_A.*`` and ``*_B.*`` (role letters in either case)."""
  pairs, problems = [], []
  for folder in _subdirs(root):
    files = image_files(folder)
    if not files:
      continue
    roles: dict[str, list[Path]] = {"A": [], "B": []}
    for path in files:
      match = _ROLE_PATTERN.match(path.stem)
      if match is not None:
        roles[match.group("role").upper()].append(path)
    if len(roles["A"]) == 1 and len(roles["B"]) == 1:
      pairs.append(Pair(name=folder.name, sources=(roles["A"][0], roles["B"][0]), task=task))
      continue
    for role, other in (("A", "B"), ("B", "A")):
      if len(roles[role]) > 1:
        problems.append(
          f"{folder} has {len(roles[role])} files for source {role}: "
          f"{', '.join(p.name for p in roles[role])}"
        )
      elif not roles[role]:
        present = roles[other][0] if roles[other] else files[0]
        problems.append(f"{present} has no partner {folder.name}_{role}.<image suffix> in {folder}")
  if problems:
    raise ValueError(format_problems("bad scene folders", problems))
  return pairs


def _mefb_layout(root: Path) -> bool:
  return _has_scene_folders(root)


def _mefb(root: Path, split: str) -> list[Pair]:
  del split
  return _scene_folder_pairs(root, "meif")


# ---------------------------------------------------------------------------------------------------
# MFI-WHU


def _mfi_whu_layout(root: Path) -> bool:
  return (root / "benchmark30").is_dir() or (root / "origin20").is_dir()


def _mfi_whu(root: Path, split: str) -> list[Pair]:
  folder = root / split
  if not folder.is_dir():
    raise FileNotFoundError(f"MFI-WHU split '{split}' expects the folder {folder}; it is missing.")
  if split == "benchmark30":
    return _scene_folder_pairs(folder, "mfif")
  return _stem_pairs("mfif", [folder / "source1", folder / "source2"])


# ---------------------------------------------------------------------------------------------------
# SICE


def _sice_layout(root: Path) -> bool:
  return any((root / s / "under").is_dir() for s in ("train", "test"))


def _sice(root: Path, split: str) -> list[Pair]:
  folder = root / split
  if not folder.is_dir():
    raise FileNotFoundError(
      f"SICE split '{split}' expects the folder {folder} with under/, over/, reference/."
    )
  return _stem_pairs(
    "meif", [folder / "under", folder / "over"], reference_dir=folder / "reference"
  )


# ---------------------------------------------------------------------------------------------------
# Harvard (MRI-CT, MRI-SPECT)


def _harvard(other: str) -> tuple[Callable[[Path], bool], Callable[[Path, str], list[Pair]]]:
  def layout(root: Path) -> bool:
    return (root / "MRI").is_dir() and (root / other).is_dir()

  def read(root: Path, split: str) -> list[Pair]:
    del split
    return _stem_pairs("mif", [root / "MRI", root / other])

  return layout, read


_harvard_ct_layout, _harvard_ct = _harvard("CT")
_harvard_spect_layout, _harvard_spect = _harvard("SPECT")


# ---------------------------------------------------------------------------------------------------
# Real-MFF

_REAL_MFF_DIRS = ("imageA", "imageB", "Fusion")


def _real_mff_layout(root: Path) -> bool:
  return all((root / d).is_dir() for d in _REAL_MFF_DIRS)


def _real_mff(root: Path, split: str) -> list[Pair]:
  del split
  a, b, fused = (root / d for d in _REAL_MFF_DIRS)
  return _stem_pairs("mfif", [a, b], reference_dir=fused, strip=["_[Aa]", "_[Bb]", "_[Ff]"])


# ---------------------------------------------------------------------------------------------------
# clean_natural (single images)


def _clean_natural_layout(root: Path) -> bool:
  # A data root without clean_natural/ must not pass: its benchmark test sets would become training data.
  others = {name for r in DATASETS.values() if r.name != "clean_natural" for name in r.folder_names}
  if any((root / name).is_dir() for name in others):
    return False
  return root.is_dir() and any(_walk_images(root))


def _walk_images(root: Path):
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    for filename in filenames:
      if not filename.startswith(".") and is_image_file(filename):
        yield Path(dirpath) / filename


# ---------------------------------------------------------------------------------------------------
# Registry

DATASETS: dict[str, Reader] = {
  reader.name: reader
  for reader in [
    Reader(
      name="tno",
      task="ivf",
      splits=("test",),
      default_split="test",
      folder_names=("tno", "TNO"),
      has_layout=_tno_layout,
      list_split=_tno,
      doc="TNO infrared-visible (42 pairs in the common benchmark copy). Layout: ir/NAME.*, vi/NAME.* "
      "(grey, often stored as 3-channel PNG). Sources (visible, infrared). Pair name: the file "
      "stem ('01' ... '42'). Split: 'test' (TNO is a test set here).",
    ),
    Reader(
      name="roadscene",
      task="ivf",
      splits=("train", "test"),
      default_split="test",
      folder_names=("roadscene", "RoadScene"),
      has_layout=_roadscene_layout,
      list_split=_roadscene,
      lists_all=True,
      doc="RoadScene infrared-visible (221 pairs). Layout: crop_LR_visible/NAME.jpg (RGB), "
      "cropinfrared/NAME.jpg (grey), test50.txt (the common 50-pair test list). Sources "
      "(visible, infrared). Pair name: the file stem ('FLIR_00211'). Splits: 'test' = the 50 "
      "listed pairs (default), 'train' = the other 171, 'all'.",
    ),
    Reader(
      name="lytro",
      task="mfif",
      splits=("test",),
      default_split="test",
      folder_names=("lytro", "Lytro"),
      has_layout=_lytro_layout,
      list_split=_lytro,
      doc="Lytro multi-focus (20 pairs, 520x520 RGB). Layout: NAME-A.*, NAME-B.* at the top level. "
      "Sources (A, B): in the Lytro pairs A is focused near and B far. Pair name: 'lytro-01' ... "
      "Split: 'test'. Three-source sets are read by 'lytro_triple'.",
    ),
    Reader(
      name="lytro_triple",
      task="mfif",
      splits=("test",),
      default_split="test",
      folder_names=("lytro", "Lytro"),
      has_layout=_lytro_triple_layout,
      list_split=_lytro_triple,
      doc="Lytro three-source multi-focus sets (4). Layout: 'Triple Series/NAME-{A,B,C}.*', plus any "
      "top-level NAME-C.* with its NAME-A.* and NAME-B.* (a name in both places is an error). "
      "Sources (A, B, C). Pair name: 'lytro-01' ... Split: 'test'.",
    ),
    Reader(
      name="mfi_whu",
      task="mfif",
      splits=("benchmark30", "origin20"),
      default_split="benchmark30",
      folder_names=("mfi_whu", "MFI-WHU"),
      has_layout=_mfi_whu_layout,
      list_split=_mfi_whu,
      doc="MFI-WHU multi-focus. Layout: benchmark30/SCENE/SCENE_{A,B}.* (30, the MFIF benchmark's "
      "copy; pair name = folder, 'MFI-WHU_01') and origin20/source1/N.*, origin20/source2/N.* "
      "(20, the authors' repository; pair name = stem, '1'). Sources (A, B) and (source1, "
      "source2) as distributed. Splits: 'benchmark30' (default), 'origin20', 'all'.",
    ),
    Reader(
      name="mefb",
      task="meif",
      splits=("test",),
      default_split="test",
      folder_names=("mefb", "MEFB"),
      has_layout=_mefb_layout,
      list_split=_mefb,
      doc="MEFB multi-exposure (100 pairs). Layout: SCENE/*_A.* (under-exposed), SCENE/*_B.* "
      "(over-exposed); suffixes jpg/JPG/png/tif mix, and the role letter and the file prefix "
      "may differ in case from the folder ('Sky/sKY_a.png'). Sources (under, over). Pair name: "
      "the scene folder ('Arno'). Split: 'test'.",
    ),
    Reader(
      name="sice",
      task="meif",
      splits=("train", "test"),
      default_split="test",
      folder_names=("sice16", "sice", "SICE"),
      has_layout=_sice_layout,
      list_split=_sice,
      doc="SICE multi-exposure with references. Layout: {train,test}/{under,over,reference}/NAME.* "
      "(the staged copy has 11 train and 5 test scenes). Sources (under, over), reference = "
      "SICE's reference. Pair name: the stem ('13'). Splits: 'test' (default), 'train', 'all'.",
    ),
    Reader(
      name="harvard_mri_ct",
      task="mif",
      splits=("test",),
      default_split="test",
      folder_names=("harvard/MRI_CT", "MRI_CT"),
      has_layout=_harvard_ct_layout,
      list_split=_harvard_ct,
      doc="Harvard MRI-CT (21 pairs, 256x256 grey). Layout: MRI/NAME.png, CT/NAME.png. data_dir may "
      "be the data root, the harvard/ folder or its MRI_CT/ sub-folder. Sources (MRI, CT). Pair "
      "name: the stem ('11'). Split: 'test'.",
    ),
    Reader(
      name="harvard_mri_spect",
      task="mif",
      splits=("test",),
      default_split="test",
      folder_names=("harvard/MRI_SPECT", "MRI_SPECT"),
      has_layout=_harvard_spect_layout,
      list_split=_harvard_spect,
      doc="Harvard MRI-SPECT (73 pairs, 256x256; SPECT in colour). Layout: MRI/NAME.png, "
      "SPECT/NAME.png. data_dir may be the data root, the harvard/ folder or its MRI_SPECT/ "
      "sub-folder. Sources (MRI, SPECT). Pair name: the stem ('11'). Split: 'test'.",
    ),
    Reader(
      name="real_mff",
      task="mfif",
      splits=("train",),
      default_split="train",
      folder_names=("real_mff", "Real-MFF", "RealMFF"),
      has_layout=_real_mff_layout,
      list_split=_real_mff,
      doc="Real-MFF multi-focus with all-in-focus references, as distributed. Layout: "
      "imageA/NAME_A.*, imageB/NAME_B.*, Fusion/NAME_F.* (matched after removing the trailing "
      "_A/_B/_F). Sources (A, B) as distributed (the set does not say which is near), "
      "reference = Fusion. Pair name: NAME. Split: 'train'.",
    ),
    Reader(
      name="clean_natural",
      task=None,
      splits=("train",),
      default_split="train",
      folder_names=("clean_natural",),
      has_layout=_clean_natural_layout,
      list_split=None,
      doc="Sharp, well-exposed photographs for synthesising training pairs (read with "
      "list_images, not list_pairs). Layout: any tree of image files (the staged copy: "
      "CUrban100/, CBSD68/, Kodak24/, McMaster/, 210 images). Sorted by relative path.",
    ),
  ]
}


def get_reader(dataset: str) -> Reader:
  """The registry entry of ``dataset``, with an error listing the known names."""
  if dataset not in DATASETS:
    raise ValueError(f"Unknown dataset {dataset!r}; known datasets: {', '.join(sorted(DATASETS))}.")
  return DATASETS[dataset]


def dataset_dir(dataset: str, data_dir: str | os.PathLike | None) -> Path:
  """The folder holding ``dataset``: ``data_dir/<folder name>`` if it has the layout, else ``data_dir``.

  Args:
    dataset: a :data:`DATASETS` key.
    data_dir: the data root or the dataset's own folder.

  Returns:
    The dataset's folder.

  Raises:
    ValueError: unknown dataset or no data_dir.
    FileNotFoundError: data_dir is missing, or neither it nor its sub-folders have the layout.
  """
  reader = get_reader(dataset)
  root = check_data_dir(data_dir, dataset)
  candidates = [root / name for name in reader.folder_names] + [root]
  for candidate in candidates:
    if candidate.is_dir() and reader.has_layout(candidate):
      return candidate
  tried = ", ".join(str(c) for c in candidates)
  raise FileNotFoundError(
    f"No {dataset} data found: none of {tried} has the expected layout, or the folder is empty. "
    f"Expected: {reader.doc} Then {DATA_DIR_HINT}."
  )


def list_pairs(
  dataset: str, data_dir: str | os.PathLike | None, split: str | None = None, validate: bool = True
) -> list[Pair]:
  """Lists the pairs of a benchmark, sorted naturally by name and checked file by file.

  Args:
    dataset: a :data:`DATASETS` key (e.g. ``'tno'``); ``DATASETS[dataset].doc`` describes it.
    data_dir: the data root or the dataset's own folder.
    split: one of the reader's splits or ``'all'``; None takes its default split.
    validate: check every file's header and each pair's sizes (:func:`validate_pairs`).

  Returns:
    The pairs of the split.

  Raises:
    ValueError: unknown dataset or split, files without partner, unreadable files, size mismatches.
    FileNotFoundError: data_dir missing or holding no pairs of this layout.
  """
  reader = get_reader(dataset)
  if reader.is_image_set:
    raise ValueError(
      f"{dataset!r} holds single images, not pairs; read it with list_images(data_dir)."
    )
  split = reader.default_split if split is None else split
  if split != ALL and split not in reader.splits:
    raise ValueError(
      f"Unknown split {split!r} for {dataset}; use one of {', '.join(reader.splits + (ALL,))}."
    )
  folder = dataset_dir(dataset, data_dir)
  pairs: list[Pair] = []
  for part in reader.splits if split == ALL and not reader.lists_all else (split,):
    pairs.extend(reader.list_split(folder, part))
  names = [p.name for p in pairs]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise ValueError(
      f"{dataset} split {split!r} has several pairs named {', '.join(duplicates)}; "
      "pair names must be unique. Rename the clashing files."
    )
  if not pairs:
    raise FileNotFoundError(f"No {dataset} pairs in {folder} (split {split!r}); {DATA_DIR_HINT}.")
  pairs.sort(key=lambda p: natural_key(p.name))
  return validate_pairs(pairs) if validate else pairs


def list_images(
  data_dir: str | os.PathLike | None, dataset: str = "clean_natural", validate: bool = True
) -> list[Path]:
  """Lists every image file under an image set (recursively), sorted by relative path.

  Args:
    data_dir: the data root (its ``clean_natural/`` is used) or a folder of images.
    dataset: the image-set registry key.
    validate: read every file's header first, so that bad files are reported before training.

  Returns:
    Paths of the images.

  Raises:
    ValueError: unreadable images (all listed), or ``dataset`` is not an image set.
    FileNotFoundError: data_dir missing or without images.
  """
  reader = get_reader(dataset)
  if not reader.is_image_set:
    raise ValueError(f"{dataset!r} is a set of pairs; read it with list_pairs.")
  folder = dataset_dir(dataset, data_dir)
  images = sorted(_walk_images(folder), key=lambda p: natural_key(p.relative_to(folder).as_posix()))
  if validate:
    problems = []
    for path in images:
      try:
        image_header(path)
      except (FileNotFoundError, ValueError) as error:
        problems.append(str(error))
    if problems:
      raise ValueError(format_problems("unreadable images", problems))
  return images
