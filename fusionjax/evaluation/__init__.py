"""Evaluation over the benchmark sets: run a stage, a baseline, or score another method's images.

``python evaluate.py`` is a thin front end to :func:`run_evaluation`; the same results come from
Python::

  from fusionjax import evaluation
  summary = evaluation.evaluate_checkpoint("runs/ivf", "tno", "results/efrufn_tno", data_dir="data")
  evaluation.evaluate_baseline("average", "tno", "results/average_tno", data_dir="data")
  evaluation.evaluate_fused_dir("other/TNO", "tno", "results/other_tno", data_dir="data")
  evaluation.compare_summaries(["results/efrufn_tno", "results/average_tno"], "results/tno_compare")
  evaluation.evaluate_fused_dir("IFCNN/Lytro", "lytro", "results/ifcnn_lytro", data_dir="data",
                                fused_pattern="lytro_{index:02d}_IFCNN.*")
  evaluation.evaluate(evaluation.EvalOptions(method="max", dataset="tno", out="results/max_tno", data_dir="data"))

The ``evaluate_*`` functions are :func:`evaluate` with the source of the fused images named first;
their other keyword arguments are the fields of :class:`EvalOptions`.

Each evaluation folder holds ``fused/<pair>.png`` (colour where a source is colour, docs/DESIGN.md §3),
``metrics.csv`` (one row per pair; empty cells for undefined metrics, and for a pair that could not
be scored the reason in an ``error`` column), ``summary.json`` and ``summary.md``. The folder is
written as a whole (a temporary folder swapped in at the end); one that holds results already is
replaced only with ``overwrite=True``. ``summary.json`` has the keys ``convention``, ``dataset``,
``split``, ``method``, ``num_pairs`` (pairs scored), ``unscored_pairs`` (``[{name, reason}]``),
``metrics`` (``{name: {mean, std, n}}`` over the images where the metric is defined),
``missing`` (``{name: reason}`` for metrics undefined on some or all images, e.g. MS-SSIM below
161 px), ``model`` (``params``, ``flops``, ``latency_s`` and details, or null for scored folders)
and ``checkpoint`` (``path``, ``step``, ``task`` and the ``lineage`` back to stage 1).

Protocols of the paper (§4):

- MFIF: the stage-1 checkpoint on Lytro (``--dataset lytro``) and MFI-WHU (``mfi_whu``).
- MEIF: the stage-2 checkpoint on MEFB (``mefb``; no reference) and SICE (``sice``; PSNR and SSIM
  against SICE's reference).
- IVF: the stage-3 checkpoint on TNO (``tno``) and RoadScene's 50 test pairs (``roadscene``).
- MIF (generalisation, §4.5): the **stage-2 (MEIF) checkpoint**, never trained on medical images,
  applied to Harvard MRI-CT and MRI-SPECT (``--dataset harvard_mri_ct`` / ``harvard_mri_spect``)
  with the MRI as first source; the paper draws 20 pairs per task at random, the readers list all
  (21 and 73) in name order, and ``--max_pairs 20`` keeps the first 20.

Metrics are computed on the 8-bit BT.601 luma of the fused image as written to disk, by
:mod:`fusionjax.metrics` in the ``clean`` (default) or ``paper`` convention (docs/DESIGN.md §6). UNIQUE, a
learned metric of the paper's tables, needs pretrained weights that are not available and is left out.
"""

from fusionjax.evaluation.baselines import BASELINES as BASELINES
from fusionjax.evaluation.baselines import average_fusion as average_fusion
from fusionjax.evaluation.baselines import max_fusion as max_fusion
from fusionjax.evaluation.reports import METRIC_ORDER as METRIC_ORDER
from fusionjax.evaluation.reports import SUMMARY_FORMAT as SUMMARY_FORMAT
from fusionjax.evaluation.methods import MethodsRun as MethodsRun
from fusionjax.evaluation.methods import discover_methods as discover_methods
from fusionjax.evaluation.methods import evaluate_methods as evaluate_methods
from fusionjax.evaluation.comparison import compare_summaries as compare_summaries
from fusionjax.evaluation.comparison import comparison_markdown as comparison_markdown
from fusionjax.evaluation.comparison import ranked_comparison_markdown as ranked_comparison_markdown
from fusionjax.evaluation.comparison import write_comparison as write_comparison
from fusionjax.evaluation.reports import read_metrics_csv as read_metrics_csv
from fusionjax.evaluation.reports import read_summary as read_summary
from fusionjax.evaluation.reports import summary_markdown as summary_markdown
from fusionjax.evaluation.reports import write_metrics_csv as write_metrics_csv
from fusionjax.evaluation.reports import write_summary_json as write_summary_json
from fusionjax.evaluation.matching import fused_pattern_regex as fused_pattern_regex
from fusionjax.evaluation.matching import match_fused_files as match_fused_files
from fusionjax.evaluation.options import EvalOptions as EvalOptions
from fusionjax.evaluation.pairs import FOLDERS as FOLDERS
from fusionjax.evaluation.pairs import PairError as PairError
from fusionjax.evaluation.pairs import select_pairs as select_pairs
from fusionjax.evaluation.runner import OUTPUT_FILES as OUTPUT_FILES
from fusionjax.evaluation.runner import check_output_folder as check_output_folder
from fusionjax.evaluation.runner import evaluate as evaluate
from fusionjax.evaluation.runner import evaluate_baseline as evaluate_baseline
from fusionjax.evaluation.runner import evaluate_checkpoint as evaluate_checkpoint
from fusionjax.evaluation.runner import evaluate_fused_dir as evaluate_fused_dir
from fusionjax.evaluation.runner import run_evaluation as run_evaluation
from fusionjax.evaluation.scoring import luma_levels as luma_levels
from fusionjax.evaluation.scoring import score_image as score_image
