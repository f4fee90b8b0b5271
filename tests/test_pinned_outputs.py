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
      [0.455444412, 0.470761097, 0.465137946, 0.452371398, 0.440552965, 0.433156449],
      [0.428919399, 0.479300586, 0.532999842, 0.435685149, 0.418038829, 0.420648714],
      [0.487820056, 0.475710623, 0.51395643, 0.4604447, 0.436350471, 0.42474483],
      [0.571200728, 0.528624301, 0.49907575, 0.489832354, 0.478168272, 0.464045671],
    ],
    [
      [0.43373695, 0.427764326, 0.433449239, 0.428681552],
      [0.437180549, 0.428458065, 0.418909729, 0.404715478],
      [0.427480727, 0.42878136, 0.412067741, 0.391745865],
      [0.434075326, 0.436910033, 0.419421434, 0.397891581],
    ],
  ),
  'harvard_mri_spect': (
    'mif',
    (120, 120),
    (256, 256, 3),
    [
      [0.070710209, 0.093246482, 0.085315999, 0.070752704],
      [0.08657893, 0.657454225, 0.546492601, 0.07186133],
      [0.147392936, 0.753369298, 0.702446568, 0.071274389],
      [0.070716357, 0.245884988, 0.189243107, 0.07080448],
    ],
    [
      [0.390730858, 0.511630177, 0.704518557, 0.672347486],
      [0.358844817, 0.461612105, 0.711646795, 0.702341557],
      [0.348085374, 0.423451364, 0.69819653, 0.731719792],
      [0.34116295, 0.369935453, 0.66358608, 0.746224225],
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
