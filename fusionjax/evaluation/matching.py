"""Finding each pair's fused image in a folder of another method's results.

A pair's fused file is named after the pair (``01.png`` for TNO pair ``01``, any image suffix,
case-insensitive when unambiguous), or matches a file-name template (``fused_pattern``:
``'{name}_IFCNN.*'``, ``'lytro_{index:02d}_SESF.*'``, see :func:`fused_pattern_regex`) for results
as their authors distribute them.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Any, Sequence

from fusionjax import imageio

# How many missing names an error lists before counting the rest.
_MAX_LISTED = 10


def safe_name(name: str) -> str:
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
    raise FileNotFoundError(
      f"Fused-image folder {folder} does not exist; pass --fused_dir with the folder of "
      "fused images named after the pairs (e.g. 01.png for TNO pair 01)."
    )
  index: dict[str, Path] = {}
  for path in sorted(folder.iterdir()):
    if not path.is_file() or path.name.startswith(".") or not imageio.is_image_file(path):
      continue
    key = path.stem if check_stems else path.name
    if key in index:
      raise ValueError(
        f"Ambiguous fused images {index[key]} and {path}: both are named {key!r}. "
        "Remove one of them."
      )
    index[key] = path
  if not index:
    raise FileNotFoundError(
      f"No image files in {folder}; pass the folder holding the fused images."
    )
  return index


#: The fields a ``fused_pattern`` may use.
PATTERN_FIELDS = ("name", "index", "method")


def fused_pattern_regex(
  template: str, name: str | None = None, index: int | None = None, method: str | None = None
) -> re.Pattern:
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
    raise ValueError(
      f"--fused_pattern {template!r} holds a path separator; give a file-name template such as "
      "'{name}_IFCNN.*' and the folder with --fused_dir."
    )
  try:
    parts = list(string.Formatter().parse(template))
  except ValueError as error:
    raise ValueError(
      f"--fused_pattern {template!r} is not a valid template ({error}); use fields like {{name}} "
      "or {index:02d}, and write a literal brace as {{ or }}."
    ) from error
  regex, fields = "", set()
  for literal, field, spec, conversion in parts:
    regex += "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in literal)
    if field is None:
      continue
    if field not in PATTERN_FIELDS or conversion:
      raise ValueError(
        f"--fused_pattern {template!r} has the field {{{field}}}; use {{name}} (the pair's name), "
        "{index} or {index:02d} (its 1-based position) and, with --methods_dir, {method}."
      )
    fields.add(field)
    if field == "name":
      regex += re.escape(name) if name is not None else ".+"
    elif field == "index":
      try:
        regex += re.escape(format(index, spec)) if index is not None else "[0-9]+"
      except ValueError as error:
        raise ValueError(
          f"--fused_pattern {template!r}: {{index:{spec}}} is not an integer format ({error}); "
          "use e.g. {index:02d}."
        ) from error
    else:
      regex += re.escape(method) if method is not None else "(?P<method>.+)"
  if not fields & {"name", "index"}:
    raise ValueError(
      f"--fused_pattern {template!r} names no pair; put {{name}} or {{index}} (e.g. {{index:02d}}) "
      "where the pair's name or number is in the file names."
    )
  return re.compile(regex, re.IGNORECASE)


def _pattern_matches(
  pairs: Sequence, fused_dir: str | os.PathLike, pattern: str, method: str | None
) -> dict[int, Path]:
  """``{position: path}`` of the pairs that one file of ``fused_dir`` matches by ``pattern``."""
  folder = Path(fused_dir)
  files = [p for p in fused_file_index(fused_dir, check_stems=False).values()]
  found: dict[int, Path] = {}
  for k, pair in enumerate(pairs):
    regex = fused_pattern_regex(pattern, safe_name(pair.name), k + 1, method)
    hits = [p for p in files if regex.fullmatch(p.name)]
    if len(hits) > 1:
      raise ValueError(
        f"--fused_pattern {pattern!r} matches {len(hits)} files in {folder} for pair {pair.name!r} "
        f"({', '.join(p.name for p in hits[:4])}); make the pattern more specific (e.g. the suffix)."
      )
    if hits:
      found[k] = hits[0]
  return found


def match_fused_files(
  pairs: Sequence,
  fused_dir: str | os.PathLike,
  *,
  allow_missing: bool = False,
  pattern: str | None = None,
  method: str | None = None,
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
    example = (
      pattern.format(name=safe_name(pairs[0].name), index=1, method=method or "METHOD")
      if pairs
      else ""
    )
  else:
    index = fused_file_index(fused_dir)
    lower: dict[str, list[Path]] = {}
    for stem, path in index.items():
      lower.setdefault(stem.lower(), []).append(path)
    for pair in pairs:
      name = safe_name(pair.name)
      path = index.get(name)
      if path is None and len(lower.get(name.lower(), [])) == 1:
        path = lower[name.lower()][0]
      if path is None:
        missing.append(pair.name)
      else:
        matched.append((pair, path))
    how, example = "named after its pair", (f"{pairs[0].name}.png" if pairs else "")
  if missing and not allow_missing:
    shown = ", ".join(missing[:_MAX_LISTED]) + (
      f", ... ({len(missing) - _MAX_LISTED} more)" if len(missing) > _MAX_LISTED else ""
    )
    hint = (
      "Name each fused file after its pair (<pair name>.<image suffix>) or pass --fused_pattern with the "
      "file-name template (e.g. '{name}_IFCNN.*')"
      if pattern is None
      else f"Check the template against the file names (pair 1 expects e.g. {example})"
    )
    raise FileNotFoundError(
      f"{len(missing)} of {len(pairs)} pairs have no fused image {how} in {fused_dir}: {shown}. {hint}, or pass "
      "--allow_missing to score only the pairs that have one."
    )
  if not matched:
    raise FileNotFoundError(
      f"None of the {len(pairs)} pairs has a fused image {how} in {fused_dir}; the fused files "
      f"must be named like {example}" + (" (or pass --fused_pattern)." if pattern is None else ".")
    )
  return matched, missing
