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
    for method in methods or _methods(out / name):
      paper = _means(out / name / f"{method}_paper" / "summary.json")
      if paper is None:
        continue
      means, pairs = paper
      cells = [f"{means[c]:.3f}" if means.get(c) is not None else "–" for c in PAPER_COLUMNS]
      lines.append(
        f"| {name} | {labels.get(method, method)} | {pairs} | " + " | ".join(cells) + " |"
      )
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
    for method in methods or _methods(out / name):
      clean = _means(out / name / method / "summary.json")
      if clean is None:
        continue
      means, pairs = clean
      paper = _means(out / name / f"{method}_paper" / "summary.json")
      cells = [f"{means[c]:.3f}" if means.get(c) is not None else "–" for c in COLUMNS]
      cells.append(f"{paper[0]['MS-SSIM']:.3f}" if paper else "–")
      cells.append(f"{means['PSNR']:.2f}" if means.get("PSNR") is not None else "–")
      lines.append(
        f"| {name} | {labels.get(method, method)} | {pairs} | " + " | ".join(cells) + " |"
      )
    for peer in peers:
      means = peer["sets"].get(name)
      if means is None:
        continue
      # As given: the file's digits, not more.
      cells = [str(means.get(c, "–")) for c in COLUMNS + ("MS-SSIM (Ma)", "PSNR")]
      lines.append(f"| {name} | {peer['label']} | {means['pairs']} | " + " | ".join(cells) + " |")
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
