"""More than two exposures with the shipped multi-exposure stage: the default rule fuses a sequence
at least as well as its extreme pair and far better than a chain (``benchmarks/exposure_stacks.py``
measures the same on more photographs and at a larger size)."""

from __future__ import annotations

import numpy as np
import pytest

from shared_data import SHARED_DATA

pytestmark = pytest.mark.skipif(
  not (SHARED_DATA / "clean_natural").is_dir(), reason="needs ../shared/data"
)


@pytest.mark.slow
def test_exposure_sequences_beat_the_extreme_pair_and_the_chain():
  from benchmarks.exposure_stacks import centre_crop, held_back_photos, scores
  from fusionjax import imageio, inference, stages
  from fusionjax.data import synthetic

  model = stages.load_model(None, task="meif")
  assert inference.default_sequence_rule(model.task) == "adjacent"
  ssim = {"adjacent": [], "chain": [], "extreme pair": []}
  for index, path in enumerate(held_back_photos(SHARED_DATA)[:6]):
    shots, reference = synthetic.exposure_stack(
      centre_crop(imageio.load_image(path), 128), np.random.default_rng([0, index, 4]), 4
    )
    default = inference.fuse_images(model, shots)
    np.testing.assert_array_equal(default, inference.fuse_images(model, shots, sequence="adjacent"))
    ssim["adjacent"].append(scores(default, shots, reference)["SSIM"])
    chain = inference.fuse_images(model, shots, sequence="chain")
    ssim["chain"].append(scores(chain, shots, reference)["SSIM"])
    pair = inference.fuse_images(model, [shots[0], shots[-1]])
    ssim["extreme pair"].append(scores(pair, shots, reference)["SSIM"])
  means = {rule: float(np.mean(values)) for rule, values in ssim.items()}
  assert means["adjacent"] >= means["extreme pair"], means
  assert means["adjacent"] >= means["chain"] + 0.1, means
