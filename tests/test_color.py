"""BT.601 colour conversion and the chroma fusion rule."""

import numpy as np
import pytest

from fusionjax import color


def test_round_trip_and_known_values():
  rng = np.random.default_rng()
  rgb = rng.random((7, 5, 3))
  np.testing.assert_allclose(color.ycrcb_to_rgb(color.rgb_to_ycrcb(rgb)), rgb, atol=1e-12)
  # Primaries against the JFIF equations (Y, Cr, Cb).
  red = color.rgb_to_ycrcb(np.array([1.0, 0.0, 0.0]))
  np.testing.assert_allclose(red, [0.299, 1.0, 0.5 - 0.168736], atol=1e-5)
  grey = color.rgb_to_ycrcb(np.full((2, 2, 3), 0.3))
  np.testing.assert_allclose(grey[..., 1:], 0.5, atol=1e-12)


def test_matches_jax_namespace():
  import jax.numpy as jnp

  rgb = np.random.default_rng().random((4, 3, 3)).astype(np.float32)
  np.testing.assert_allclose(
    np.asarray(color.rgb_to_ycrcb(jnp.asarray(rgb))), color.rgb_to_ycrcb(rgb), atol=1e-6
  )


def test_fuse_chroma_rule():
  tau = 0.5
  c1 = np.array([0.5, 0.7, 0.2, 0.5])
  c2 = np.array([0.5, 0.5, 0.6, 0.9])
  fused = color.fuse_chroma(c1, c2)
  # Both neutral -> tau; one neutral -> the other; otherwise the |C - tau| weighted average.
  expected = [tau, 0.7, (0.2 * 0.3 + 0.6 * 0.1) / 0.4, 0.9]
  np.testing.assert_allclose(fused, expected, atol=1e-12)
  np.testing.assert_allclose(color.fuse_chroma(c2, c1), fused)
  np.testing.assert_allclose(color.fuse_chroma_many([c1, c2]), fused)


def test_bad_shapes():
  with pytest.raises(ValueError, match="3 channels"):
    color.rgb_to_ycrcb(np.zeros((4, 4, 2)))
  with pytest.raises(ValueError, match="equal shapes"):
    color.fuse_chroma(np.zeros((2, 2)), np.zeros((2, 3)))


def test_split_luma_chroma_gives_grey_images_no_chroma():
  rng = np.random.default_rng()
  rgb = rng.random((6, 9, 3)).astype(np.float32)
  y, crcb = color.split_luma_chroma(rgb)
  assert y.shape == (6, 9, 1) and crcb.shape == (6, 9, 2) and y.dtype == crcb.dtype == np.float32
  expected = color.rgb_to_ycrcb(rgb.astype(np.float64))
  np.testing.assert_allclose(np.concatenate([y, crcb], -1), expected, atol=1e-7)
  # A grey image (2-D or one channel) is its own luma and carries no chroma (docs/DESIGN.md §3).
  grey = rgb[..., 0]
  for image in (grey, grey[..., None]):
    y, crcb = color.split_luma_chroma(image)
    assert crcb is None and y.shape == (6, 9, 1)
    np.testing.assert_array_equal(y[..., 0], grey)
  with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
    color.split_luma_chroma(rng.random((6, 9, 2)))


def test_whole_image_conversions_by_blocks_equal_one_piece():
  """split_luma_chroma, fuse_chroma_images and merge_luma_chroma work by blocks of rows (bounded
  float64 temporaries); the result is bit for bit that of the one-piece float64 conversion."""
  rng = np.random.default_rng()
  height = 2 * color.ROWS_PER_BLOCK + 37  # Three blocks, the last one short.
  a, b = (rng.random((height, 11, 3)).astype(np.float32) for _ in range(2))
  y, crcb = color.split_luma_chroma(a)
  one_piece = color.rgb_to_ycrcb(a.astype(np.float64)).astype(np.float32)
  np.testing.assert_array_equal(np.concatenate([y, crcb], -1), one_piece)
  _, crcb_b = color.split_luma_chroma(b)
  fused = color.fuse_chroma_images([crcb, crcb_b])
  expected = color.fuse_chroma_many([crcb.astype(np.float64), crcb_b.astype(np.float64)])
  np.testing.assert_array_equal(fused, expected.astype(np.float32))
  rgb = color.merge_luma_chroma(y, fused)
  ycrcb = np.concatenate([y, fused], -1).astype(np.float64)
  np.testing.assert_array_equal(rgb, color.ycrcb_to_rgb(ycrcb).astype(np.float32))
  assert rgb.dtype == np.float32 and rgb.shape == (height, 11, 3)
