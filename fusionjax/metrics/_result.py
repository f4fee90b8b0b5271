"""A metric's result (a value, or the reason it has none) and the two metric conventions."""

from __future__ import annotations

import dataclasses
import math

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


def check_convention(convention: str) -> str:
  """Checks a metric convention (docs/DESIGN.md §6).

  Args:
    convention: the requested convention.

  Returns:
    ``convention``, when it is one of `CONVENTIONS`.

  Raises:
    ValueError: another value; the message names the two conventions.
  """
  if convention not in CONVENTIONS:
    raise ValueError(
      f"Unknown metric convention {convention!r}; use 'clean' (textbook definitions, the "
      "default) or 'paper' (the conventions behind the paper's tables)."
    )
  return convention
