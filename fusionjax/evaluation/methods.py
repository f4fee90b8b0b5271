"""Scoring many methods' published results at once: ``evaluate.py --methods_dir ROOT``.

Results of other methods come as their authors distribute them, in one of two layouts:

- a folder per method: ``ROOT/IFCNN/lytro_01.jpg``, ``ROOT/SESF/01.png``, ... Each subfolder that
  holds images is one method, named after the folder; its files are matched to the pairs by name,
  or by ``fused_pattern`` (``'lytro_{index:02d}.*'``; ``{method}`` is the folder's name);
- one folder with a method suffix in each file name: ``ROOT/MFI-WHU_01_SESF.png``,
  ``ROOT/MFI-WHU_01_IFCNN.png``. The methods are the distinct values of ``{method}`` in
  ``fused_pattern`` (default ``'{name}_{method}.*'``) over the files that match a pair.

Each method is scored into ``OUT/<method>/`` (an ordinary evaluation folder, see
:func:`fusionjax.evaluation.evaluate_fused_dir`), then all of them, with any ``extra`` evaluations
(a trained stage, a baseline), are compared in ``OUT/compare.md`` and ``OUT/compare.png``
(:func:`fusionjax.evaluation.comparison.write_comparison`). A rerun reuses every method folder whose
``summary.json`` records the same inputs (folder, pattern, dataset, split, convention, metrics,
``max_pairs``, ``max_side``, ``allow_missing``), so adding one method to ROOT scores that method only;
a folder that records other inputs is refused before any work unless ``overwrite`` is set. A method
whose files cannot be matched (say, pairs missing without ``allow_missing``) is reported and the
others go on.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Sequence

from fusionjax import imageio
from fusionjax.evaluation import comparison
from fusionjax.evaluation import matching
from fusionjax.evaluation import reports
from fusionjax.evaluation import runner
from fusionjax.evaluation import scoring
from fusionjax.evaluation.options import EvalOptions
from fusionjax.evaluation.pairs import select_pairs

#: ``fused_pattern`` of the one-folder layout when none is given.
DEFAULT_SUFFIX_PATTERN = "{name}_{method}.*"


@dataclasses.dataclass(frozen=True)
class Method:
  """One method's results: its name, the folder holding them and how they are named."""

  name: str
  fused_dir: Path
  pattern: str | None  # fused_pattern for its files ({method} = name), None: named after the pairs.

  @property
  def pattern_method(self) -> str | None:
    """The value of ``{method}`` in the pattern (None when it has no such field)."""
    return self.name if self.pattern and "{method}" in self.pattern else None


@dataclasses.dataclass
class MethodsRun:
  """The outcome of :func:`evaluate_methods`: the comparison text, what was reused and what failed."""

  text: str
  scored: list[str]
  reused: list[str]
  failed: list[tuple[str, str]]


def _has_images(folder: Path) -> bool:
  return any(
    p.is_file() and not p.name.startswith(".") and imageio.is_image_file(p)
    for p in folder.iterdir()
  )


def _folder_name(method: str) -> str:
  """A method name as a folder name (path separators and leading dots would misplace it)."""
  return re.sub(r"[\\/]", "_", method).lstrip(".") or "method"


def discover_methods(root: str | Path, pairs: Sequence, pattern: str | None = None) -> list[Method]:
  """The methods under ``root`` (see the module docstring for the two layouts).

  Args:
    root: the folder of results.
    pairs: the pairs to score (for the one-folder layout, to read the method out of the file names).
    pattern: ``fused_pattern``; in the one-folder layout it must hold ``{method}``.

  Returns:
    The methods, sorted by name.

  Raises:
    FileNotFoundError: ``root`` is missing or holds no results.
    ValueError: a one-folder pattern without ``{method}``, or no file that matches a pair.
  """
  root = Path(root)
  if not root.is_dir():
    raise FileNotFoundError(
      f"--methods_dir {root} does not exist; pass the folder holding one subfolder of fused "
      "images per method (or files named like <pair>_<METHOD>.png)."
    )
  folders = sorted(
    (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and _has_images(p)),
    key=lambda p: p.name.lower(),
  )
  if folders:
    return [Method(f.name, f, pattern) for f in folders]
  pattern = pattern or DEFAULT_SUFFIX_PATTERN
  if "{method}" not in pattern:
    raise ValueError(
      f"--methods_dir {root} has no subfolders of images, so the method is read from each file "
      f"name; put {{method}} in --fused_pattern where it stands (e.g. '{{name}}_{{method}}.*')."
    )
  files = list(matching.fused_file_index(root, check_stems=False).values())
  names: set[str] = set()
  for k, pair in enumerate(pairs):
    regex = matching.fused_pattern_regex(pattern, matching.safe_name(pair.name), k + 1)
    names.update(m["method"] for m in (regex.fullmatch(p.name) for p in files) if m)
  if not names:
    example = pattern.format(name=matching.safe_name(pairs[0].name), index=1, method="METHOD")
    raise FileNotFoundError(
      f"No file in {root} matches --fused_pattern {pattern!r} for any pair (pair 1 would be "
      f"e.g. {example}); check the template, or put each method's images in its own subfolder."
    )
  return [Method(n, root, pattern) for n in sorted(names, key=str.lower)]


def _inputs(summary: dict) -> dict:
  """What a method folder's results depend on (compared to decide whether they can be reused)."""
  options = summary.get("options") or {}
  return {
    "fused_dir": summary.get("fused_dir"),
    "dataset": summary.get("dataset"),
    "split": summary.get("split"),
    "convention": summary.get("convention"),
    "max_pairs": options.get("max_pairs"),
    "max_side": options.get("max_side"),
    "fused_pattern": options.get("fused_pattern"),
    "pattern_method": options.get("pattern_method"),
    "allow_missing": bool(options.get("allow_missing")),
    "metrics": sorted(options.get("metrics") or []),
  }


def evaluate_methods(options: EvalOptions) -> MethodsRun:
  """Scores every method under ``options.methods_dir`` into ``options.out`` and compares them.

  Args:
    options: the flags of ``evaluate.py`` (``methods_dir``, ``out``, ``dataset`` and its options,
      ``fused_pattern``, ``compare`` for extra evaluations to include, ``overwrite``, ``progress``).

  Returns:
    A :class:`MethodsRun`.
  """
  from tqdm import tqdm

  from fusionjax import metrics  # Deferred: scipy-heavy.

  metrics.check_convention(options.convention)
  names = scoring.check_metric_names(options.metrics)
  pairs, _, split = select_pairs(
    options.dataset,
    options.data_dir,
    split=options.split,
    dirs=options.dirs,
    reference_dir=options.reference_dir,
    task=options.task,
    max_pairs=options.max_pairs,
  )
  extra = [reports.read_summary(p) for p in options.compare]
  methods = discover_methods(options.methods_dir, pairs, options.fused_pattern)
  out = Path(options.out)
  if out.exists() and not out.is_dir():
    raise ValueError(
      f"--out {out} is a file; pass the folder to write one evaluation per method and compare.md to."
    )
  if runner.is_within(out, Path(options.methods_dir)):
    raise ValueError(
      f"--out {out} is inside --methods_dir {options.methods_dir}; write the results elsewhere."
    )
  wanted = {
    "dataset": options.dataset,
    "split": split,
    "convention": options.convention,
    "max_pairs": options.max_pairs,
    "max_side": options.max_side,
    "allow_missing": bool(options.allow_missing),
    "metrics": sorted(names),
  }
  reusable, stale = {}, []
  for method in methods:
    folder = out / _folder_name(method.name)
    if not (folder / "summary.json").is_file():
      continue
    try:
      summary = reports.read_summary(folder)
    except ValueError:
      summary = {}
    expected = dict(
      wanted,
      fused_dir=str(method.fused_dir.resolve()),
      fused_pattern=method.pattern,
      pattern_method=method.pattern_method,
    )
    recorded = _inputs(summary) if summary else {}
    if recorded == expected and not options.overwrite:
      reusable[method.name] = summary
    elif not options.overwrite:
      changed = [k for k in expected if recorded.get(k) != expected[k]] or ["format"]
      stale.append(f"{folder} ({', '.join(changed)})")
  if stale:
    raise ValueError(
      f"--out {out} holds results of other inputs for {len(stale)} method(s): {'; '.join(stale[:3])}; "
      "pass --overwrite to score them again, or write to another folder."
    )
  bar = tqdm(
    total=len(methods) * len(pairs),
    unit="pair",
    file=sys.stderr,
    dynamic_ncols=True,
    mininterval=0.5,
    disable=not options.progress,
  )
  run = MethodsRun(text="", scored=[], reused=[], failed=[])
  summaries = []
  try:
    for method in methods:
      bar.set_description_str(method.name[:24], refresh=False)
      if method.name in reusable:
        summaries.append(reusable[method.name])
        run.reused.append(method.name)
        bar.update(len(pairs))
        continue
      done = bar.n
      try:
        method_options = dataclasses.replace(
          options,
          out=out / _folder_name(method.name),
          fused_dir=method.fused_dir,
          fused_pattern=method.pattern,
          pattern_method=method.pattern_method,
          name=method.name,
          metrics=names,
          ckpt=None,
          method=None,
          methods_dir=None,
          compare=(),
        )
        summary = runner.evaluate(method_options, progress=lambda: bar.update(1))
      except (FileNotFoundError, ValueError) as error:
        run.failed.append((method.name, " ".join(str(error).split())))
        bar.update(len(pairs) - (bar.n - done))
        continue
      summaries.append(summary)
      run.scored.append(method.name)
  finally:
    bar.close()
  lines = [
    f"Methods in {options.methods_dir}: {len(run.scored)} scored, {len(run.reused)} reused from {out}"
    + (f", {len(run.failed)} failed:" if run.failed else ".")
  ]
  lines += [f"- {name}: {reason}" for name, reason in run.failed]
  if summaries or extra:
    text, figure_note = comparison.write_comparison(extra + summaries, out)
    run.text = text + "\n" + "\n".join(lines + [figure_note]) + "\n"
  else:
    run.text = "\n".join(lines + ["Nothing to compare."]) + "\n"
  return run
