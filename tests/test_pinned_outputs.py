"""The fused outputs of the shipped weights on shipped sample pairs, pinned bit for bit.

Refactors of the fusion path (tiling, colour split, model loading) must not change what a user gets.
Each case pins the SHA-256 of the float32 result and, to tell a real change from a rounding one when
the checksum differs (another CPU or XLA build), a small patch of it within 1e-6. The values were
computed when ``fusionjax.inference.BORDER`` was introduced (it moved interior pixels by up to 0.0013
through the unfolding unit's per-image scaling); the split of ``fusionjax/inference.py`` before it
left them bit-identical. The checksum was the same in separate processes on the machine that
computed it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fusionjax import imageio
from fusionjax import inference
from fusionjax import stages
from fusionjax.data import sample_pairs

# sample, task, patch origin (row, col), SHA-256 of the float32 output, the patch (channel 0)
CASES = {
  # IVF stage, grey visible + grey infrared (TNO 37, stored as 3-channel PNG): a grey result.
  "tno": (
    "ivf",
    (100, 200),
    (247, 359, 1),
    "e80a2a187cc75e21e14cb400dcc756e6af666e8538ba649cdf7dc8e86c31c37c",
    [
      [0.43373703956604004, 0.42776426672935486, 0.43344926834106445, 0.42868152260780334],
      [0.43718063831329346, 0.42845818400382996, 0.41890981793403625, 0.40471547842025757],
      [0.4274808168411255, 0.4287814497947693, 0.41206783056259155, 0.3917458653450012],
      [0.43407535552978516, 0.4369100034236908, 0.4194214642047882, 0.3978915810585022],
    ],
  ),
  # MEIF stage serving MIF, grey MRI + colour SPECT: the SPECT chroma on the fused luma.
  "harvard_mri_spect": (
    "mif",
    (120, 120),
    (256, 256, 3),
    "71f966f3cfa4d3ab2dfabecb2992c35a7d46c6f932ac650506212432b1df21c8",
    [[0.3907308280467987, 0.5116301774978638], [0.35884469747543335, 0.4616119861602783]],
  ),
}


@pytest.mark.parametrize("sample", sorted(CASES))
def test_shipped_weights_fuse_the_sample_pair_as_before(sample):
  task, (row, col), shape, digest, patch = CASES[sample]
  pair = sample_pairs.sample_pair(sample)
  images = [imageio.load_image(path) for path in pair.sources]
  fused = inference.fuse_images(stages.load_model(None, task=task), images)
  assert fused.shape == shape and fused.dtype == np.float32
  patch = np.asarray(patch)
  np.testing.assert_allclose(
    fused[row : row + patch.shape[0], col : col + patch.shape[1], 0], patch, rtol=0, atol=1e-6
  )
  assert hashlib.sha256(np.ascontiguousarray(fused).tobytes()).hexdigest() == digest
