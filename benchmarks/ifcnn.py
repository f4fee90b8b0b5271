"""IFCNN (Zhang et al. 2020, "IFCNN: A general image fusion framework based on convolutional neural
network", Information Fusion 54) in Flax, as a speed peer for the benchmarks.

The published network, inference form: a 7x7 convolution 3 -> 64 without bias (ResNet-101's first
layer, frozen in the paper), a 3x3 convolution 64 -> 64 with batch norm and ReLU per source, an
element-wise fusion rule across the sources (max for multi-focus and infrared-visible, mean for
multi-exposure), a 3x3 convolution 64 -> 64 with batch norm and ReLU, and a 1x1 convolution 64 -> 3.
Batch norm at inference is a per-channel scale and shift, folded here into the convolutions' biases
(83,459 parameters; 83,587 with batch norm's own scale and shift, the paper's 0.083 M). Weights are
random: only the cost matters here.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class IFCNN(nn.Module):
  """IFCNN forward pass on grey sources (replicated to the three input channels, as its code does)."""

  rule: str = "max"  # 'max' or 'mean' over the sources.

  @nn.compact
  def __call__(self, *sources: jnp.ndarray) -> jnp.ndarray:
    """Fuses grey images (B, H, W, 1) in [0, 1]; returns (B, H, W, 3)."""
    conv1 = nn.Conv(64, (7, 7), use_bias=False, name="conv1")
    conv2 = nn.Conv(64, (3, 3), name="conv2")  # bias = folded batch norm
    features = [nn.relu(conv2(conv1(jnp.repeat(s, 3, axis=-1)))) for s in sources]
    stacked = jnp.stack(features)
    fused = stacked.max(axis=0) if self.rule == "max" else stacked.mean(axis=0)
    x = nn.relu(nn.Conv(64, (3, 3), name="conv3")(fused))
    return nn.Conv(3, (1, 1), name="conv4")(x)
