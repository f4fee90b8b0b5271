"""ColorNet: fused chroma for multi-exposure fusion (paper Remark 1, eq. 8).

The paper's ColorNet is described only in its unavailable supplement. This one predicts a
correction to the classical weighted-average chroma rule (``fusionjax.color.fuse_chroma``), in
logit space:

    C = sigmoid(logit(C_rule) + r),   r = CNN(Cr1 Cb1, Cr2 Cb2, Y_fused, C_rule)

so that (a) the output is always in (0, 1) with a gradient everywhere, (b) an untrained network
(whose last layer starts with small weights) returns almost exactly the classical rule, which is
already a reasonable colour, and training only has to learn where the rule fails (the strong
colour casts of badly exposed sources), and (c) the fused luma lets it tell a colour cast in a
saturated region from a genuine colour.

The CNN is a 3x3 convolution to ``features`` channels, ``num_blocks`` residual blocks and a 3x3
convolution to 2 channels (receptive field 11x11 with the defaults): colour correction is local
and the network runs on full-resolution images, so it is kept small (~40 k parameters).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fusionjax.color import CHROMA_NEUTRAL, fuse_chroma
from fusionjax.models.blocks import ResidualBlock

Dtype = Any

# The rule's chroma is clipped this far inside (0, 1) before the logit, so saturated chroma
# (exactly 0 or 1) stays finite.
_LOGIT_MARGIN = 1e-3


class ColorNet(nn.Module):
  """Predicts the fused CrCb (B, H, W, 2) from two sources' CrCb and the fused Y."""

  features: int = 32  # Channels of the hidden layers.
  num_blocks: int = 2  # Residual blocks between the input and output convolutions.
  output_init_scale: float = 1e-2  # Std scale of the last layer: starts close to the rule.
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.

  @nn.compact
  def __call__(self, crcb1: jnp.ndarray, crcb2: jnp.ndarray, fused_y: jnp.ndarray) -> jnp.ndarray:
    """Fuses the chroma of two colour sources.

    Args:
      crcb1: (B, H, W, 2) Cr, Cb of the first source (under-exposed), in [0, 1].
      crcb2: (B, H, W, 2) Cr, Cb of the second source (over-exposed), in [0, 1].
      fused_y: (B, H, W, 1) fused luma in [0, 1].

    Returns:
      (B, H, W, 2) float32 fused Cr, Cb in (0, 1).
    """
    _check_color_inputs(crcb1, crcb2, fused_y)
    crcb1 = jnp.asarray(crcb1, jnp.float32)
    crcb2 = jnp.asarray(crcb2, jnp.float32)
    fused_y = jnp.asarray(fused_y, jnp.float32)
    rule = fuse_chroma(crcb1, crcb2)
    # Centred inputs: chroma is symmetric around the neutral value.
    x = jnp.concatenate([crcb1, crcb2, fused_y, rule], axis=-1) - CHROMA_NEUTRAL
    x = nn.Conv(
      self.features, (3, 3), dtype=self.dtype, param_dtype=self.param_dtype, name="conv_in"
    )(x.astype(self.dtype))
    x = nn.relu(x)
    for i in range(self.num_blocks):
      x = ResidualBlock(
        self.features, dtype=self.dtype, param_dtype=self.param_dtype, name=f"res{i}"
      )(x)
    # Small, not zero, initial weights: a zero layer would also zero every other gradient.
    out_init = nn.initializers.variance_scaling(
      self.output_init_scale**2, "fan_in", "truncated_normal"
    )
    correction = nn.Conv(
      2,
      (3, 3),
      kernel_init=out_init,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="conv_out",
    )(x)
    base = jnp.clip(rule, _LOGIT_MARGIN, 1.0 - _LOGIT_MARGIN)
    logits = jnp.log(base) - jnp.log1p(-base) + correction.astype(jnp.float32)
    return jax.nn.sigmoid(logits)


def _check_color_inputs(crcb1, crcb2, fused_y) -> None:
  """Raises ValueError unless the ColorNet inputs have matching (B, H, W, 2/2/1) shapes."""
  for name, x, channels in (("crcb1", crcb1, 2), ("crcb2", crcb2, 2), ("fused_y", fused_y, 1)):
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 4 or shape[-1] != channels:
      raise ValueError(
        f"ColorNet: {name} must have shape (B, H, W, {channels}), got {shape}; chroma is the "
        "(Cr, Cb) pair of fusionjax.color.rgb_to_ycrcb, luma its Y channel."
      )
    if min(shape) == 0:
      raise ValueError(f"ColorNet: {name} is empty: shape {shape}.")
  if tuple(crcb1.shape) != tuple(crcb2.shape) or tuple(crcb1.shape[:3]) != tuple(fused_y.shape[:3]):
    raise ValueError(
      f"ColorNet: inputs must share batch, height and width, got {tuple(crcb1.shape)}, "
      f"{tuple(crcb2.shape)} and {tuple(fused_y.shape)}."
    )
