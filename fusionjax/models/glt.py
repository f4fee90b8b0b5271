"""Global-local transformation (GLT), the learnable transform inside T of the UF unit (Fig. 6)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fusionjax.models.swin import SwinBlock

Dtype = Any


class GLT(nn.Module):
  """Two 3x3 convolutions for local features, then a stage of Swin V2 blocks for long-range ones.

  ``conv -> GELU -> conv -> LN -> SwinBlock x depth (shifted windows in odd blocks) -> LN``.

  Choices the paper leaves open: a GELU between the two convolutions (without a nonlinearity two
  convolutions collapse into one 5x5 convolution); the paper's "two layer normalisation layers
  in-between the convolutional layers and the SwinBlock" are read as one LayerNorm entering the
  Swin stage and one leaving it, so the transformer sees normalised tokens and its output is on a
  fixed scale whatever the convolutions produce.
  """

  features: int = 32  # Channels of the output (and of the Swin blocks).
  depth: int = 2  # Number of Swin blocks; odd-indexed ones use shifted windows.
  num_heads: int = 4  # Attention heads per Swin block.
  window: int = 2  # Window side of the Swin blocks.
  mlp_ratio: float = 4.0  # Swin MLP hidden width relative to ``features``.
  cpb_hidden: int = 512  # Hidden width of the Swin V2 position-bias MLP.
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """Transforms a feature map.

    Args:
      x: (B, H, W, C_in), any H and W (Swin blocks pad to the window when needed).

    Returns:
      (B, H, W, features).
    """
    if x.ndim != 4:
      raise ValueError(f"GLT expects an NHWC array, got shape {x.shape}.")
    conv = lambda name: nn.Conv(
      self.features, (3, 3), dtype=self.dtype, param_dtype=self.param_dtype, name=name
    )
    norm = lambda name: nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    y = conv("conv1")(x)
    y = conv("conv2")(nn.gelu(y))
    y = norm("norm_in")(y)
    for i in range(self.depth):
      y = SwinBlock(
        self.features,
        self.num_heads,
        self.window,
        shift=bool(i % 2),
        mlp_ratio=self.mlp_ratio,
        cpb_hidden=self.cpb_hidden,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=f"swin{i}",
      )(y)
    return norm("norm_out")(y)
