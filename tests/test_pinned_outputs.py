"""The fused outputs of the shipped weights on shipped sample pairs, pinned bit for bit.

Refactors of the fusion path (tiling, colour split, model loading) must not change what a user gets.
Each case pins the SHA-256 of the float32 result and, to tell a real change from a rounding one when
the checksum differs (another CPU or XLA build), a small patch of it within 1e-6. The values were
computed with the code before ``fusionjax/inference.py`` was split (issue 13); the checksum was the
same in separate processes on the machine that computed it.
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
    "tno": ("ivf", (100, 200), (247, 359, 1),
            "1400c3d144a3e66828354541f76589d0a531718c1df3034bbfc05c8ace4f09dd",
            [[0.43449583649635315, 0.42857271432876587, 0.43425309658050537, 0.42946144938468933],
             [0.43800652027130127, 0.42927056550979614, 0.41971176862716675, 0.4055018126964569],
             [0.4283398985862732, 0.4296237528324127, 0.4128881096839905, 0.3925442695617676],
             [0.43493905663490295, 0.4377545416355133, 0.42024749517440796, 0.39868485927581787]]),
    # MEIF stage serving MIF, grey MRI + colour SPECT: the SPECT chroma on the fused luma.
    "harvard_mri_spect": ("mif", (120, 120), (256, 256, 3),
                          "ff137e5ae25bd4bc993f80f3c5bbac145f7a2d53f202af367456a02340afe5b8",
                          [[0.3893994092941284, 0.5111488103866577], [0.3575432002544403, 0.46101251244544983]]),
}


@pytest.mark.parametrize("sample", sorted(CASES))
def test_shipped_weights_fuse_the_sample_pair_as_before(sample):
  task, (row, col), shape, digest, patch = CASES[sample]
  pair = sample_pairs.sample_pair(sample)
  images = [imageio.load_image(path) for path in pair.sources]
  fused = inference.fuse_images(stages.load_model(None, task=task), images)
  assert fused.shape == shape and fused.dtype == np.float32
  patch = np.asarray(patch)
  np.testing.assert_allclose(fused[row:row + patch.shape[0], col:col + patch.shape[1], 0], patch, rtol=0, atol=1e-6)
  assert hashlib.sha256(np.ascontiguousarray(fused).tobytes()).hexdigest() == digest
