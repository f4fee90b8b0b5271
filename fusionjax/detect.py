"""``--task auto``: which fusion a pair of sources calls for, from three properties of the images.

The rule, in order (Y is the BT.601 luma in [0, 1]):

1. Both sources in colour: multi-exposure (``meif``) when their mean Y differ by at least
   :data:`EXPOSURE_GAP`, else multi-focus (``mfif``): refocusing keeps the exposure, bracketing
   changes it.
2. A grey source, and at least :data:`BLACK_FRACTION` of the pixels of every source near black
   (Y < :data:`BLACK_LEVEL`): medical (``mif``), whose scans lie on a black background.
3. Otherwise infrared-visible (``ivf``): a grey (thermal) source beside a visible one.

On the benchmark copies (TNO, RoadScene, Lytro and its triples, MFI-WHU, MEFB, SICE, Harvard MRI-CT
and MRI-SPECT: 547 pairs) and the shipped samples, this picks the right task for every pair; the
margins are wide there (multi-focus mean-Y gaps at most 0.011, multi-exposure at least 0.186;
medical black fractions at least 0.54, infrared-visible at most 0.25), and
``tests/test_workflows.py`` checks every pair. It cannot tell what the images do not show: grey
multi-focus or multi-exposure pairs are taken for infrared-visible (or medical), and false-colour
thermal images for a colour pair. Pass ``--task`` for those.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from fusionjax import color
from fusionjax import inference

#: Mean-Y difference of two colour sources from which they are taken for an exposure bracket.
EXPOSURE_GAP = 0.1
#: Y below which a pixel counts as black background.
BLACK_LEVEL = 0.05
#: Fraction of black pixels every source must have to be taken for a medical scan.
BLACK_FRACTION = 0.4


@dataclasses.dataclass(frozen=True)
class Detection:
  """What :func:`detect_task` picked and why.

  Attributes:
    task: 'mfif', 'meif', 'ivf' or 'mif'.
    reason: one clause for people, with the measured values.
  """

  task: str
  reason: str


def detect_task(images: Sequence[np.ndarray]) -> Detection:
  """Picks the fusion task of two or more registered sources (module docstring).

  Args:
    images: float32 (H, W, 1 | 3) in [0, 1], in any order.

  Returns:
    A :class:`Detection`.
  """
  inference.check_sources(images)
  split = [color.split_luma_chroma(image) for image in images]
  lumas = [y[..., 0] for y, _ in split]
  colour = [c is not None for _, c in split]
  if all(colour):
    means = [float(y.mean()) for y in lumas]
    gap = max(means) - min(means)
    if gap >= EXPOSURE_GAP:
      return Detection(
        "meif",
        f"colour sources whose mean brightness differs by {gap:.3f} (>= {EXPOSURE_GAP}: "
        "an exposure bracket)",
      )
    return Detection(
      "mfif",
      f"colour sources of the same brightness (mean differs by {gap:.3f} < {EXPOSURE_GAP}: "
      "a focus stack)",
    )
  black = [float((y < BLACK_LEVEL).mean()) for y in lumas]
  shown = ", ".join(f"{100 * b:.0f}%" for b in black)
  if min(black) >= BLACK_FRACTION:
    return Detection(
      "mif",
      f"a grey source and black background in every source ({shown} of the pixels, >= "
      f"{100 * BLACK_FRACTION:.0f}%: medical scans)",
    )
  return Detection(
    "ivf",
    f"a grey source without a black background ({shown} black pixels, < "
    f"{100 * BLACK_FRACTION:.0f}% in some source: infrared beside visible)",
  )
