"""Readers for the layouts of the public fusion benchmarks, and a registry of them.

Each reader knows one layout as its authors distribute it (see each entry's ``doc``), so a reader works
on any copy of the set. ``data_dir`` may be the dataset's own folder or a root holding it under its
usual folder name (a root laid out as docs/DESIGN.md §5 describes: ``tno/``, ``roadscene/``, ``lytro/``, ...);
the first of ``ROOT/<folder name>`` and ``ROOT`` itself that has the layout is used. The code that
recognises and lists each layout is in :mod:`fusionjax.data.layouts`.

Usage::

  pairs = list_pairs("tno", "/path/to/data")            # 42 pairs, sources (visible, infrared)
  pairs = list_pairs("roadscene", root, split="train")  # all but the 50 test pairs
  images = list_images(root)                            # clean_natural photographs
  print(DATASETS["mefb"].doc)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

from fusionjax.data.pairs import (
  DATA_DIR_HINT,
  Pair,
  format_problems,
  check_data_dir,
  image_header,
  natural_key,
  validate_pairs,
)
from fusionjax.data import layouts
from fusionjax.data.layouts import ALL


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


# ---------------------------------------------------------------------------------------------------
# clean_natural, more_natural (single images)


def _clean_natural_layout(root: Path) -> bool:
  # A data root must not pass as a set of photographs: its benchmark test sets (or another image
  # set) would become this set's training data. So no dataset's folder may sit in it.
  others = {name for r in DATASETS.values() for name in r.folder_names}
  if any((root / name).is_dir() for name in others):
    return False
  return root.is_dir() and any(layouts.walk_images(root))


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
      has_layout=layouts.tno_layout,
      list_split=layouts.tno_pairs,
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
      has_layout=layouts.roadscene_layout,
      list_split=layouts.roadscene_pairs,
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
      has_layout=layouts.lytro_layout,
      list_split=layouts.lytro_pairs,
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
      has_layout=layouts.lytro_triple_layout,
      list_split=layouts.lytro_triple_pairs,
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
      has_layout=layouts.mfi_whu_layout,
      list_split=layouts.mfi_whu_pairs,
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
      has_layout=layouts.mefb_layout,
      list_split=layouts.mefb_pairs,
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
      has_layout=layouts.sice_layout,
      list_split=layouts.sice_pairs,
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
      has_layout=layouts.harvard_ct_layout,
      list_split=layouts.harvard_ct_pairs,
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
      has_layout=layouts.harvard_spect_layout,
      list_split=layouts.harvard_spect_pairs,
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
      has_layout=layouts.real_mff_layout,
      list_split=layouts.real_mff_pairs,
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
    Reader(
      name="more_natural",
      task=None,
      splits=("train",),
      default_split="train",
      folder_names=("more_natural",),
      has_layout=_clean_natural_layout,
      list_split=None,
      doc="More sharp photographs for synthesising training pairs, beside clean_natural (read "
      "with list_images(data_dir, 'more_natural')). Layout: any tree of image files (the staged "
      "copy: CSun_Hays80/, CSet14/, CSet5/, 99 images). Sorted by relative path.",
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
  images = sorted(
    layouts.walk_images(folder), key=lambda p: natural_key(p.relative_to(folder).as_posix())
  )
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
