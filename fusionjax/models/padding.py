"""Padding of NHWC images to the size that windows and pooling need, and cropping back.

The networks work on any height and width. Window attention needs sizes divisible by the window,
and the multi-scale mask generator max-pools by up to 8 and upsamples back, which needs sizes
divisible by 8. The models therefore pad once at the input to the least common multiple of these
factors and crop the output back to the input size.

Padding is on the bottom and right edges only, so cropping is a plain slice, and uses reflection:
zero padding would put an artificial dark border into the fusion (the mask generator would see an
edge that is in neither source), while reflection continues the image statistics. ``jnp.pad``
reflects repeatedly when the pad is longer than the image (and repeats the single row or column
of a size-1 axis), so images smaller than the multiple work too.

A network may also be given a ``border``: that many reflected pixels on every side, cropped off
after. Every convolution pads its own input with zeros, and the first few rows and columns of an
image are the only pixels that see those zeros; with a border they see reflected image content
instead, like every other pixel. :func:`pad_with_border` and :func:`crop_to` with ``offset`` do both
steps, and the fusion driver (``fusionjax.inference``) sets the border it fuses with.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax.numpy as jnp


def padded_size(size: int, multiple: int) -> int:
  """Returns the least multiple of ``multiple`` that is >= ``size``.

  Args:
    size: a positive length.
    multiple: a positive integer.

  Returns:
    ``ceil(size / multiple) * multiple``.
  """
  if size <= 0 or multiple <= 0:
    raise ValueError(f"padded_size needs positive size and multiple, got {size} and {multiple}.")
  return -(-size // multiple) * multiple


def required_multiple(windows: Sequence[int], pool_factors: Sequence[int] = ()) -> int:
  """Returns the least H/W multiple that serves every window size and pooling factor.

  Args:
    windows: window sizes of the window-attention blocks used at full resolution.
    pool_factors: max-pooling factors whose outputs are upsampled back to full resolution.

  Returns:
    The least common multiple of all the given factors (1 if none).
  """
  factors = [int(f) for f in list(windows) + list(pool_factors)]
  if any(f <= 0 for f in factors):
    raise ValueError(f"Window sizes and pooling factors must be positive, got {factors}.")
  return math.lcm(*factors) if factors else 1


def pad_to_multiple(x: jnp.ndarray, multiple: int, mode: str = "reflect") -> jnp.ndarray:
  """Pads the H and W axes of an NHWC array on the bottom/right to a multiple of ``multiple``.

  Args:
    x: array of shape (B, H, W, C).
    multiple: the H and W of the result are the least multiples of this that are >= H and W.
    mode: any ``jnp.pad`` mode; ``'reflect'`` by default (see the module docstring).

  Returns:
    The padded array (B, H', W', C); ``x`` itself when no padding is needed.
  """
  if x.ndim != 4:
    raise ValueError(f"pad_to_multiple expects an NHWC array (4 axes), got shape {x.shape}.")
  h, w = x.shape[1], x.shape[2]
  pad_h = padded_size(h, multiple) - h
  pad_w = padded_size(w, multiple) - w
  if pad_h == 0 and pad_w == 0:
    return x
  return jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode=mode)


def pad_with_border(x: jnp.ndarray, border: int, multiple: int) -> jnp.ndarray:
  """Reflects ``border`` pixels onto every side of an NHWC array, then pads it to ``multiple``.

  Args:
    x: array of shape (B, H, W, C).
    border: pixels added on the top, bottom, left and right (0: none).
    multiple: then padded on the bottom/right as :func:`pad_to_multiple` does.

  Returns:
    The padded array; crop back with ``crop_to(y, H, W, offset=border)``.
  """
  if border < 0:
    raise ValueError(f"border must be >= 0, got {border}.")
  if border:
    x = jnp.pad(x, ((0, 0), (border, border), (border, border), (0, 0)), mode="reflect")
  return pad_to_multiple(x, multiple)


def crop_to(x: jnp.ndarray, height: int, width: int, offset: int = 0) -> jnp.ndarray:
  """Crops the H and W axes of an NHWC array to ``height`` x ``width`` from ``(offset, offset)``.

  Args:
    x: array of shape (B, H', W', C) with H' >= offset + height and W' >= offset + width.
    height: target height.
    width: target width.
    offset: rows and columns skipped at the top and left (the ``border`` of :func:`pad_with_border`).

  Returns:
    ``x[:, offset:offset + height, offset:offset + width, :]``.
  """
  if x.shape[1] < offset + height or x.shape[2] < offset + width:
    raise ValueError(
      f"Cannot crop shape {x.shape} to {height}x{width} at offset {offset}: the array is smaller."
    )
  return x[:, offset : offset + height, offset : offset + width, :]
