"""The images of one evaluation at every scale, and their local 11x11 statistics.

Maps of local statistics (Gaussian- and box-weighted means and covariances over 11x11 windows,
'valid' region) are computed strip by strip: a `LocalStatistics` holds one strip of rows, computes
each moment once, and every map requested for that scale (SSIM, the MS-SSIM terms, MEF-SSIM) is
evaluated on it before the next strip, so metrics scored together share their filtering and the
temporaries stay in cache.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from fusionjax.metrics._filters import (
  WINDOW,
  WINDOW_SIGMA,
  box_sum_valid,
  downsample2,
  gaussian_window,
  halved_size,
  separable_valid,
  strip_rows,
)
from fusionjax.metrics._result import MetricResult

# Local variances below this (standard deviation < 3e-4 grey levels) are set to 0 so that flat
# patches are exactly flat: E[x^2] - E[x]^2 leaves rounding noise there (up to ~2e-11 measured on
# flat areas of 1200-px-wide images), and MEF-SSIM, which divides by local norms, would otherwise
# normalise that noise into spurious structure. 8-bit data has no real variance this small: one
# level of difference in an 11x11 patch already gives 0.008.
VARIANCE_FLOOR = 1e-7
# Images are shifted by this before products are formed: halving the magnitudes quarters
# the rounding noise of the second moments; covariances do not depend on the shift.
_OFFSET = 127.5

# Taps of the SSIM Gaussian window (11 taps, sigma 1.5).
_GAUSSIAN = gaussian_window(WINDOW, WINDOW_SIGMA)


def to_levels(image: np.ndarray) -> np.ndarray:
  """Integer grey levels 0..255 of an image, for histogram metrics.

  Float values are rounded half up, as a conversion to uint8 (MATLAB ``uint8``) would do;
  integer-valued images are unchanged.

  Args:
    image: float64 grey image with values in 0..255.

  Returns:
    An int64 array of the same shape.
  """
  return np.floor(image + 0.5).astype(np.int64)


class Workspace:
  """The images of one evaluation, their down-sampled versions and grey levels, each made once.

  Images are addressed by index (in `compute_metrics`: 0 the fused image, then the sources,
  then the reference) and by scale (0 full size; scale s is `downsample2` applied s times).

  Args:
    images: float64 grey images of one shape.
  """

  def __init__(self, images: Sequence[np.ndarray]):
    self._images = list(images)
    self._cache: dict[tuple, np.ndarray] = {}

  def _get(self, key, compute):
    if key not in self._cache:
      self._cache[key] = compute()
    return self._cache[key]

  def centred(self, scale: int, i: int) -> np.ndarray:
    """Image `i` at `scale`, shifted by -127.5."""
    if scale == 0:
      return self._get(("centred", 0, i), lambda: self._images[i] - _OFFSET)
    return self._get(("centred", scale, i), lambda: downsample2(self.centred(scale - 1, i)))

  def image(self, scale: int, i: int) -> np.ndarray:
    """Image `i` at `scale`, grey levels 0..255 (the checked input itself at scale 0)."""
    if scale == 0:
      return self._images[i]
    return self.centred(scale, i) + _OFFSET

  def shape(self, scale: int) -> tuple[int, int]:
    """(H, W) of the images at `scale`."""
    height, width = self._images[0].shape
    return halved_size(height, scale), halved_size(width, scale)

  def levels(self, i: int) -> np.ndarray:
    """Integer grey levels of image `i` at full size (see `to_levels`)."""
    return self._get(("levels", i), lambda: to_levels(self._images[i]))


class LocalStatistics:
  """Local 11x11 moments of a workspace's images over one strip of output rows at one scale.

  Output row r of the 'valid' maps is the window over input rows r .. r + 10. Means and
  covariances use the Gaussian window (sigma 1.5) or the box window, and are computed on first
  use and kept for the strip, so every map evaluated on the strip shares them.

  Args:
    workspace: the images.
    scale: the scale.
    start: first output row of the strip.
    stop: one past its last output row.
  """

  def __init__(self, workspace: Workspace, scale: int, start: int, stop: int):
    self._workspace = workspace
    self._scale = scale
    self._rows = slice(start, stop + WINDOW - 1)
    self._cache: dict[tuple, np.ndarray] = {}

  def _get(self, key, compute):
    if key not in self._cache:
      self._cache[key] = compute()
    return self._cache[key]

  def _block(self, i: int) -> np.ndarray:
    return self._workspace.centred(self._scale, i)[self._rows]

  def _product(self, i: int, j: int) -> np.ndarray:
    # Product of two centred blocks, shared by the Gaussian and the box moments.
    return self._get(("product", *sorted((i, j))), lambda: self._block(i) * self._block(j))

  def memo(self, key: tuple, compute: Callable[[], np.ndarray]):
    """Computes a value for this strip once: maps that share intermediate terms use it.

    Args:
      key: names the value.
      compute: produces it.

    Returns:
      The value.
    """
    return self._get(("memo", *key), compute)

  def _moment(self, kind: str, i: int, j: int | None) -> np.ndarray:
    # Local mean of image i (j None) or of the product of images i and j, both centred.
    key = (kind, i) if j is None else (kind, *sorted((i, j)))

    def compute():
      block = self._block(i) if j is None else self._product(i, j)
      if kind == "gauss":
        return separable_valid(block, _GAUSSIAN)
      return box_sum_valid(block, WINDOW) * (1.0 / WINDOW**2)

    return self._get(key, compute)

  def _varies(self, kind: str, i: int) -> np.ndarray:
    # Where image i's patch is not flat (its floored variance is positive).
    return self._get((kind + " varies", i), lambda: self._cov(kind, i, i) > 0)

  def _cov(self, kind: str, i: int, j: int) -> np.ndarray:
    def compute():
      cov = self._moment(kind, i, None) * self._moment(kind, j, None)
      np.subtract(self._moment(kind, i, j), cov, out=cov)
      if i == j:
        cov *= cov >= VARIANCE_FLOOR
      else:
        cov *= self._varies(kind, i) & self._varies(kind, j)
      return cov

    return self._get((kind + " cov", *sorted((i, j))), compute)

  def gauss_mean(self, i: int) -> np.ndarray:
    """Gaussian-weighted local mean of image `i` (grey levels)."""
    return self._get(("gauss mean", i), lambda: self._moment("gauss", i, None) + _OFFSET)

  def gauss_cov(self, i: int, j: int) -> np.ndarray:
    """Gaussian-weighted local covariance of images `i` and `j` (variance when i == j).

    Variances below `VARIANCE_FLOOR` are 0, and so is every covariance with such a patch.
    """
    return self._cov("gauss", i, j)

  def box_cov(self, i: int, j: int) -> np.ndarray:
    """Local 11x11 box covariance (population, divided by 121), floored like `gauss_cov`."""
    return self._cov("box", i, j)


LocalMap = Callable[[LocalStatistics], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Deferred:
  """A metric waiting for the means of some local-statistics maps.

  Attributes:
    maps: map key -> function giving the map on one strip; the key's second item is the scale,
      and equal keys denote equal maps, so metrics scored together compute each map once.
    finish: turns {key: mean of the map over the 'valid' region} into the metric's result.
  """

  maps: dict[tuple, LocalMap]
  finish: Callable[[dict[tuple, float]], MetricResult]


def map_means(workspace: Workspace, maps: dict[tuple, LocalMap]) -> dict[tuple, float]:
  """Means of local-statistics maps over their 'valid' regions, one pass per scale.

  Args:
    workspace: the images.
    maps: map key (second item: the scale) -> function of a `LocalStatistics` giving the map
      on that strip.

  Returns:
    {key: mean of the map}.
  """
  means = {}
  for scale in sorted({key[1] for key in maps}):
    scale_maps = {key: fn for key, fn in maps.items() if key[1] == scale}
    height, width = workspace.shape(scale)
    rows = height - WINDOW + 1
    sums = dict.fromkeys(scale_maps, 0.0)
    step = strip_rows(width)
    for start in range(0, rows, step):
      statistics = LocalStatistics(workspace, scale, start, min(start + step, rows))
      for key, fn in scale_maps.items():
        sums[key] += float(np.sum(fn(statistics)))
    count = rows * (width - WINDOW + 1)
    means.update({key: total / count for key, total in sums.items()})
  return means


def resolve(workspace: Workspace, result: MetricResult | Deferred) -> MetricResult:
  """The result of one metric, computing its maps when it is deferred.

  Args:
    workspace: the images.
    result: a `MetricResult`, or a `Deferred` one.

  Returns:
    The `MetricResult`.
  """
  if isinstance(result, MetricResult):
    return result
  return result.finish(map_means(workspace, result.maps))
