"""Convolutional building blocks: the residual block of Tθ1/Tθ2 and the ConvNeXt block of MSMG."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fusionjax.models.ops import DepthwiseConv

Dtype = Any


class ResidualBlock(nn.Module):
  """Residual block ``x + conv(relu(conv(x)))`` (He et al. 2016, basic block without batch norm).

  Batch norm is left out, as in image-restoration networks (EDSR): training batches here are a
  few patches, so batch statistics are noisy, and the block must behave the same at train and test
  time without a mutable state.
  """

  features: int  # Channels in and out (the residual needs them equal).
  kernel_size: int = 3  # Spatial size of both convolutions.
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameters stay float32 even for bfloat16 compute.

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """Applies the block.

    Args:
      x: (B, H, W, features).

    Returns:
      (B, H, W, features).
    """
    if x.shape[-1] != self.features:
      raise ValueError(
        f"ResidualBlock expects {self.features} input channels, got shape {x.shape}."
      )
    k = (self.kernel_size, self.kernel_size)
    y = nn.Conv(self.features, k, dtype=self.dtype, param_dtype=self.param_dtype, name="conv1")(x)
    y = nn.relu(y)
    y = nn.Conv(self.features, k, dtype=self.dtype, param_dtype=self.param_dtype, name="conv2")(y)
    return x.astype(y.dtype) + y


class ConvNeXtBlock(nn.Module):
  """ConvNeXt block (Liu et al. 2022): depthwise 7x7 conv, LayerNorm, inverted MLP, layer scale.

  ``x + gamma * pw2(gelu(pw1(LN(dwconv(x)))))``; stochastic depth is left out (the networks are
  small and the paper mentions no regularisation).
  """

  features: int  # Channels in and out.
  kernel_size: int = 7  # Depthwise kernel size (ConvNeXt's 7x7).
  mlp_ratio: float = 4.0  # Hidden width of the pointwise MLP relative to ``features``.
  layer_scale_init: float = 1e-6  # ConvNeXt's initial layer scale: the block starts near identity.
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """Applies the block.

    Args:
      x: (B, H, W, features).

    Returns:
      (B, H, W, features).
    """
    if x.shape[-1] != self.features:
      raise ValueError(
        f"ConvNeXtBlock expects {self.features} input channels, got shape {x.shape}."
      )
    y = DepthwiseConv(
      self.features, self.kernel_size, dtype=self.dtype, param_dtype=self.param_dtype, name="dwconv"
    )(x)
    y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(y)
    hidden = int(round(self.features * self.mlp_ratio))
    y = nn.Dense(hidden, dtype=self.dtype, param_dtype=self.param_dtype, name="pwconv1")(y)
    y = nn.gelu(y)
    y = nn.Dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype, name="pwconv2")(y)
    gamma = self.param(
      "layer_scale",
      nn.initializers.constant(self.layer_scale_init),
      (self.features,),
      self.param_dtype,
    )
    return x.astype(y.dtype) + gamma.astype(y.dtype) * y
