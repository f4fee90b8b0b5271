"""The results-table generator (results/make_tables.py): Markdown layout, paper rows, README block."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from results import make_tables  # noqa: E402


def _entry(**metrics):
  return {"metrics": metrics, "n": 3, "latency_s": None, "method": "x"}


def _section(text, title):
  """The lines of one '#### title' section."""
  start = text.index(f"#### {title}")
  end = text.find("#### ", start + 5)
  return text[start : end if end >= 0 else len(text)]


def _results():
  tno = {
    key: {
      conv: _entry(EN=6.5 + i, MI=13.0, SCD=1.5, **{"MS-SSIM": 0.9, "Qabf": 0.4})
      for conv in make_tables.CONVENTIONS
    }
    for i, key in enumerate(("ours", "average", "max", "stage_mfif", "stage_meif", "no_teacher"))
  }
  tno["with_teacher"] = tno["ours"]
  sice = {
    key: {"clean": _entry(PSNR=18.0, **{"MS-SSIM": 0.8, "MEF-SSIM": 0.7})}
    for key in ("ours", "average")
  }
  return {"tno": tno, "sice": sice}


def test_tables_put_ours_baselines_and_paper_rows_side_by_side():
  names = {
    "stage_mfif": "MFIF stage",
    "stage_meif": "MEIF stage",
    "no_teacher": "no teacher",
    "with_teacher": "with teacher",
  }
  text = make_tables.results_markdown(_results(), names, True, 256, "EFRUFN-cpu (ours)")
  assert "downscaled to it" in text and "256 px" in text
  tno = _section(text, "TNO (IVF)")
  header = [c.strip() for c in tno.splitlines()[2].strip("|").split("|")]
  assert header == ["Method", "MS-SSIM", "EN", "MI", "SCD", "Qabf"]
  rows = {line.split("|")[1].strip(): line for line in tno.splitlines() if line.startswith("| ")}
  assert "| 6.5000 |" in rows["EFRUFN-cpu (ours) · clean"]
  assert "| 7.5000 |" in rows["average (per pixel) · paper"]
  assert "0.9489" in rows["paper EFRUFN"] and "1.7573" in rows["paper FRUFN"]
  assert "Paper subset: Table 3: 26 TNO samples" in tno
  # SICE has no 'paper'-convention entries here and no max baseline: those rows are left out, PSNR stays.
  sice = _section(text, "SICE")
  assert "max (per pixel)" not in sice and "· paper" not in sice.replace("paper EFRUFN", "")
  assert "21.7333" in sice
  ablation = _section(text, "Gradient")
  assert (
    "| IVF stage, no teacher · clean |" in ablation
    and "| IVF stage, with teacher · paper |" in ablation
  )
  assert "| MFIF stage · clean |" in ablation and "paper: IVF stage, no teacher" in ablation
  assert "13.6321" in ablation


def test_missing_metrics_print_a_dash():
  results = {"mefb": {"ours": {"clean": _entry(**{"MS-SSIM": 0.9, "MEF-SSIM": 0.8})}}}
  text = make_tables.results_markdown(results, {}, False, None, "ours")
  row = [line for line in text.splitlines() if line.startswith("| ours · clean")][0]
  assert row.endswith("| 0.9000 | 0.8000 | – | – |")  # PSNR (no reference) and Qabf absent
  assert "downscaled" not in text and "Gradient transfer" not in text


def test_readme_block_is_replaced_and_the_rest_kept(tmp_path):
  readme = tmp_path / "README.md"
  readme.write_text(
    f"# Title\n\nbefore\n{make_tables.README_BEGIN}\nold table\n{make_tables.README_END}\nafter\n"
  )
  make_tables.update_readme(readme, "new table\n")
  assert readme.read_text() == (
    f"# Title\n\nbefore\n{make_tables.README_BEGIN}\nnew table\n{make_tables.README_END}\nafter\n"
  )
  (tmp_path / "plain.md").write_text("no markers")
  with pytest.raises(ValueError, match="results:begin"):
    make_tables.update_readme(tmp_path / "plain.md", "x")
  assert (tmp_path / "plain.md").read_text() == "no markers"
