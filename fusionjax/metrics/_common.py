"""Shared pieces of the fusion metrics: results, input checks, windows, filters, local statistics.

All metrics work on grey/Y images holding 8-bit levels 0..255 (uint8, or float arrays already on
that scale), in float64. Maps of local statistics (Gaussian- and box-weighted means and
covariances over 11x11 windows, 'valid' region) are computed strip by strip: a `LocalStatistics`
holds one strip of rows, computes each moment once, and every map requested for that scale
(SSIM, the MS-SSIM terms, MEF-SSIM) is evaluated on it before the next strip, so metrics scored
together share their filtering and the temporaries stay in cache.

Filtering is separable: numpy arithmetic for the vertical pass and `scipy.ndimage` (compiled
1-D correlation and running sums) for the horizontal one; this was the fastest combination
measured here and agrees with direct 2-D correlation to about 1e-13.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

# Peak value of the 8-bit grey scale every metric assumes.
PEAK = 255.0
# Side of the local window of SSIM, MS-SSIM and MEF-SSIM (Wang 2004; Ma, Zeng & Wang 2015).
WINDOW = 11
# Standard deviation of the SSIM Gaussian window (Wang 2004).
WINDOW_SIGMA = 1.5
# Local variances below this (standard deviation < 3e-4 grey levels) are set to 0 so that flat
# patches are exactly flat: E[x^2] - E[x]^2 leaves rounding noise there (up to ~2e-11 measured on
# flat areas of 1200-px-wide images), and MEF-SSIM, which divides by local norms, would otherwise
# normalise that noise into spurious structure. 8-bit data has no real variance this small: one
# level of difference in an 11x11 patch already gives 0.008.
VARIANCE_FLOOR = 1e-7
# Images are shifted by this before products are formed: halving the magnitudes quarters
# the rounding noise of the second moments; covariances do not depend on the shift.
_OFFSET = 127.5
# The two metric conventions: textbook definitions, and those behind the paper's tables.
CONVENTIONS = ("clean", "paper")


@dataclasses.dataclass(frozen=True)
class MetricResult:
    """The value of one metric on one image, or why it has none.

    Attributes:
      value: the metric value (a Python float, possibly ``math.inf`` for PSNR of identical
        images), or None when the metric is undefined for this input.
      reason: None when defined; otherwise a sentence saying why the metric is undefined.
    """

    value: float | None
    reason: str | None = None

    def __post_init__(self):
        if (self.value is None) == (self.reason is None):
            raise ValueError("MetricResult needs exactly one of value and reason.")
        if self.value is not None:
            object.__setattr__(self, "value", float(self.value))
            if math.isnan(self.value):
                raise ValueError("MetricResult value is NaN; report an undefined metric with a reason.")

    @property
    def defined(self) -> bool:
        """Whether the metric has a value."""
        return self.value is not None

    def __float__(self) -> float:
        if self.value is None:
            raise ValueError(f"metric undefined: {self.reason}")
        return self.value


def defined(value: float) -> MetricResult:
    """Wraps a computed value.

    Args:
      value: the metric value.

    Returns:
      A defined `MetricResult`.
    """
    return MetricResult(float(value))


def undefined(reason: str) -> MetricResult:
    """Wraps the reason a metric has no value.

    Args:
      reason: a sentence naming what makes the metric undefined.

    Returns:
      An undefined `MetricResult`.
    """
    return MetricResult(None, reason)


# ----------------------------------------------------------------------------- input checks


def as_image(image, name: str) -> np.ndarray:
    """Checks one grey image and returns it as float64.

    Args:
      image: a 2-D array (H, W) of grey levels 0..255 (uint8 or float).
      name: how to call the array in error messages.

    Returns:
      The image as a float64 array.

    Raises:
      ValueError: not 2-D, empty, not real-valued, NaN or infinite values, or values outside 0..255.
    """
    array = np.asarray(image)
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(
            f"{name} has dtype {array.dtype}; pass a uint8 or float array of grey levels 0..255."
        )
    if array.ndim != 2:
        raise ValueError(
            f"{name} has shape {array.shape}; metrics take 2-D (H, W) grey images: convert a colour "
            "image to its Y channel (BT.601) and drop any channel axis of size 1."
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}).")
    values = np.asarray(array, dtype=np.float64)
    low, high = values.min(), values.max()
    # min and max propagate NaN and reach any infinity, so checking them checks every value.
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{name} contains NaN or infinite values; metrics need finite grey levels.")
    if low < 0 or high > PEAK:
        raise ValueError(
            f"{name} has values in [{low:g}, {high:g}], outside 0..255; metrics expect 8-bit grey "
            "levels: multiply images in [0, 1] by 255 and clip."
        )
    if np.issubdtype(array.dtype, np.floating) and 0 < high <= 1:
        warnings.warn(
            f"{name} has float values no larger than 1; metrics read them as grey levels 0..255, "
            "so an image in [0, 1] must be multiplied by 255 first.",
            stacklevel=4,
        )
    return values


def as_sources(sources, shape: tuple[int, int]) -> list[np.ndarray]:
    """Checks the source images of one fusion.

    Args:
      sources: a list or tuple of 2 or more 2-D grey images.
      shape: the shape every source must have (the fused image's).

    Returns:
      The sources as float64 arrays.

    Raises:
      ValueError: fewer than two sources, a bare array instead of a sequence, a bad image, or a
        shape that differs from `shape`.
    """
    if isinstance(sources, np.ndarray) or not isinstance(sources, Sequence):
        raise ValueError(
            "sources must be a list or tuple of 2-D grey images (e.g. [under, over]), "
            f"got {type(sources).__name__}."
        )
    if len(sources) < 2:
        raise ValueError(f"fusion metrics need at least 2 source images, got {len(sources)}.")
    images = [as_image(source, f"sources[{k}]") for k, source in enumerate(sources)]
    for k, image in enumerate(images):
        check_shape(image, shape, f"sources[{k}]")
    return images


def check_shape(image: np.ndarray, shape: tuple[int, int], name: str) -> None:
    """Raises a ValueError when `image` does not have the fused image's shape.

    Args:
      image: the array to check.
      shape: the expected (H, W).
      name: how to call the array in the message.
    """
    if image.shape != tuple(shape):
        raise ValueError(
            f"{name} has shape {image.shape} but the fused image has shape {tuple(shape)}; "
            "all images of one evaluation must be registered and of equal size."
        )


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


def entropy_of_counts(counts: np.ndarray) -> float:
    """Shannon entropy in bits of a histogram.

    Args:
      counts: non-negative bin counts of any shape.

    Returns:
      -sum p log2 p over the non-empty bins, with p = counts / counts.sum().
    """
    p = counts[counts > 0].astype(np.float64)
    p /= p.sum()
    return 0.0 - float(np.sum(p * np.log2(p)))  # 0.0 - x: a single level gives 0.0, not -0.0


# ------------------------------------------------------------------------- windows and filters

# Values per row strip: strips of about 256 KiB keep a strip's temporaries in cache; on the
# MEFB images this was fastest among 2^13..2^19 and about 1.4x faster than whole images.
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


# Taps of the SSIM Gaussian window (11 taps, sigma 1.5).
_GAUSSIAN = gaussian_window(WINDOW, WINDOW_SIGMA)


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
        np.add(vertical[:, k : k + span : step], vertical[:, n - 1 - k : n - 1 - k + span : step], out=paired)
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


# ---------------------------------------------------------------------------- local statistics


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


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One fused image with its sources and optional reference, checked and ready to score.

    Attributes:
      workspace: the images, their down-sampled versions and grey levels.
      fused: index of the fused image in `workspace`.
      sources: indices of the sources.
      reference: index of the reference, or None.
    """

    workspace: Workspace
    fused: int
    sources: tuple[int, ...]
    reference: int | None

    def image(self, i: int) -> np.ndarray:
        """Full-size image `i`, grey levels 0..255."""
        return self.workspace.image(0, i)


def prepare(fused, sources=None, reference=None) -> Evaluation:
    """Checks the images of one evaluation and gathers them in a `Workspace`.

    Args:
      fused: the fused grey image (H, W).
      sources: None, or a list/tuple of 2 or more source images of the same shape.
      reference: None, or a reference image of the same shape.

    Returns:
      An `Evaluation` with the fused image at index 0, then the sources, then the reference.

    Raises:
      ValueError: see `as_image` and `as_sources`.
    """
    fused_image = as_image(fused, "fused")
    images = [fused_image]
    source_indices: tuple[int, ...] = ()
    if sources is not None:
        source_images = as_sources(sources, fused_image.shape)
        source_indices = tuple(range(1, 1 + len(source_images)))
        images += source_images
    reference_index = None
    if reference is not None:
        reference_image = as_image(reference, "reference")
        check_shape(reference_image, fused_image.shape, "reference")
        reference_index = len(images)
        images.append(reference_image)
    return Evaluation(Workspace(images), 0, source_indices, reference_index)


def prepare_pair(x, y, names: tuple[str, str] = ("x", "y")) -> Workspace:
    """Checks two images of one shape and gathers them in a `Workspace` (indices 0 and 1).

    Args:
      x: 2-D grey image, levels 0..255.
      y: 2-D grey image of the same shape.
      names: how to call the two arrays in error messages.

    Returns:
      The `Workspace`.
    """
    first = as_image(x, names[0])
    second = as_image(y, names[1])
    if second.shape != first.shape:
        raise ValueError(
            f"{names[0]} has shape {first.shape} and {names[1]} has shape {second.shape}; "
            "compared images must be registered and of equal size."
        )
    return Workspace([first, second])


def check_convention(convention: str) -> None:
    """Raises a ValueError unless `convention` is one of `CONVENTIONS`.

    Args:
      convention: the requested convention.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}.")


def two_sources(evaluation: Evaluation, metric: str) -> str | None:
    """The reason `metric` is undefined when the evaluation does not have exactly two sources.

    Args:
      evaluation: the evaluation.
      metric: the metric's name, for the message.

    Returns:
      None with exactly two sources, otherwise a sentence saying why the metric is undefined.
    """
    count = len(evaluation.sources)
    if count == 2:
        return None
    return f"{metric} is defined for exactly two source images, got {count}."
