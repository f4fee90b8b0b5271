"""Input checks of the metrics, and one fused image with its sources gathered for scoring."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np

from fusionjax.metrics._local_statistics import Workspace

# Peak value of the 8-bit grey scale every metric assumes.
PEAK = 255.0


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
