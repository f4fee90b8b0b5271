r"""Scores trained stages on every benchmark set and writes the results tables beside the paper's.

  python results/make_tables.py --data_dir DATA [--stages fusionjax/weights/efrufn_cpu]
      [--no_teacher ivf=runs/cpu/ivf_no_teacher[,meif=runs/cpu/meif_no_teacher]] [--max_side 384]
      [--pad_multiple 64]
      [--out results] [--readme README.md]

For each benchmark (Lytro, MFI-WHU, SICE test, MEFB, TNO, RoadScene test, Harvard MRI-CT and
MRI-SPECT) it runs the stage that serves the set's task (the MEIF stage for the medical sets, as in
the paper), the per-pixel average and max baselines, and scores all three in both metric conventions
(``fusionjax.metrics``: ``clean`` and ``paper``). The ablation section (paper Tables 6-7) scores every
stage on TNO and SICE (task X's stage applied to task Y), plus the ``--no_teacher`` runs: the IVF and
MEIF stages trained with the same seed and steps but without their teachers.

Writes ``OUT/evals/<set>/<method>_<convention>/`` (fused images, per-image metrics, summaries;
reused on a rerun unless ``--force``), ``OUT/tables.md`` and ``OUT/results.json`` (every mean); with
``--readme`` it also replaces the README's block between ``<!-- results:begin -->`` and
``<!-- results:end -->`` with the tables. The paper's numbers are copied from its Tables 1-4 and 6-7;
its test subsets differ from the sets scored here (noted under each table).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from fusionjax import data, evaluation, metrics, tasks, weights  # noqa: E402
from fusionjax.evaluation import reports  # noqa: E402

CONVENTIONS = metrics.CONVENTIONS  # The first one fuses; the others rescore its fused images.
BASELINES = tuple(evaluation.BASELINES)

#: The columns of the paper's table for each task (UNIQUE, a learned metric, is not available).
TASK_METRICS = {
  "mfif": ("MS-SSIM", "EN", "MI", "SCD", "Qabf"),
  "meif": ("MS-SSIM", "MEF-SSIM", "PSNR", "Qabf"),
  "ivf": ("MS-SSIM", "EN", "MI", "SCD", "Qabf"),
  "mif": ("MS-SSIM", "EN", "MI", "SCD", "Qabf"),
}

#: (set, stage serving it, what the paper scored instead).
SUITE = (
  ("lytro", "mfif", "Table 1: 22 Lytro samples; here Lytro's 20 pairs"),
  ("mfi_whu", "mfif", "not in the paper's tables; MFI-WHU's 30 benchmark pairs"),
  (
    "sice",
    "meif",
    "Table 2: 27 SICE samples; here SICE's 5 test scenes (the darkest and brightest frame)",
  ),
  ("mefb", "meif", "not in the paper's tables; MEFB's 100 pairs (no reference, so no PSNR)"),
  ("tno", "ivf", "Table 3: 26 TNO samples; here the 42 pairs of the common TNO set"),
  ("roadscene", "ivf", "Table 3: 20 RoadScene samples; here RoadScene's 50 test pairs"),
  ("harvard_mri_ct", "meif", "Table 4: 20 random pairs; here all 21 pairs"),
  ("harvard_mri_spect", "meif", "Table 4: 20 random pairs; here all 73 pairs"),
)

TITLES = {
  "lytro": "Lytro (MFIF)",
  "mfi_whu": "MFI-WHU (MFIF)",
  "sice": "SICE test (MEIF)",
  "mefb": "MEFB (MEIF)",
  "tno": "TNO (IVF)",
  "roadscene": "RoadScene test (IVF)",
  "harvard_mri_ct": "Harvard MRI-CT (MIF)",
  "harvard_mri_spect": "Harvard MRI-SPECT (MIF)",
}

#: The paper's EFRUFN and FRUFN rows (Tables 1-4), in the paper's own (unstated) metric convention.
PAPER = {
  "lytro": {
    "EFRUFN": {"MS-SSIM": 0.9937, "EN": 7.4943, "MI": 14.9887, "SCD": 0.6768},
    "FRUFN": {"MS-SSIM": 0.9938, "EN": 7.4943, "MI": 14.9887, "SCD": 0.6858},
  },
  "sice": {
    "EFRUFN": {"MS-SSIM": 0.8500, "MEF-SSIM": 0.7305, "PSNR": 21.7333},
    "FRUFN": {"MS-SSIM": 0.8507, "MEF-SSIM": 0.7280, "PSNR": 21.6278},
  },
  "tno": {
    "EFRUFN": {"MS-SSIM": 0.9489, "EN": 6.8991, "MI": 13.7983, "SCD": 1.8410},
    "FRUFN": {"MS-SSIM": 0.9374, "EN": 6.8625, "MI": 13.7251, "SCD": 1.7573},
  },
  "roadscene": {
    "EFRUFN": {"MS-SSIM": 0.9498, "EN": 7.5762, "MI": 15.1524, "SCD": 1.5555},
    "FRUFN": {"MS-SSIM": 0.9537, "EN": 7.5641, "MI": 15.1283, "SCD": 1.4607},
  },
  "harvard_mri_ct": {
    "EFRUFN": {"MS-SSIM": 0.9415, "EN": 4.8855, "MI": 9.7711, "SCD": 1.3487},
    "FRUFN": {"MS-SSIM": 0.9112, "EN": 5.2384, "MI": 10.4768, "SCD": 1.0985},
  },
  "harvard_mri_spect": {
    "EFRUFN": {"MS-SSIM": 0.9583, "EN": 5.2384, "MI": 10.4769, "SCD": 1.4471},
    "FRUFN": {"MS-SSIM": 0.9328, "EN": 5.0450, "MI": 10.0901, "SCD": 1.2293},
  },
}

#: The paper's gradient-transfer ablation: Table 7 (TNO, FRUFN) and Table 6 (SICE, FRUFN).
PAPER_ABLATION = {
  "tno": {
    "MFIF stage": {"EN": 6.4519, "MI": 12.9038, "SCD": 1.6024, "MS-SSIM": 0.8972},
    "MEIF stage": {"EN": 6.1661, "MI": 12.3322, "SCD": 1.4028, "MS-SSIM": 0.9028},
    "IVF stage, no teacher": {"EN": 6.8161, "MI": 13.6321, "SCD": 1.6072, "MS-SSIM": 0.8925},
    "IVF stage, with teacher": {"EN": 6.8625, "MI": 13.7251, "SCD": 1.7573, "MS-SSIM": 0.9374},
  },
  "sice": {
    "MFIF stage": {"PSNR": 13.9429, "MS-SSIM": 0.7814, "MEF-SSIM": 0.6664},
    "IVF stage": {"PSNR": 13.9429, "MS-SSIM": 0.7814, "MEF-SSIM": 0.6664},
    "MEIF stage, no teacher": {"PSNR": 19.1939, "MS-SSIM": 0.8418, "MEF-SSIM": 0.7357},
    "MEIF stage, with teacher": {"PSNR": 21.6278, "MS-SSIM": 0.8507, "MEF-SSIM": 0.7280},
  },
}

README_BEGIN = "<!-- results:begin -->"
README_END = "<!-- results:end -->"


class Runner:
  """Runs (or reuses) one evaluation per (set, method, convention) under ``out/evals``."""

  def __init__(
    self, out: Path, data_dir: str, max_side: int | None, pad_multiple: int | None, force: bool
  ):
    self.out, self.data_dir, self.max_side, self.force = out / "evals", data_dir, max_side, force
    self.pad_multiple = pad_multiple
    self.results: dict = {}

  def _folder(self, dataset: str, key: str, convention: str) -> Path:
    return self.out / dataset / f"{key}_{convention}"

  def _cached(self, folder: Path) -> dict | None:
    if self.force or not (folder / "summary.json").is_file():
      return None
    summary = reports.read_summary(folder)
    if summary.get("options", {}).get("max_side") != self.max_side:
      return None  # Scored at another resolution: redo.
    return summary

  def _record(self, dataset: str, key: str, convention: str, summary: dict) -> None:
    means = {name: entry.get("mean") for name, entry in summary.get("metrics", {}).items()}
    model = summary.get("model") or {}
    self.results.setdefault(dataset, {}).setdefault(key, {})[convention] = {
      "metrics": means,
      "n": max((entry.get("n", 0) for entry in summary.get("metrics", {}).values()), default=0),
      "latency_s": model.get("latency_s"),
      "method": summary.get("method"),
    }

  def checkpoint(self, dataset: str, key: str, ckpt: str, name: str) -> None:
    """Fuses with ``ckpt`` once (clean convention) and rescores its images in the paper convention."""
    first = self._folder(dataset, key, CONVENTIONS[0])
    summary = self._cached(first)
    if summary is None:
      start = time.perf_counter()
      summary = evaluation.evaluate_checkpoint(
        ckpt,
        dataset,
        first,
        data_dir=self.data_dir,
        convention=CONVENTIONS[0],
        max_side=self.max_side,
        pad_multiple=self.pad_multiple,
        name=name,
        measure_flops=False,
        overwrite=True,
      )
      print(
        f"{dataset:18s} {key:22s} fused and scored in {time.perf_counter() - start:6.1f} s",
        flush=True,
      )
    self._record(dataset, key, CONVENTIONS[0], summary)
    for convention in CONVENTIONS[1:]:
      folder = self._folder(dataset, key, convention)
      summary = self._cached(folder)
      if summary is None:
        summary = evaluation.evaluate_fused_dir(
          first / "fused",
          dataset,
          folder,
          data_dir=self.data_dir,
          convention=convention,
          max_side=self.max_side,
          name=name,
          overwrite=True,
        )
      self._record(dataset, key, convention, summary)

  def baseline(self, dataset: str, method: str) -> None:
    for convention in CONVENTIONS:
      folder = self._folder(dataset, method, convention)
      summary = self._cached(folder)
      if summary is None:
        summary = evaluation.evaluate_baseline(
          method,
          dataset,
          folder,
          data_dir=self.data_dir,
          convention=convention,
          max_side=self.max_side,
          overwrite=True,
        )
      self._record(dataset, method, convention, summary)


def _cell(value) -> str:
  return "–" if value is None else reports.format_value(value)


def _table(columns, rows) -> list[str]:
  lines = ["| Method | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
  for label, values in rows:
    lines.append(f"| {label} | " + " | ".join(_cell(values.get(c)) for c in columns) + " |")
  return lines


def results_markdown(
  results: dict,
  stage_names: dict,
  ablation: bool,
  max_side: int | None,
  label: str,
  pad_multiple: int | None = None,
) -> str:
  """The Markdown of every table."""
  scale = (
    f"Sources whose longer side exceeds {max_side} px were downscaled to it before fusing and scoring "
    "(`--max_side`), so absolute values differ from full-resolution ones. "
    if max_side
    else ""
  )
  if pad_multiple:
    scale += (
      f"Network inputs were reflect-padded to a multiple of {pad_multiple} px (`--pad_multiple`, fewer "
      "compiled shapes), which changes the fused values slightly near the bottom and right edges. "
    )
  lines = [
    f"Scores of **{label}** (generated by `results/make_tables.py`). {scale}Each table lists our numbers in "
    "both metric conventions of `fusionjax.metrics` (`clean`: the textbook definitions, e.g. MI = MI(A,F) + "
    "MI(B,F); `paper`: the conventions behind the paper's tables, e.g. its MI, which equals 2·EN, and a "
    "3-scale MEF MS-SSIM), then the paper's rows as printed. The paper's test subsets differ from the full "
    "sets scored here, and its networks are twice as wide and trained on over 100 times more pixels (see "
    "Known limits), so the paper rows are a target, not a like-for-like comparison. UNIQUE (a learned "
    "metric) is not computed.",
    "",
  ]
  for dataset, stage, subset in SUITE:
    if dataset not in results:
      continue
    task = data.DATASETS[dataset].task
    columns = TASK_METRICS[task]
    rows = []
    for convention in CONVENTIONS:
      for key in ("ours",) + BASELINES:
        entry = results[dataset].get(key, {}).get(convention)
        if entry:
          name = label if key == "ours" else f"{key} (per pixel)"
          rows.append((f"{name} · {convention}", entry["metrics"]))
    for model, values in PAPER.get(dataset, {}).items():
      rows.append((f"paper {model}", values))
    n = max((e.get("n", 0) for k in results[dataset].values() for e in k.values()), default=0)
    lines += [
      f"#### {TITLES[dataset]} — {n} pair{'' if n == 1 else 's'}, {stage} stage",
      "",
    ] + _table(columns, rows)
    lines += ["", f"Paper subset: {subset}.", ""]
  if ablation:
    lines += [
      "#### Gradient transfer (paper Tables 6–7)",
      "",
      "Each stage applied to another task's test set, and the stage of the set's own task trained with and "
      "without its teacher term (same seed, steps and data order; a run without a teacher is only listed "
      "when it was trained), in both conventions; the paper's rows are FRUFN's.",
      "",
    ]
    for dataset, own, columns in (
      ("tno", "IVF", ("EN", "MI", "SCD", "MS-SSIM", "Qabf")),
      ("sice", "MEIF", ("PSNR", "MS-SSIM", "MEF-SSIM", "Qabf")),
    ):
      if dataset not in results:
        continue
      rows = []
      for convention in CONVENTIONS:
        for key, name in stage_names.items():
          entry = results[dataset].get(key, {}).get(convention)
          if entry:
            label = name if key.startswith("stage_") else f"{own} stage, {name}"
            rows.append((f"{label} · {convention}", entry["metrics"]))
      for name, values in PAPER_ABLATION[dataset].items():
        rows.append((f"paper: {name}", values))
      lines += [f"{TITLES[dataset]}:", ""] + _table(columns, rows) + [""]
  return "\n".join(lines).rstrip() + "\n"


def _display_path(path: Path) -> str:
  """``path`` relative to the repository when inside it (so results.json does not name this machine)."""
  try:
    return str(path.resolve().relative_to(ROOT))
  except ValueError:
    return str(path)


def update_readme(
  readme: Path, markdown: str, begin: str = README_BEGIN, end: str = README_END
) -> None:
  """Replaces the README's block between the markers ``begin`` and ``end`` with ``markdown``."""
  text = readme.read_text()
  if begin not in text or end not in text:
    raise ValueError(f"{readme} has no {begin} ... {end} block to replace.")
  head, rest = text.split(begin, 1)
  _, tail = rest.split(end, 1)
  reports.write_text_atomic(readme, f"{head}{begin}\n{markdown}{end}{tail}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    "--data_dir", required=True, help="data root laid out like shared/data (tno/, lytro/, ...)"
  )
  parser.add_argument(
    "--stages",
    default=str(weights.WEIGHTS_DIR / weights.DEFAULT),
    help="folder with one stage workdir per task (mfif/, meif/, ivf/); default the shipped weights",
  )
  parser.add_argument(
    "--label", default="EFRUFN-cpu (ours)", help="name of the scored model in the tables"
  )
  parser.add_argument(
    "--no_teacher",
    default="",
    help="stage=workdir,... of stages trained without their teacher (ivf, meif), for the ablation",
  )
  parser.add_argument(
    "--datasets",
    default=",".join(d for d, _, _ in SUITE),
    help="comma-separated subset of the sets",
  )
  parser.add_argument(
    "--max_side", type=int, default=None, help="downscale sources with a longer side above this"
  )
  parser.add_argument(
    "--pad_multiple",
    type=int,
    default=None,
    help="pad network inputs to a multiple of this, so images of many sizes share compiled shapes",
  )
  parser.add_argument("--out", default="results", help="output folder (default %(default)s)")
  parser.add_argument("--readme", default=None, help="README whose results block to replace")
  parser.add_argument(
    "--force", action="store_true", help="redo evaluations that already have a summary"
  )
  args = parser.parse_args(argv)

  stages = Path(args.stages)
  no_teacher = {}
  for item in filter(None, args.no_teacher.split(",")):
    stage, _, path = item.partition("=")
    if stage not in tasks.TEACHER_OF or not (Path(path) / "checkpoints").is_dir():
      parser.error(
        f"--no_teacher entries are meif=WORKDIR or ivf=WORKDIR of trained stages; got {item!r}."
      )
    no_teacher[stage] = path
  wanted = args.datasets.split(",")
  unknown = sorted(set(wanted) - {d for d, _, _ in SUITE})
  if unknown:
    parser.error(f"unknown sets {unknown}; choose from {[d for d, _, _ in SUITE]}.")

  needed = {stage for dataset, stage, _ in SUITE if dataset in wanted}
  if no_teacher:
    needed = set(tasks.STAGES)
  for stage in sorted(needed):
    if not (stages / stage / "checkpoints").is_dir():
      parser.error(
        f"{stages / stage} is not a trained stage; pass --stages with the mfif/, meif/ and ivf/ "
        "workdirs the chosen sets need."
      )

  out = Path(args.out)
  runner = Runner(out, args.data_dir, args.max_side, args.pad_multiple, args.force)
  for dataset, stage, _ in SUITE:
    if dataset not in wanted:
      continue
    runner.checkpoint(dataset, "ours", str(stages / stage), args.label)
    for method in BASELINES:
      runner.baseline(dataset, method)
  stage_names = {}
  if no_teacher:
    # Table 7: every stage on TNO and the IVF stage without its teacher; Table 6: the same on SICE for MEIF.
    for dataset, own in (("tno", "ivf"), ("sice", "meif")):
      if dataset not in wanted:
        continue
      for stage in tasks.STAGES:
        if stage != own:
          runner.checkpoint(
            dataset, f"stage_{stage}", str(stages / stage), f"{stage.upper()} stage"
          )
          stage_names[f"stage_{stage}"] = f"{stage.upper()} stage"
      if own in no_teacher:
        runner.checkpoint(
          dataset, "no_teacher", no_teacher[own], f"{own.upper()} stage, no teacher"
        )
      runner.results[dataset]["with_teacher"] = runner.results[dataset]["ours"]
    stage_names.update({"no_teacher": "no teacher", "with_teacher": "with teacher"})
  markdown = results_markdown(
    runner.results, stage_names, bool(no_teacher), args.max_side, args.label, args.pad_multiple
  )
  reports.write_text_atomic(out / "tables.md", markdown)
  reports.write_text_atomic(
    out / "results.json",
    json.dumps(
      {
        "stages": _display_path(stages),
        "no_teacher": no_teacher,
        "max_side": args.max_side,
        "results": runner.results,
      },
      indent=1,
      sort_keys=True,
    )
    + "\n",
  )
  if args.readme:
    update_readme(Path(args.readme), markdown)
  print(f"Wrote {out / 'tables.md'} and {out / 'results.json'}.")


if __name__ == "__main__":
  main()
