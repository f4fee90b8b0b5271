"""The layouts of the public fusion benchmarks: for each set, whether a folder has its layout and the
pairs of one split, as its authors distribute it.

:data:`fusionjax.data.readers.DATASETS` registers one ``<set>_layout`` / ``<set>_pairs`` couple per
benchmark, with the layout described in words (``doc``); read the sets through
:func:`fusionjax.data.readers.list_pairs`, which sorts and checks what these functions list.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from fusionjax.data.pairs import (
  Pair,
  files_by_stem,
  format_problems,
  image_files,
  match_stems,
  natural_key,
  pairs_by_stem,
)
from fusionjax.imageio import is_image_file

#: The split name every pair reader accepts: the union of its named splits.
ALL = "all"


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
  return pairs_by_stem(task, folders, match_stems(folders, all_dirs), len(dirs))


# ---------------------------------------------------------------------------------------------------
# TNO


def tno_layout(root: Path) -> bool:
  return (root / "ir").is_dir() and (root / "vi").is_dir()


def tno_pairs(root: Path, split: str) -> list[Pair]:
  del split  # one split
  return _stem_pairs("ivf", [root / "vi", root / "ir"])


# ---------------------------------------------------------------------------------------------------
# RoadScene

_ROADSCENE_VISIBLE, _ROADSCENE_INFRARED, _ROADSCENE_TEST = (
  "crop_LR_visible",
  "cropinfrared",
  "test50.txt",
)


def roadscene_layout(root: Path) -> bool:
  return (root / _ROADSCENE_VISIBLE).is_dir() and (root / _ROADSCENE_INFRARED).is_dir()


def roadscene_pairs(root: Path, split: str) -> list[Pair]:
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


def lytro_layout(root: Path) -> bool:
  return root.is_dir() and any(r.get("A") for r in _lytro_groups(root).values())


def lytro_pairs(root: Path, split: str) -> list[Pair]:
  del split
  groups = _lytro_groups(root)
  # Top-level C files belong to three-source sets (lytro_triple); pairs are the A/B files.
  pair_groups = {n: g for n, g in groups.items() if "A" in g or "B" in g}
  _require_roles(pair_groups, "AB", root)
  return [Pair(name=n, sources=(g["A"], g["B"]), task="mfif") for n, g in pair_groups.items()]


def lytro_triple_layout(root: Path) -> bool:
  return (root / _LYTRO_TRIPLES).is_dir() or (
    root.is_dir() and any("C" in g for g in _lytro_groups(root).values())
  )


def lytro_triple_pairs(root: Path, split: str) -> list[Pair]:
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


def mefb_layout(root: Path) -> bool:
  return _has_scene_folders(root)


def mefb_pairs(root: Path, split: str) -> list[Pair]:
  del split
  return _scene_folder_pairs(root, "meif")


# ---------------------------------------------------------------------------------------------------
# MFI-WHU


def mfi_whu_layout(root: Path) -> bool:
  return (root / "benchmark30").is_dir() or (root / "origin20").is_dir()


def mfi_whu_pairs(root: Path, split: str) -> list[Pair]:
  folder = root / split
  if not folder.is_dir():
    raise FileNotFoundError(f"MFI-WHU split '{split}' expects the folder {folder}; it is missing.")
  if split == "benchmark30":
    return _scene_folder_pairs(folder, "mfif")
  return _stem_pairs("mfif", [folder / "source1", folder / "source2"])


# ---------------------------------------------------------------------------------------------------
# SICE


def sice_layout(root: Path) -> bool:
  return any((root / s / "under").is_dir() for s in ("train", "test"))


def sice_pairs(root: Path, split: str) -> list[Pair]:
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


harvard_ct_layout, harvard_ct_pairs = _harvard("CT")
harvard_spect_layout, harvard_spect_pairs = _harvard("SPECT")


# ---------------------------------------------------------------------------------------------------
# Real-MFF

_REAL_MFF_DIRS = ("imageA", "imageB", "Fusion")


def real_mff_layout(root: Path) -> bool:
  return all((root / d).is_dir() for d in _REAL_MFF_DIRS)


def real_mff_pairs(root: Path, split: str) -> list[Pair]:
  del split
  a, b, fused = (root / d for d in _REAL_MFF_DIRS)
  return _stem_pairs("mfif", [a, b], reference_dir=fused, strip=["_[Aa]", "_[Bb]", "_[Ff]"])


# ---------------------------------------------------------------------------------------------------
# clean_natural (single images)


def walk_images(root: Path):
  """Every image file under ``root``, recursively, skipping hidden files and folders (unsorted)."""
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    for filename in filenames:
      if not filename.startswith(".") and is_image_file(filename):
        yield Path(dirpath) / filename
