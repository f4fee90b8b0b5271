"""Windows and 'valid'-region filters of the metrics, and the 2x down-sampling between scales.

Filtering is separable: numpy arithmetic for the vertical pass and `scipy.ndimage` (compiled
1-D correlation and running sums) for the horizontal one; it agrees with direct 2-D correlation
to about 1e-13.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Side of the local window of SSIM, MS-SSIM and MEF-SSIM (Wang 2004; Ma, Zeng & Wang 2015).
WINDOW = 11
# Standard deviation of the SSIM Gaussian window (Wang 2004).
WINDOW_SIGMA = 1.5

# Values per row strip: strips of about 256 KiB keep a strip's temporaries in cache.
_STRIP_VALUES = 1 << 15


def strip_rows(width: int) -> int:
  """Number of output rows per strip for images `width` pixels wide.

  Args:
    width: image width.

  Returns:
    A row count of at least 8.
  """
  return max(8, _STRIP_VALUES // max(width, 1))


def gaussian_window(size: int, sigma: float) -> np.ndarray:
  """Normalised 1-D Gaussian window; its outer product is MATLAB's ``fspecial('gaussian')``.

  Args:
    size: number of taps (odd).
    sigma: standard deviation in pixels.

  Returns:
    A float64 vector of length `size` summing to 1.
  """
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2
  window = np.exp(-(x**2) / (2 * sigma**2))
  return window / window.sum()


def separable_valid(block: np.ndarray, window: np.ndarray, step: int = 1) -> np.ndarray:
  """Correlation with ``window' * window`` over the 'valid' region of a block of rows.

  Equals MATLAB ``filter2(window' * window, block, 'valid')`` (then ``(1:step:end, 1:step:end)``).
  The vertical pass is numpy arithmetic on contiguous rows (the window is symmetric, so taps
  are paired); the horizontal pass is `scipy.ndimage.correlate1d`, or the same paired numpy
  arithmetic on the kept columns only when decimating.

  Args:
    block: 2-D float64 array of at least len(window) rows and columns.
    window: odd-length symmetric 1-D window.
    step: keep every `step`-th output row and column, starting with the first.

  Returns:
    An array of shape (ceil((H - n + 1) / step), ceil((W - n + 1) / step)), n = len(window).
  """
  n = len(window)
  c = n // 2
  height, width = block.shape
  rows = -(-(height - n + 1) // step)
  span = step * (rows - 1) + 1
  vertical = block[c : c + span : step] * window[c]
  paired = np.empty_like(vertical)
  for k in range(c):
    np.add(block[k : k + span : step], block[n - 1 - k : n - 1 - k + span : step], out=paired)
    paired *= window[k]
    vertical += paired
  if step == 1:
    horizontal = ndimage.correlate1d(vertical, window, axis=1, mode="constant", output=paired)
    return horizontal[:, c : width - c]
  # Decimating: only every step-th column is needed, so pair the taps on strided columns.
  columns = -(-(width - n + 1) // step)
  span = step * (columns - 1) + 1
  horizontal = vertical[:, c : c + span : step] * window[c]
  paired = np.empty_like(horizontal)
  for k in range(c):
    np.add(
      vertical[:, k : k + span : step], vertical[:, n - 1 - k : n - 1 - k + span : step], out=paired
    )
    paired *= window[k]
    horizontal += paired
  return horizontal


def filter_valid(image: np.ndarray, window: np.ndarray, step: int = 1) -> np.ndarray:
  """`separable_valid` over a whole image, strip by strip.

  Args:
    image: 2-D float64 array.
    window: odd-length symmetric 1-D window.
    step: keep every `step`-th output row and column.

  Returns:
    The filtered image, as `separable_valid` returns it.
  """
  n = len(window)
  height, width = image.shape
  rows = -(-(height - n + 1) // step)
  per_strip = -(-strip_rows(width) // step)
  parts = []
  for first in range(0, rows, per_strip):
    last = min(first + per_strip, rows)
    parts.append(separable_valid(image[first * step : (last - 1) * step + n], window, step))
  return np.concatenate(parts, axis=0)


def box_sum_valid(block: np.ndarray, size: int) -> np.ndarray:
  """Sum over every `size` x `size` window inside a block ('valid' region).

  Rows are summed by shifted adds, columns by `scipy.ndimage.uniform_filter1d` (a running sum).

  Args:
    block: 2-D float64 array.
    size: odd window side.

  Returns:
    An array of shape (H - size + 1, W - size + 1).
  """
  height, width = block.shape
  rows = height - size + 1
  vertical = block[:rows].copy()
  for k in range(1, size):
    vertical += block[k : k + rows]
  horizontal = ndimage.uniform_filter1d(vertical, size, axis=1, mode="constant")
  horizontal *= size
  return horizontal[:, size // 2 : width - size // 2]


def downsample2(image: np.ndarray) -> np.ndarray:
  """Halves an image by 2x2 averaging, repeating the last row/column when a side is odd.

  This is both ``tf.image.ssim_multiscale``'s down-sampling (symmetric padding by the
  remainder, then 2x2 average pooling) and that of Wang's and Ma's MATLAB code
  (``imfilter(x, ones(2)/4, 'symmetric', 'same')`` then ``x(1:2:end, 1:2:end)``).

  Args:
    image: 2-D float64 array.

  Returns:
    An array of shape (ceil(H / 2), ceil(W / 2)).
  """
  height, width = image.shape
  if height % 2:
    image = np.concatenate([image, image[-1:]], axis=0)
  if width % 2:
    image = np.concatenate([image, image[:, -1:]], axis=1)
  h, w = image.shape
  return image.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def halved_size(size: int, times: int) -> int:
  """Side length after `times` applications of `downsample2`.

  Args:
    size: the starting side length.
    times: how many halvings.

  Returns:
    The side length.
  """
  for _ in range(times):
    size = -(-size // 2)
  return size
