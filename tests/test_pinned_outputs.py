"""The fused outputs of the shipped weights on shipped sample pairs, pinned to float32 rounding.

Refactors of the fusion path (tiling, colour split, model loading) must not change what a user gets.
Each case pins the means of the output's 64 x 64 blocks (every pixel counts) and a 4 x 4 patch of
single pixels, both to 2e-6: XLA's float32 results differ between CPUs in the last bits (an
AVX-512 and an AVX2 machine give different checksums of the same output), so a bit-for-bit pin
would fail on some machines; a real change of the fusion moves values by 1e-4 and more.

After an intended change (new shipped weights), print the new values with
``python tests/test_pinned_outputs.py`` and paste them into ``CASES``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fusionjax import imageio  # noqa: E402
from fusionjax import inference  # noqa: E402
from fusionjax import stages  # noqa: E402
from fusionjax.data import sample_pairs  # noqa: E402

BLOCK = 64
TOLERANCE = 2e-6

# sample: (task, patch origin (row, col), output shape, block means (channel 0), patch (channel 0))
CASES = {
  'tno': (
    'ivf',
    (100, 200),
    (247, 359, 1),
    [
      [0.436760437, 0.453218965, 0.446856769, 0.433592147, 0.421289594, 0.413858388],
      [0.409876158, 0.457929267, 0.511571677, 0.416720599, 0.398846388, 0.401094678],
      [0.467026139, 0.454787009, 0.493131344, 0.439201242, 0.41628626, 0.404124824],
      [0.543964028, 0.50378898, 0.477080776, 0.467872256, 0.45669995, 0.442425506],
    ],
    [
      [0.415652961, 0.40377757, 0.413545161, 0.417464137],
      [0.421800971, 0.409966618, 0.398237705, 0.38882184],
      [0.409928143, 0.413308501, 0.392915696, 0.375261396],
      [0.413232982, 0.420537859, 0.402398765, 0.382071316],
    ],
  ),
  'harvard_mri_spect': (
    'mif',
    (120, 120),
    (256, 256, 3),
    [
      [0.018233926, 0.049204221, 0.040230302, 0.01835908],
      [0.04068679, 0.627734168, 0.505437607, 0.019815818],
      [0.102486412, 0.708591392, 0.650869837, 0.020732389],
      [0.018647976, 0.207244955, 0.147055348, 0.018307823],
    ],
    [
      [0.564316213, 0.754323006, 0.935110092, 0.934934497],
      [0.497258574, 0.665100694, 0.937513769, 0.948192775],
      [0.458045036, 0.564677775, 0.924917042, 0.966208577],
      [0.448759794, 0.465511888, 0.879579186, 0.974254608],
    ],
  ),
}


def fuse(sample: str, task: str) -> np.ndarray:
  pair = sample_pairs.sample_pair(sample)
  images = [imageio.load_image(path) for path in pair.sources]
  return inference.fuse_images(stages.load_model(None, task=task), images)


def block_means(image: np.ndarray) -> np.ndarray:
  """Means of the BLOCK x BLOCK blocks of channel 0 (edge blocks partial)."""
  channel = np.asarray(image[..., 0], np.float64)
  rows = range(0, channel.shape[0], BLOCK)
  cols = range(0, channel.shape[1], BLOCK)
  return np.array([[channel[r : r + BLOCK, c : c + BLOCK].mean() for c in cols] for r in rows])


@pytest.mark.parametrize("sample", sorted(CASES))
def test_shipped_weights_fuse_the_sample_pair_as_before(sample):
  task, (row, col), shape, means, patch = CASES[sample]
  fused = fuse(sample, task)
  assert fused.shape == tuple(shape) and fused.dtype == np.float32
  np.testing.assert_allclose(block_means(fused), means, rtol=0, atol=TOLERANCE)
  patch = np.asarray(patch)
  np.testing.assert_allclose(
    fused[row : row + patch.shape[0], col : col + patch.shape[1], 0], patch, rtol=0, atol=TOLERANCE
  )


#: The samples, their tasks and patch origins (the values are computed by ``main``).
SAMPLES = {"tno": ("ivf", (100, 200)), "harvard_mri_spect": ("mif", (120, 120))}


def main() -> None:
  """Prints ``CASES`` for the weights shipped now."""
  print("CASES = {")
  for sample, (task, (row, col)) in SAMPLES.items():
    fused = fuse(sample, task)
    means = np.round(block_means(fused), 9).tolist()
    patch = fused[row : row + 4, col : col + 4, 0].astype(float).round(9).tolist()
    print(f"  {sample!r}: ({task!r}, ({row}, {col}), {tuple(fused.shape)}, ")
    print(f"    {json.dumps(means)},")
    print(f"    {json.dumps(patch)}),")
  print("}")


if __name__ == "__main__":
  main()
