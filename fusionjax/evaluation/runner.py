"""The evaluation driver: run a trained stage, a baseline or another method's fused images over a set.

:func:`evaluate` does what an :class:`~fusionjax.evaluation.options.EvalOptions` asks: it checks the
options, lists the pairs (:mod:`fusionjax.evaluation.pairs`), picks the producer of the fused images
(:mod:`fusionjax.evaluation.producers`: a checkpoint, a baseline or a folder of fused files) and
scores every pair in one loop (:func:`score_pairs`, :mod:`fusionjax.evaluation.scoring`).
:func:`evaluate_checkpoint`, :func:`evaluate_baseline` and :func:`evaluate_fused_dir` are the same
call with the source of the fused images named first; :func:`run_evaluation` adds ``compare`` and
``methods_dir`` for ``evaluate.py``.

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
import datetime
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from fusionjax import imageio
from fusionjax.evaluation import baselines
from fusionjax.evaluation import comparison
from fusionjax.evaluation import pairs as pairs_lib
from fusionjax.evaluation import producers
from fusionjax.evaluation import reports
from fusionjax.evaluation.matching import safe_name
from fusionjax.evaluation.options import EvalOptions
from fusionjax.evaluation.scoring import (
  aggregate_results,
  check_metric_names,
  metric_row,
  score_image,
)

logger = logging.getLogger(__name__)

# How many names an error lists before counting the rest.
_MAX_LISTED = 10
#: What an evaluation writes into its output folder (``overwrite`` replaces only such folders).
OUTPUT_FILES = ("fused", "metrics.csv", "summary.json", "summary.md")


def is_within(path: Path, folder: Path) -> bool:
  """Whether ``path`` is ``folder`` or inside it (links resolved)."""
  path, folder = path.resolve(), folder.resolve()
  return path == folder or folder in path.parents


def check_output_folder(
  out: str | os.PathLike,
  *,
  overwrite: bool = False,
  inputs: Sequence[str | os.PathLike | None] = (),
) -> Path:
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
    raise ValueError(
      f"--out {out} is a file; pass the folder to write the results to (e.g. results/my_eval)."
    )
  for path in inputs:
    if path and Path(path).exists() and is_within(Path(path), out):
      raise ValueError(
        f"--out {out} holds {path}, which this evaluation reads; write the results to another folder."
      )
  held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
  if not held:
    return out
  foreign = [name for name in held if name not in OUTPUT_FILES]
  if foreign:
    shown = ", ".join(foreign[:_MAX_LISTED]) + (", ..." if len(foreign) > _MAX_LISTED else "")
    raise ValueError(
      f"--out {out} is not empty and holds files an evaluation does not write ({shown}); "
      "write the results to a new or empty folder."
    )
  if not overwrite:
    raise ValueError(
      f"--out {out} already holds results ({', '.join(held)}); pass --overwrite to replace them "
      "as a whole, or write to another folder."
    )
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


def score_pairs(
  pairs: Sequence,
  producer: producers.Producer,
  out: str | os.PathLike,
  *,
  names: Sequence[str],
  convention: str,
  max_side: int | None,
  header: Mapping[str, Any],
  progress: Callable[[], None] | None = None,
) -> dict:
  """Scores the fused image of every pair and writes metrics.csv, summary.json and summary.md.

  Args:
    pairs: the pairs.
    producer: makes each pair's fused image (``producer(pair, sources) -> (fused, extra CSV columns)``),
      writes them to ``out/fused/<name>.png`` when its ``save_fused`` is set, and completes the
      summary in ``producer.finish(summary, rows)`` before it is written.
    out: output folder.
    names: metric names.
    convention: metric convention.
    max_side: downscale pairs above this size first.
    header: summary fields that describe the run (method, dataset, model, ...).
    progress: called after each pair (scored or not), e.g. to advance a progress bar.

  Returns:
    The summary dict.
  """
  out = Path(out)
  rows, results, unscored = [], [], []
  started = time.perf_counter()
  with _staged_folder(out) as staging:
    for k, pair in enumerate(pairs):
      if progress is not None and k:
        progress()
      try:
        loaded = pairs_lib.load_pair(pair)
        sources, reference = list(loaded.sources), loaded.reference
        height, width = sources[0].shape[:2]
        size = pairs_lib.downscaled_size(height, width, max_side)
        if size != (height, width):
          sources = [pairs_lib.resize_to(s, *size) for s in sources]
          reference = pairs_lib.resize_to(reference, *size) if reference is not None else None
        fused, columns = producer(pair, sources)
      except pairs_lib.PairError as error:
        logger.warning("[%d/%d] %s: not scored: %s", k + 1, len(pairs), pair.name, error)
        unscored.append({"name": pair.name, "reason": str(error)})
        rows.append({"name": pair.name, "error": str(error)})
        continue
      if producer.save_fused:
        imageio.save_image(staging / "fused" / f"{safe_name(pair.name)}.png", fused)
      result = score_image(fused, sources, reference, metrics=names, convention=convention)
      results.append(result)
      rows.append(metric_row(pair.name, size, result, names, columns))
      shown = ", ".join(
        f"{n}={result[n].value:.4g}" for n in names[:4] if result[n].value is not None
      )
      logger.info("[%d/%d] %s (%dx%d): %s", k + 1, len(pairs), pair.name, size[0], size[1], shown)
    if progress is not None and pairs:
      progress()
    if not results:
      listed = "; ".join(f"{u['name']}: {u['reason']}" for u in unscored[:3])
      raise ValueError(
        f"None of the {len(pairs)} pairs could be scored ({listed}"
        f"{'; ...' if len(unscored) > 3 else ''}). Nothing was written."
      )
    metrics, missing = aggregate_results(results, names)
    summary = {"format": reports.SUMMARY_FORMAT}
    summary.update(header)
    summary.update(
      {
        "convention": convention,
        "num_pairs": len(results),
        "metrics": metrics,
        "missing": missing,
        "num_unscored": len(unscored),
        "unscored_pairs": unscored,
        "elapsed_s": time.perf_counter() - started,
      }
    )
    summary.setdefault(
      "created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    )
    producer.finish(summary, [r for r in rows if "error" not in r])
    metric_columns = ["name", "height", "width"] + list(names)
    first_scored = next(r for r in rows if "error" not in r)
    columns = (
      metric_columns
      + [c for c in first_scored if c not in metric_columns]
      + (["error"] if unscored else [])
    )
    reports.write_metrics_csv(rows, staging / "metrics.csv", columns=columns)
    reports.write_summary_json(summary, staging / "summary.json")
    reports.write_text_atomic(staging / "summary.md", reports.summary_markdown(summary))
  if unscored:
    logger.warning(
      "%d of %d pairs were not scored (listed in %s with the reason).",
      len(unscored),
      len(pairs),
      out / "metrics.csv",
    )
  logger.info("Wrote %s, %s and %s.", out / "metrics.csv", out / "summary.json", out / "summary.md")
  return summary


def _producer_type(options: EvalOptions) -> type[producers.Producer]:
  """The producer that ``options`` asks for: exactly one of ``ckpt``, ``fused_dir`` and ``method``."""
  given = [
    flag
    for flag, value in (
      ("--ckpt", options.ckpt),
      ("--fused_dir", options.fused_dir),
      ("--method", options.method),
    )
    if value
  ]
  if len(given) != 1:
    raise ValueError(
      "Pass exactly one of --ckpt (a trained stage), --fused_dir (fused images to score) and "
      f"--method (average or max), or --compare; got {', '.join(given) or 'none'}."
    )
  if options.ckpt:
    return producers.CheckpointProducer
  if options.fused_dir:
    return producers.FusedDirProducer
  if options.method not in baselines.BASELINES:
    raise ValueError(
      f"Unknown baseline {options.method!r}; use one of {', '.join(baselines.BASELINES)}."
    )
  return producers.BaselineProducer


def evaluate(options: EvalOptions, *, progress: Callable[[], None] | None = None) -> dict:
  """Fuses (or reads) and scores every pair of a benchmark set, and writes the evaluation folder.

  Writes ``out/metrics.csv``, ``out/summary.json`` and ``out/summary.md``, and ``out/fused/<pair>.png``
  (colour where a source is colour) unless the fused images come from ``fused_dir``. The fused
  images come from exactly one of ``options.ckpt``, ``options.fused_dir`` and ``options.method``
  (:mod:`fusionjax.evaluation.producers`).

  Args:
    options: what to evaluate, on which pairs, and where to write it (``compare`` and ``methods_dir``
      are :func:`run_evaluation`'s).
    progress: called after each pair (scored or not), e.g. to advance a progress bar.

  Returns:
    The summary dict (as written to ``summary.json``).
  """
  producer_type = _producer_type(options)
  if not options.out:
    raise ValueError("Pass --out with the folder to write the results to.")
  from fusionjax import metrics  # Deferred: scipy-heavy, and compare needs none of it.

  metrics.check_convention(options.convention)
  names = check_metric_names(options.metrics)
  pairs, task, split = pairs_lib.select_pairs(
    options.dataset,
    options.data_dir,
    split=options.split,
    dirs=tuple(options.dirs),
    reference_dir=options.reference_dir,
    task=options.task,
    max_pairs=options.max_pairs,
  )
  producer = producer_type(options, pairs, task=task, split=split, metrics=names)
  check_output_folder(
    options.out,
    overwrite=options.overwrite,
    inputs=(*producer.inputs, options.data_dir, options.reference_dir, *options.dirs),
  )
  producer.load()
  return score_pairs(
    pairs,
    producer,
    options.out,
    names=names,
    convention=options.convention,
    max_side=options.max_side,
    header=producer.header(),
    progress=progress,
  )


def evaluate_checkpoint(ckpt, dataset: str, out: str | os.PathLike, **options) -> dict:
  """Runs a stage checkpoint on a benchmark set and scores it (:class:`~fusionjax.evaluation.producers.CheckpointProducer`).

  Writes ``out/fused/<pair>.png`` (colour where a source is colour), ``out/metrics.csv``,
  ``out/summary.json`` and ``out/summary.md``. The model section of the summary holds the parameter
  count, the FLOPs of the forward pass at the first image's size (see
  :func:`fusionjax.evaluation.cost.forward_cost`) and the mean wall time per image (calls that compiled a
  new input shape excluded).

  Args:
    ckpt: a stage workdir (or a loaded ``FusionModel``); ``'shipped'`` runs the shipped weights of the
      stage that serves the dataset's task (:mod:`fusionjax.weights`).
    dataset: a ``fusionjax.data.DATASETS`` key or ``'folders'``.
    out: output folder; one that holds results is replaced only with ``overwrite=True``.
    **options: other fields of :class:`~fusionjax.evaluation.options.EvalOptions`: ``data_dir``,
      ``split``, ``dirs``, ``reference_dir`` and ``task`` (for ``'folders'``), ``convention``,
      ``metrics``, ``max_pairs``, ``max_side``, ``tile_size``, ``tile_overlap``, ``pad_multiple``,
      ``sequence`` (the rule for more than two sources), ``name`` (default e.g.
      ``'EFRUFN (meif)'``), ``measure_flops``, ``overwrite``.

  Returns:
    The summary dict (as written to ``summary.json``).
  """
  return evaluate(EvalOptions(ckpt=ckpt, dataset=dataset, out=out, **options))


def evaluate_baseline(method: str, dataset: str, out: str | os.PathLike, **options) -> dict:
  """Scores a built-in baseline ('average', 'max' or 'mertens') on a benchmark set.

  Writes the same files as :func:`evaluate_checkpoint`; the model section holds 0 parameters and the
  mean wall time of the rule per image.

  Args:
    method: a :data:`fusionjax.evaluation.baselines.BASELINES` key.
    dataset: see :func:`evaluate_checkpoint`.
    out: see :func:`evaluate_checkpoint`.
    **options: other fields of :class:`~fusionjax.evaluation.options.EvalOptions` (``data_dir``,
      ``convention``, ``metrics``, ``max_pairs``, ``max_side``, ``name`` (default the baseline's
      name), ``overwrite``, ...).

  Returns:
    The summary dict.
  """
  return evaluate(EvalOptions(method=method, dataset=dataset, out=out, **options))


def evaluate_fused_dir(
  fused_dir: str | os.PathLike,
  dataset: str,
  out: str | os.PathLike,
  *,
  progress: Callable[[], None] | None = None,
  **options,
) -> dict:
  """Scores existing fused images (e.g. another method's results) on a benchmark set.

  Each pair's fused image is ``fused_dir/<pair name>.<any image suffix>``, or the one file whose name
  matches ``fused_pattern`` (:func:`fusionjax.evaluation.matching.fused_pattern_regex`), and must
  have the sources' size (or, with ``max_side``, either that size or the downscaled one). A fused
  file that cannot be read or has another size leaves its pair unscored (listed with the reason);
  the others are scored.

  Args:
    fused_dir: folder of fused images.
    dataset: see :func:`evaluate_checkpoint`.
    out: output folder (metrics.csv, summary.json, summary.md; no images are written).
    progress: called after each pair.
    **options: other fields of :class:`~fusionjax.evaluation.options.EvalOptions`: ``fused_pattern``
      (file-name template of the fused images; None: named after the pairs), ``pattern_method`` (the
      value of ``{method}`` in it), ``allow_missing`` (score the pairs that have a fused file and
      list the others in the summary), ``name`` (default the folder's name, or ``pattern_method``),
      and those of :func:`evaluate_checkpoint`'s data and metrics.

  Returns:
    The summary dict.
  """
  return evaluate(
    EvalOptions(fused_dir=fused_dir, dataset=dataset, out=out, **options), progress=progress
  )


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
      raise ValueError(
        "--methods_dir scores the methods' folders; drop --ckpt, --fused_dir and --method (evaluate "
        "those separately and pass their folders with --compare to include them)."
      )
    if not options.out:
      raise ValueError(
        "--methods_dir needs --out with the folder to write one evaluation per method and compare.md."
      )
    from fusionjax.evaluation import methods  # pylint: disable=import-outside-toplevel

    return methods.evaluate_methods(options)
  if options.fused_pattern and not options.fused_dir:
    raise ValueError(
      "--fused_pattern names the files in --fused_dir (or --methods_dir); pass one of them."
    )
  if options.compare:
    if options.out is None:
      raise ValueError(
        "--compare needs --out with the folder for compare.md and compare.png (or a file ending in "
        ".md for the table alone)."
      )
    if options.ckpt or options.fused_dir or options.method:
      raise ValueError(
        "--compare only tabulates earlier evaluations; drop --ckpt, --fused_dir and --method."
      )
    return comparison.compare_summaries(list(options.compare), options.out)
  return evaluate(options)
