"""Fusion quality metrics on grey/Y images with 8-bit levels 0..255 (pure numpy, plus scipy.ndimage).

Every metric returns a `MetricResult`: a value, or None with the reason the metric is undefined
for that input (too small for its windows, no reference, a zero-variance correlation, more than
two sources for a two-source metric), so a test-set average never includes a made-up number.

Typical use::

    from fusionjax import metrics
    scores = metrics.compute_metrics(fused_y, [under_y, over_y])          # all metrics, clean
    paper = metrics.compute_metrics(fused_y, [a, b], convention="paper")  # as in the paper's tables
    table = metrics.summarize([scores, ...])                              # mean/std/n/missing

Two conventions: ``clean`` (textbook definitions, default) and ``paper`` (the MATLAB metric
package behind the paper's tables: MI = 2 EN, MS-SSIM = Ma's 3-scale MEF-SSIM); see
`compute_metrics`. UNIQUE, the learned metric of the paper's tables, needs pretrained weights
and is not provided.
"""

from fusionjax.metrics._result import CONVENTIONS as CONVENTIONS
from fusionjax.metrics._result import MetricResult as MetricResult
from fusionjax.metrics._result import check_convention as check_convention
from fusionjax.metrics._compute import COMPARE_TO as COMPARE_TO
from fusionjax.metrics._compute import METRIC_NAMES as METRIC_NAMES
from fusionjax.metrics._compute import compute_metrics as compute_metrics
from fusionjax.metrics._compute import summarize as summarize
from fusionjax.metrics.edges import qabf as qabf
from fusionjax.metrics.information import entropy as entropy
from fusionjax.metrics.information import mutual_information as mutual_information
from fusionjax.metrics.statistics import average_gradient as average_gradient
from fusionjax.metrics.statistics import psnr as psnr
from fusionjax.metrics.statistics import scd as scd
from fusionjax.metrics.statistics import spatial_frequency as spatial_frequency
from fusionjax.metrics.statistics import standard_deviation as standard_deviation
from fusionjax.metrics.structural import MEF_MS_SSIM_WEIGHTS as MEF_MS_SSIM_WEIGHTS
from fusionjax.metrics.structural import MS_SSIM_WEIGHTS as MS_SSIM_WEIGHTS
from fusionjax.metrics.structural import fusion_ms_ssim as fusion_ms_ssim
from fusionjax.metrics.structural import fusion_ssim as fusion_ssim
from fusionjax.metrics.structural import mef_ms_ssim as mef_ms_ssim
from fusionjax.metrics.structural import mef_ssim as mef_ssim
from fusionjax.metrics.structural import ms_ssim as ms_ssim
from fusionjax.metrics.structural import ssim as ssim
from fusionjax.metrics.visual import fusion_vif as fusion_vif
from fusionjax.metrics.visual import vif as vif
