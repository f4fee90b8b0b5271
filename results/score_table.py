"""The table of results/score_stages.sh: every set, every scored method, full resolution.

  python results/score_table.py OUT [--methods efrufn_w16_cpu,efrufn_cpu,average] [--out table.md]
      [--convention paper] [--peers results/ifcnn_full_resolution.json]

Columns: EN, SCD, Qabf, VIF, SD, SF, AG, MEF-SSIM (clean convention) and MS-SSIM (Ma), which is
the paper convention's MS-SSIM (Ma's 3-scale MEF-SSIM against the sources), plus PSNR where the set
has references (SICE). Rows per set: the methods scored under ``OUT/<set>/`` (every folder with a
``summary.json``, or those of ``--methods`` in that order), each with the number of pairs.
``--convention paper`` prints the paper convention's scores of the same fused images instead
(``OUT/<set>/<method>_paper/``), in the columns of the paper's tables: EN, MI (= 2·EN there), SCD,
MS-SSIM (Ma's), Qabf and PSNR. ``--peers FILE`` adds rows scored elsewhere (a JSON file with
``label``, ``about`` and per-set means, such as ``results/ifcnn_full_resolution.json``) below each
set's methods in the clean table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("EN", "SCD", "Qabf", "VIF", "SD", "SF", "AG", "MEF-SSIM")
PAPER_COLUMNS = ("EN", "MI", "SCD", "MS-SSIM", "Qabf", "PSNR")
SETS = ("tno", "roadscene", "lytro", "mefb", "sice", "harvard_mri_ct", "harvard_mri_spect")


def _means(path: Path) -> tuple[dict, int] | None:
  if not path.is_file():
    return None
  summary = json.loads(path.read_text())
  return {k: v["mean"] for k, v in summary["metrics"].items()}, summary["num_pairs"]


def _methods(folder: Path) -> list[str]:
  return sorted(
    p.name
    for p in folder.iterdir()
    if (p / "summary.json").is_file() and not p.name.endswith("_paper")
  )


def _row(name: str, label: str, pairs, cells: list[str]) -> str:
  return f"| {name} | {label} | {pairs} | " + " | ".join(cells) + " |"


def _scored(out: Path, name: str, methods: list[str] | None, suffix: str = ""):
  """Yields ``(method, means, pairs)`` of each method scored on set ``name`` (``suffix``: the
  folder suffix of another convention's scores, e.g. ``_paper``)."""
  for method in methods or _methods(out / name):
    found = _means(out / name / f"{method}{suffix}" / "summary.json")
    if found is not None:
      yield method, *found


def _number(means: dict, column: str, digits: int = 3) -> str:
  return f"{means[column]:.{digits}f}" if means.get(column) is not None else "–"


def paper_table(out: Path, methods: list[str] | None = None, labels: dict | None = None) -> str:
  """The paper-convention table of every set and method found under ``out``."""
  labels = labels or {}
  lines = [
    "| set | method | pairs | " + " | ".join(PAPER_COLUMNS) + " |",
    "|---|---|---:|" + "---:|" * len(PAPER_COLUMNS),
  ]
  for name in SETS:
    if not (out / name).is_dir():
      continue
    for method, means, pairs in _scored(out, name, methods, "_paper"):
      cells = [_number(means, c) for c in PAPER_COLUMNS]
      lines.append(_row(name, labels.get(method, method), pairs, cells))
  return "\n".join(lines) + "\n"


def table(
  out: Path,
  methods: list[str] | None = None,
  labels: dict[str, str] | None = None,
  peers: list[dict] = (),
) -> str:
  """The Markdown table of every set and method found under ``out``, with ``peers``' rows."""
  labels = labels or {}
  lines = [
    "| set | method | pairs | " + " | ".join(COLUMNS) + " | MS-SSIM (Ma) | PSNR |",
    "|---|---|---:|" + "---:|" * (len(COLUMNS) + 2),
  ]
  for name in SETS:
    if not (out / name).is_dir():
      continue
    for method, means, pairs in _scored(out, name, methods):
      paper = _means(out / name / f"{method}_paper" / "summary.json")
      cells = [_number(means, c) for c in COLUMNS]
      cells.append(_number(paper[0], "MS-SSIM") if paper else "–")
      cells.append(_number(means, "PSNR", 2))
      lines.append(_row(name, labels.get(method, method), pairs, cells))
    for peer in peers:
      means = peer["sets"].get(name)
      if means is not None:
        # As given: the file's digits, not more.
        cells = [str(means.get(c, "–")) for c in COLUMNS + ("MS-SSIM (Ma)", "PSNR")]
        lines.append(_row(name, peer["label"], means["pairs"], cells))
  return "\n".join(lines) + "\n"


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("out", help="the OUT folder of results/score_stages.sh")
  parser.add_argument("--methods", default=None, help="comma-separated method folders, in order")
  parser.add_argument("--label", action="append", default=[], help="method=label for the rows")
  parser.add_argument("--out", dest="markdown", default=None, help="also write the table here")
  parser.add_argument("--convention", choices=("clean", "paper"), default="clean")
  parser.add_argument(
    "--peers", action="append", default=[], help="JSON file of rows scored elsewhere"
  )
  args = parser.parse_args(argv)
  labels = dict(item.split("=", 1) for item in args.label)
  methods = args.methods.split(",") if args.methods else None
  if args.convention == "paper":
    text = paper_table(Path(args.out), methods, labels)
  else:
    peers = [json.loads(Path(path).read_text()) for path in args.peers]
    text = table(Path(args.out), methods, labels, peers)
    text += "".join(f"\n{peer['label']}: {peer['about']}\n" for peer in peers)
  print(text, end="")
  if args.markdown:
    Path(args.markdown).write_text(text)


if __name__ == "__main__":
  main()
