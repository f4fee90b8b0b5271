"""Tiling (:mod:`fusionjax.tiling`): aligned grids, blending weights that sum to one, and tiled
application equal to the untiled one for a local function. Tiled networks: tests/test_inference.py."""

from __future__ import annotations

import numpy as np
import pytest

from fusionjax import tiling


def _fresh_seed() -> int:
  seed = int(np.random.default_rng().integers(2**31))
  print(f"seed={seed}")
  return seed


@pytest.mark.parametrize(
  "length,tile,overlap,align",
  [
    (1, 64, 0, 32),
    (100, 64, 32, 32),
    (333, 96, 32, 32),
    (1024, 256, 64, 16),
    (257, 256, 64, 32),
    (97, 96, 0, 8),
  ],
)
def test_tile_grid_covers_the_axis_on_an_aligned_grid(length, tile, overlap, align):
  grid = tiling.tile_grid(length, tile, overlap, align)
  assert grid.padded >= length and grid.padded % align == 0 and grid.tile % align == 0
  assert all(s % align == 0 for s in grid.starts)
  assert grid.starts[0] == 0 and grid.starts[-1] + grid.tile == grid.padded
  if len(grid.starts) > 1:
    assert all(b - a == grid.tile - grid.overlap for a, b in zip(grid.starts, grid.starts[1:]))
    # No superfluous tile: one fewer would not reach the end.
    assert grid.starts[-2] + grid.tile < length
  else:
    assert grid.padded < length + align


@pytest.mark.parametrize("overlap", [32, 64, 96])
def test_blend_weights_are_a_partition_of_unity(overlap):
  grid = tiling.tile_grid(1000, 256, overlap, 32)
  total = np.zeros(grid.padded)
  for k, start in enumerate(grid.starts):
    weights = tiling.blend_weights(grid, k)
    assert weights.min() >= 0 and weights.max() <= 1
    total[start : start + grid.tile] += weights
  np.testing.assert_allclose(total, 1.0, atol=1e-12)
  # The outer quarter of every overlap is discarded (weight 0) on the inner side of a tile.
  inner = tiling.blend_weights(grid, 1)
  assert np.all(inner[: overlap // 4] == 0) and np.all(inner[-(overlap // 4) :] == 0)


def _box_filter(radius):
  """A local function with receptive field (2 radius + 1)^2 that pads itself by reflection."""

  def fn(image):
    padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    out = np.zeros_like(image, dtype=np.float64)
    for dy in range(2 * radius + 1):
      for dx in range(2 * radius + 1):
        out += padded[dy : dy + image.shape[0], dx : dx + image.shape[1]]
    return (out / (2 * radius + 1) ** 2) ** 2  # squared: not linear, so blending cannot hide errors

  return fn


def test_tiled_apply_equals_untiled_for_a_local_function():
  rng = np.random.default_rng(_fresh_seed())
  image = rng.random((173, 251, 2)).astype(np.float32)
  fn = _box_filter(radius=7)  # reach 7 <= overlap / 4 = 8
  whole = tiling.tiled_apply(fn, [image], tile_size=4096, overlap=0, align=32)
  tiled = tiling.tiled_apply(fn, [image], tile_size=96, overlap=32, align=32)
  assert tiled.shape == whole.shape == image.shape
  # Equal away from the bottom/right border, where the two pad the image to different sizes and
  # the filter's own reflection starts at different places.
  np.testing.assert_allclose(tiled[:-7, :-7], whole[:-7, :-7], atol=1e-6)
  # Control: hard tile borders (no overlap) do change the result, so the check above can fail.
  hard = tiling.tiled_apply(fn, [image], tile_size=96, overlap=0, align=32)
  assert np.abs(hard - whole).max() > 1e-3


def test_tiling_rejects_bad_sizes():
  with pytest.raises(ValueError, match="half the tile size"):
    tiling.tiled_apply(lambda x: x, [np.zeros((8, 8, 1))], tile_size=64, overlap=32)
  with pytest.raises(ValueError, match="share H x W"):
    tiling.tiled_apply(lambda x, y: x, [np.zeros((8, 8, 1)), np.zeros((8, 9, 1))])


def test_tiled_apply_batches_and_reports_progress():
  rng = np.random.default_rng(_fresh_seed())
  image = rng.random((173, 251, 2)).astype(np.float32)
  fn = _box_filter(radius=7)
  single = tiling.tiled_apply(fn, [image], tile_size=96, overlap=32, align=32)
  calls, seen = [], []

  def batched(stack):
    calls.append(stack.shape[0])
    return np.stack([fn(tile) for tile in stack])

  out = tiling.tiled_apply(
    batched,
    [image],
    tile_size=96,
    overlap=32,
    align=32,
    batch=4,
    progress=lambda done, total: seen.append((done, total)),
  )
  np.testing.assert_allclose(out, single, atol=1e-6)
  total = seen[-1][1]
  assert total == sum(calls) > 4 and max(calls) == 4
  assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] == total
  with pytest.raises(ValueError, match="tile batch"):
    tiling.tiled_apply(batched, [image], tile_size=96, overlap=32, batch=0)


def test_large_axes_are_split_into_smaller_tiles():
  # An axis that fits the tile size stays whole; a longer one is cut into split-size tiles.
  whole = tiling.tile_grid(1000, 1024, 128, 32, split_size=512)
  assert whole.starts == (0,) and whole.tile == 1024
  split = tiling.tile_grid(3000, 1024, 128, 32, split_size=512)
  assert split.tile == 512 and split.starts[-1] + split.tile >= 3000
  assert all(b - a == 512 - 128 for a, b in zip(split.starts, split.starts[1:]))
  # Without split_size the tiles keep the tile size, as before.
  assert tiling.tile_grid(3000, 1024, 128, 32).tile == 1024


def test_check_tiling_names_the_flags():
  tiling.check_tiling(96, 47)
  with pytest.raises(ValueError, match="positive"):
    tiling.check_tiling(0, 0)
  with pytest.raises(ValueError, match=">= 0"):
    tiling.check_tiling(96, -1)
  with pytest.raises(ValueError, match=r"--tile_size or a smaller --overlap"):
    tiling.check_tiling(96, 48)


def test_reflect_pad_reflects_bottom_right_and_repeats_a_single_row():
  image = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
  padded = tiling.reflect_pad(image, 5, 6)
  assert padded.shape == (5, 6, 1)
  np.testing.assert_array_equal(padded[:3, :4], image)
  np.testing.assert_array_equal(
    padded[3:, :4, 0], image[[1, 0], :, 0]
  )  # rows 3, 4 reflect rows 1, 0
  np.testing.assert_array_equal(padded[:3, 4:, 0], image[:, [2, 1], 0])  # columns 4, 5 reflect 2, 1
  row = np.ones((1, 3, 1), np.float32)
  np.testing.assert_array_equal(tiling.reflect_pad(row, 4, 3), np.ones((4, 3, 1)))
  assert tiling.round_up(97, 32) == 128 and tiling.round_up(96, 32) == 96
