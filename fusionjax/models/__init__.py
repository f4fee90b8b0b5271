"""The fusion networks: FRUFN, EFRUFN, their ablation variants (paper Table 8) and ColorNet.

Typical use::

    from fusionjax import models
    model = models.create_model(models.default_model_config())   # EFRUFN
    variables = model.init(rng, y1, y2)                          # y: (B, H, W, 1) in [0, 1]
    fused = model.apply(variables, y1, y2)                       # (B, H, W, 1) in [0, 1]
    fused, aux = model.apply(variables, y1, y2, mutable=['intermediates'])
    stats = models.find_solver_stats(aux['intermediates'])      # EFRUFN's fusionjax.deq stats

Building blocks live in their own modules: ``blocks`` (residual, ConvNeXt), ``swin`` (window
attention, Swin V2 block), ``glt``, ``msmg``, ``unfolding`` (Tθ1/Tθ2, Tθ3⁻¹, UF unit, networks),
``colornet``, ``padding``, ``stats`` (reading the sown solver statistics).
"""

from fusionjax.models.blocks import ConvNeXtBlock as ConvNeXtBlock
from fusionjax.models.blocks import ResidualBlock as ResidualBlock
from fusionjax.models.colornet import ColorNet as ColorNet
from fusionjax.models.config import create_model as create_model
from fusionjax.models.config import default_model_config as default_model_config
from fusionjax.models.config import solver_options as solver_options
from fusionjax.models.glt import GLT as GLT
from fusionjax.models.msmg import MSMG as MSMG
from fusionjax.models.stats import find_solver_stats as find_solver_stats
from fusionjax.models.stats import solver_stats_summary as solver_stats_summary
from fusionjax.models.swin import SwinBlock as SwinBlock
from fusionjax.models.swin import WindowAttention as WindowAttention
from fusionjax.models.swin import shifted_window_mask as shifted_window_mask
from fusionjax.models.swin import window_merge as window_merge
from fusionjax.models.swin import window_partition as window_partition
from fusionjax.models.unfolding import EFRUFN as EFRUFN
from fusionjax.models.unfolding import FRUFN as FRUFN
from fusionjax.models.unfolding import InverseTransform as InverseTransform
from fusionjax.models.unfolding import SourceTransform as SourceTransform
from fusionjax.models.unfolding import UFUnit as UFUnit
from fusionjax.models.unfolding import check_inputs as check_inputs

__all__ = [
  "ColorNet",
  "ConvNeXtBlock",
  "EFRUFN",
  "FRUFN",
  "GLT",
  "InverseTransform",
  "MSMG",
  "ResidualBlock",
  "SourceTransform",
  "SwinBlock",
  "UFUnit",
  "WindowAttention",
  "check_inputs",
  "create_model",
  "default_model_config",
  "find_solver_stats",
  "shifted_window_mask",
  "solver_options",
  "solver_stats_summary",
  "window_merge",
  "window_partition",
]
