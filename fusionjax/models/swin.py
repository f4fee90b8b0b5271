"""Swin Transformer V2 block: (shifted) window attention with scaled cosine attention.

The paper uses SwinBlocks and cites Swin V2 (Liu et al. 2022). What is taken from V2, and why:

- Scaled cosine attention with a learnable per-head logit scale (clamped at log 100): attention
  logits stay bounded whatever the feature magnitude, which matters inside an equilibrium solve
  where the same block is applied many times to a state whose scale drifts.
- Log-spaced continuous relative position bias produced by a small MLP (2 -> 512 -> heads,
  ``16 * sigmoid``): the bias is a function of the offset rather than a table, as in V2. It also
  holds 3.6 k of the block's 16 k parameters at width 32 and brings the networks to the paper's
  parameter counts (0.236 M / 0.864 M); V1's bias table would leave them 6-8 % short.
- Residual post-normalisation (``x + LN(attn(x))``, ``x + LN(mlp(x))``): V2's fix for unbounded
  activation growth in deep stacks; here it keeps the update ``T(F1 - F)`` of the unfolding
  unit bounded, which helps the fixed-point solver.
- The query/value biases of V2 (no key bias).

Not taken: V2's pre-training window transfer (``pretrained_window_size``), which only matters when
fine-tuning across window sizes, and the extra LayerNorm every six blocks of V2's giant models.
Dropout and stochastic depth are left out (small networks; the paper mentions none).

Windows whose side would exceed the image are not shrunk as in the reference code: the block
pads the input to a multiple of the window by reflection and crops back (the networks pad their
input once, so this only happens when a block is used alone). A shift is applied only along an
axis that holds more than one window, where it can move information between windows.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fusionjax.models import padding

Dtype = Any

# Finite stand-in for -inf on masked logits: cosine logits are bounded by 100 + 16, so the
# softmax weight exp(-1e4 - max) is exactly 0 in float32 and bfloat16, without the NaN risk of inf.
_MASKED_LOGIT = -1e4


def window_partition(x: jnp.ndarray, window: int) -> jnp.ndarray:
  """Splits an NHWC array into non-overlapping ``window`` x ``window`` windows.

  Args:
    x: (B, H, W, C) with H and W divisible by ``window`` (a numpy or JAX array).
    window: window side.

  Returns:
    (B * (H // window) * (W // window), window * window, C); windows are ordered batch-major,
    then row of windows, then column of windows; tokens inside a window row-major.
  """
  b, h, w, c = x.shape
  if h % window or w % window:
    raise ValueError(
      f"window_partition needs H and W divisible by the window {window}, got {h}x{w}; "
      "pad with fusionjax.models.padding.pad_to_multiple first."
    )
  x = x.reshape(b, h // window, window, w // window, window, c)  # (B, nH, wh, nW, ww, C)
  x = x.transpose(0, 1, 3, 2, 4, 5)  # (B, nH, nW, wh, ww, C)
  return x.reshape(b * (h // window) * (w // window), window * window, c)


def window_merge(windows: jnp.ndarray, window: int, height: int, width: int) -> jnp.ndarray:
  """Inverse of :func:`window_partition`.

  Args:
    windows: (B * (height // window) * (width // window), window * window, C).
    window: window side.
    height: image height (divisible by ``window``).
    width: image width (divisible by ``window``).

  Returns:
    (B, height, width, C).
  """
  if height % window or width % window:
    raise ValueError(
      f"window_merge needs height and width divisible by the window {window}, got {height}x{width}."
    )
  n_h, n_w = height // window, width // window
  c = windows.shape[-1]
  if windows.shape[0] % (n_h * n_w) or windows.shape[1] != window * window:
    raise ValueError(
      f"windows of shape {windows.shape} do not tile a {height}x{width} image with window {window}."
    )
  b = windows.shape[0] // (n_h * n_w)
  x = windows.reshape(b, n_h, n_w, window, window, c)  # (B, nH, nW, wh, ww, C)
  x = x.transpose(0, 1, 3, 2, 4, 5)  # (B, nH, wh, nW, ww, C)
  return x.reshape(b, height, width, c)


def _region_labels(size, window: int, shift: int):
  """Labels the positions of a cyclically shifted axis by the image region they came from.

  ``size`` is a Python int (numpy result) or a symbolic dimension of ``jax.export`` (``jax.numpy``
  result, so that an exported network keeps its height and width free).
  """
  if isinstance(size, int):
    labels = np.zeros(size, dtype=np.int32)
    if shift:
      # After rolling by -shift, the last ``shift`` positions wrapped around from the start and
      # the window before them holds the old tail: three regions that must not see each other.
      labels[size - window : size - shift] = 1
      labels[size - shift :] = 2
    return labels
  index = jax.lax.iota(jnp.int32, size)
  if not shift:
    return jnp.zeros_like(index)
  n = jnp.asarray(size, jnp.int32)
  return jnp.where(index >= n - shift, 2, jnp.where(index >= n - window, 1, 0)).astype(jnp.int32)


def shifted_window_mask(height, width, window: int, shift_h: int, shift_w: int):
  """Attention mask for windows of an image rolled by (-shift_h, -shift_w).

  Args:
    height: image height (divisible by ``window``); a Python int, or a symbolic dimension while
      exporting with ``jax.export``.
    width: image width (divisible by ``window``), likewise.
    window: window side.
    shift_h: cyclic shift along H (0 <= shift_h < window).
    shift_w: cyclic shift along W (0 <= shift_w < window).

  Returns:
    Boolean array (nW, window * window, window * window), nW = (height // window) *
    (width // window) (numpy for int sizes, else ``jax.numpy``); True where a query token may attend
    to a key token, i.e. where both came from the same region of the unrolled image (never across
    the wrap-around boundary).
  """
  for name, s in (("shift_h", shift_h), ("shift_w", shift_w)):
    if not 0 <= s < window:
      raise ValueError(f"{name} must be in [0, window={window}), got {s}.")
  rows = _region_labels(height, window, shift_h)
  cols = _region_labels(width, window, shift_w)
  labels = (rows[:, None] * 3 + cols[None, :])[None, :, :, None]  # (1, H, W, 1)
  win = window_partition(labels, window)[..., 0]  # (nW, T); numpy in, numpy out
  return win[:, :, None] == win[:, None, :]


def relative_position_index(window: int) -> np.ndarray:
  """Index into the (2w-1)^2 offset table for every (query, key) pair of a window.

  Args:
    window: window side w.

  Returns:
    Integer array (w*w, w*w): ``(dh + w - 1) * (2w - 1) + (dw + w - 1)`` for the offset
    (dh, dw) = position(query) - position(key).
  """
  coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij"))
  coords = coords.reshape(2, -1)  # (2, T)
  rel = coords[:, :, None] - coords[:, None, :]  # (2, T, T)
  return (rel[0] + window - 1) * (2 * window - 1) + (rel[1] + window - 1)


def relative_coords_table(window: int) -> np.ndarray:
  """Log-spaced relative coordinates of Swin V2, the input of the position-bias MLP.

  Args:
    window: window side w.

  Returns:
    Float32 array ((2w-1)^2, 2): offsets normalised to [-1, 1] (by w - 1), scaled by 8 and mapped
    through ``sign(t) * log2(1 + |t|) / log2(8)``, in the order of :func:`relative_position_index`.
  """
  offsets = np.arange(-(window - 1), window, dtype=np.float64)
  table = np.stack(np.meshgrid(offsets, offsets, indexing="ij"), axis=-1)  # (2w-1, 2w-1, 2)
  if window > 1:
    table = table / (window - 1)
  table = table * 8.0
  table = np.sign(table) * np.log2(np.abs(table) + 1.0) / np.log2(8.0)
  return table.reshape(-1, 2).astype(np.float32)


class WindowAttention(nn.Module):
  """Multi-head scaled cosine self-attention inside windows with a continuous position bias."""

  dim: int  # Token channels.
  num_heads: int  # Attention heads; must divide ``dim``.
  window: int  # Window side.
  cpb_hidden: int = 512  # Hidden width of the position-bias MLP (Swin V2's value).
  dtype: Dtype = jnp.float32  # Compute dtype (logits and softmax are always float32).
  param_dtype: Dtype = jnp.float32  # Parameter dtype.

  @nn.compact
  def __call__(self, x: jnp.ndarray, mask: Optional[np.ndarray] = None) -> jnp.ndarray:
    """Attends within each window.

    Args:
      x: (B * nW, T, dim) tokens of B images with nW windows each, T = window ** 2.
      mask: optional boolean (nW, T, T), True where attention is allowed.

    Returns:
      (B * nW, T, dim).
    """
    if self.dim % self.num_heads:
      raise ValueError(f"num_heads={self.num_heads} does not divide dim={self.dim}.")
    n, t, c = x.shape
    if c != self.dim or t != self.window**2:
      raise ValueError(
        f"WindowAttention(dim={self.dim}, window={self.window}) got tokens of shape {x.shape}."
      )
    heads, head_dim = self.num_heads, self.dim // self.num_heads

    qkv = nn.Dense(
      3 * self.dim, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype, name="qkv"
    )(x)
    q_bias = self.param("q_bias", nn.initializers.zeros, (self.dim,), self.param_dtype)
    v_bias = self.param("v_bias", nn.initializers.zeros, (self.dim,), self.param_dtype)
    # Swin V2 has no key bias: under cosine attention a key bias only shifts every key equally.
    qkv_bias = jnp.concatenate([q_bias, jnp.zeros_like(q_bias), v_bias])
    qkv = qkv + qkv_bias.astype(qkv.dtype)
    qkv = qkv.reshape(n, t, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)  # (3, N, h, T, d)
    q, k, v = qkv[0], qkv[1], qkv[2]

    # Cosine similarity in float32: bfloat16 norms of 4-8 channel heads lose too many digits.
    q32 = q.astype(jnp.float32)
    k32 = k.astype(jnp.float32)
    q32 = q32 / jnp.maximum(jnp.linalg.norm(q32, axis=-1, keepdims=True), 1e-12)
    k32 = k32 / jnp.maximum(jnp.linalg.norm(k32, axis=-1, keepdims=True), 1e-12)
    logit_scale = self.param(
      "logit_scale", nn.initializers.constant(math.log(10.0)), (heads, 1, 1), self.param_dtype
    )
    scale = jnp.exp(jnp.minimum(logit_scale.astype(jnp.float32), math.log(100.0)))
    logits = jnp.einsum("nhtd,nhsd->nhts", q32, k32) * scale  # (N, h, T, T)

    table = jnp.asarray(relative_coords_table(self.window))
    bias_table = nn.Dense(
      self.cpb_hidden, dtype=jnp.float32, param_dtype=self.param_dtype, name="cpb_fc1"
    )(table)
    bias_table = nn.Dense(
      heads, use_bias=False, dtype=jnp.float32, param_dtype=self.param_dtype, name="cpb_fc2"
    )(nn.relu(bias_table))  # ((2w-1)^2, h)
    index = relative_position_index(self.window).reshape(-1)
    bias = bias_table[index].reshape(t, t, heads).transpose(2, 0, 1)  # (h, T, T)
    logits = logits + 16.0 * jax.nn.sigmoid(bias)[None]

    if mask is not None:
      n_windows = mask.shape[0]
      if n % n_windows:
        raise ValueError(f"{n} windows cannot be grouped by a mask for {n_windows} windows.")
      logits = logits.reshape(n // n_windows, n_windows, heads, t, t)
      allowed = jnp.asarray(mask)[None, :, None]  # (1, nW, 1, T, T)
      logits = jnp.where(allowed, logits, _MASKED_LOGIT).reshape(n, heads, t, t)

    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    out = jnp.einsum("nhts,nhsd->nhtd", weights, v.astype(self.dtype))
    out = out.transpose(0, 2, 1, 3).reshape(n, t, self.dim)  # (N, T, dim)
    return nn.Dense(self.dim, dtype=self.dtype, param_dtype=self.param_dtype, name="proj")(out)


class SwinBlock(nn.Module):
  """Swin V2 block: (shifted) window attention and an MLP, each with residual post-norm."""

  dim: int  # Channels in and out.
  num_heads: int  # Attention heads; must divide ``dim``.
  window: int  # Window side.
  shift: bool = False  # Shift the windows by window // 2 (alternate blocks in a stage).
  mlp_ratio: float = 4.0  # MLP hidden width relative to ``dim``.
  cpb_hidden: int = 512  # Hidden width of the position-bias MLP.
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.

  def shifts(self, height: int, width: int) -> tuple[int, int]:
    """Returns the (H, W) cyclic shifts used on a padded ``height`` x ``width`` input.

    Args:
      height: padded height (a multiple of ``window``).
      width: padded width.

    Returns:
      ``window // 2`` along each axis that holds more than one window when ``shift`` is set,
      else 0.
    """
    s = self.window // 2 if self.shift else 0
    return (s if height > self.window else 0), (s if width > self.window else 0)

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """Applies the block.

    Args:
      x: (B, H, W, dim), any H and W.

    Returns:
      (B, H, W, dim).
    """
    if x.ndim != 4 or x.shape[-1] != self.dim:
      raise ValueError(f"SwinBlock(dim={self.dim}) expects (B, H, W, {self.dim}), got {x.shape}.")
    height, width = x.shape[1], x.shape[2]
    x = padding.pad_to_multiple(x, self.window)
    hp, wp = x.shape[1], x.shape[2]
    shift_h, shift_w = self.shifts(hp, wp)

    y = jnp.roll(x, (-shift_h, -shift_w), axis=(1, 2)) if (shift_h or shift_w) else x
    mask = (
      shifted_window_mask(hp, wp, self.window, shift_h, shift_w) if (shift_h or shift_w) else None
    )
    y = window_partition(y, self.window)  # (B * nW, T, C)
    y = WindowAttention(
      self.dim,
      self.num_heads,
      self.window,
      self.cpb_hidden,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="attn",
    )(y, mask)
    y = window_merge(y, self.window, hp, wp)
    if shift_h or shift_w:
      y = jnp.roll(y, (shift_h, shift_w), axis=(1, 2))
    norm = lambda name: nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    x = x.astype(y.dtype) + norm("norm1")(y)

    hidden = int(round(self.dim * self.mlp_ratio))
    y = nn.Dense(hidden, dtype=self.dtype, param_dtype=self.param_dtype, name="mlp_fc1")(x)
    y = nn.Dense(self.dim, dtype=self.dtype, param_dtype=self.param_dtype, name="mlp_fc2")(
      nn.gelu(y)
    )
    x = x + norm("norm2")(y)
    return padding.crop_to(x, height, width)
