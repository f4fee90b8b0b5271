"""fusionjax.metrics against independent float64 implementations written here.

The references follow the published code paths directly (2-D 'valid' correlation by explicit
loops over window offsets, per-patch loops for MEF-SSIM, MATLAB-ordered edge cases for VIF), so
they share no code with the vectorised, strip-wise implementations under test.
"""

import math
import os

import numpy as np
import pytest
from scipy import signal

from fusionjax import metrics


@pytest.fixture
def rng(request):
  # A fresh seed per test, printed so a failure can be replayed with METRICS_SEED=<seed>.
  seed = int(os.environ.get("METRICS_SEED", np.random.SeedSequence().entropy % 2**32))
  print(f"{request.node.name}: METRICS_SEED={seed}")
  return np.random.default_rng(seed)


def _texture(rng, shape, smooth=True):
  """Random image with local structure (smoothed noise plus fine noise), levels 0..255."""
  noise = rng.normal(size=shape)
  if smooth:
    noise = signal.convolve2d(noise, np.ones((5, 5)) / 5, mode="same", boundary="symm")
  image = 128 + 60 * noise / noise.std() + rng.normal(scale=8, size=shape)
  return np.clip(np.round(image), 0, 255)


# ------------------------------------------------------------------------- reference pieces


def _gaussian_2d(size, sigma):
  x = np.arange(size) - (size - 1) / 2
  kernel = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
  return kernel / kernel.sum()


def _correlate_valid(image, kernel):
  """Direct 2-D correlation over the 'valid' region, one shifted copy per kernel entry."""
  kh, kw = kernel.shape
  height, width = image.shape[0] - kh + 1, image.shape[1] - kw + 1
  out = np.zeros((height, width))
  for u in range(kh):
    for v in range(kw):
      out += kernel[u, v] * image[u : u + height, v : v + width]
  return out


_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
_WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])


def _ssim_and_cs(x, y):
  """Mean SSIM and mean contrast-structure, as tf.image's _ssim_helper (compensation 1)."""
  kernel = _gaussian_2d(11, 1.5)
  mean_x = _correlate_valid(x, kernel)
  mean_y = _correlate_valid(y, kernel)
  num0 = 2 * mean_x * mean_y
  den0 = mean_x**2 + mean_y**2
  luminance = (num0 + _C1) / (den0 + _C1)
  num1 = 2 * _correlate_valid(x * y, kernel)
  den1 = _correlate_valid(x * x + y * y, kernel)
  cs = (num1 - num0 + _C2) / (den1 - den0 + _C2)
  return float(np.mean(luminance * cs)), float(np.mean(cs))


def _tf_downsample(image):
  """tf.image.ssim_multiscale: symmetric padding by the remainder, then 2x2 average pooling."""
  image = np.pad(image, [(0, image.shape[0] % 2), (0, image.shape[1] % 2)], mode="symmetric")
  return 0.25 * (image[0::2, 0::2] + image[1::2, 0::2] + image[0::2, 1::2] + image[1::2, 1::2])


def _ms_ssim_reference(x, y):
  values = []
  for scale in range(5):
    ssim, cs = _ssim_and_cs(x, y)
    values.append(cs if scale < 4 else ssim)
    x, y = _tf_downsample(x), _tf_downsample(y)
  return float(np.prod(np.maximum(values, 0) ** _WEIGHTS))


def _mef_ssim_reference(sequence, fused):
  """Per-patch transcription of Ma, Zeng & Wang's mef_ssim.m (sequence: list of images)."""
  eps = np.finfo(np.float64).eps
  window = _gaussian_2d(11, 1.5).ravel()
  stack = np.stack(sequence, axis=-1)
  height, width, count = stack.shape
  scores = []
  for i in range(height - 10):
    for j in range(width - 10):
      patches = stack[i : i + 11, j : j + 11].reshape(121, count)
      centred = patches - patches.mean(axis=0)
      norms = np.linalg.norm(centred, axis=0)
      contrast = norms + 0.001
      summed = patches.sum(axis=1)
      consistency = (np.linalg.norm(summed - summed.mean()) + eps) / (norms.sum() + eps)
      consistency = 1 - eps if consistency > 1 else (eps if consistency < 0 else consistency)
      exponent = min(math.tan(math.pi / 2 * consistency), 10)
      weights = (contrast / 11) ** exponent + eps
      weights /= weights.sum()
      desired = (centred * (weights / contrast)).sum(axis=1)
      if np.linalg.norm(desired) > 0:
        desired = desired / np.linalg.norm(desired) * contrast.max()
      f = fused[i : i + 11, j : j + 11].ravel()
      mu_r, mu_f = window @ desired, window @ f
      var_r = window @ (desired - mu_r) ** 2
      var_f = window @ (f - mu_f) ** 2
      cov = window @ ((desired - mu_r) * (f - mu_f))
      scores.append((2 * cov + _C2) / (var_r + var_f + _C2))
  return float(np.mean(scores))


def _matlab_downsample(image):
  """imfilter(x, ones(2)/4, 'symmetric', 'same') then x(1:2:end, 1:2:end)."""
  padded = np.pad(image, [(0, 1), (0, 1)], mode="symmetric")
  filtered = 0.25 * (padded[:-1, :-1] + padded[1:, :-1] + padded[:-1, 1:] + padded[1:, 1:])
  return filtered[0::2, 0::2]


def _mef_ms_ssim_reference(sequence, fused):
  weights = np.array([0.0448, 0.2856, 0.3001])
  weights /= weights.sum()
  values = []
  for scale in range(3):
    values.append(_mef_ssim_reference(sequence, fused))
    if scale < 2:
      sequence = [_matlab_downsample(image) for image in sequence]
      fused = _matlab_downsample(fused)
  return float(np.prod(np.maximum(values, 0) ** weights))


def _vifp_reference(ref, dist):
  """Sheikh & Bovik's vifp_mscale.m, statement by statement."""
  sigma_nsq = 2.0
  num = den = 0.0
  for scale in range(1, 5):
    n = 2 ** (4 - scale + 1) + 1
    win = _gaussian_2d(n, n / 5)
    if scale > 1:
      ref = _correlate_valid(ref, win)[::2, ::2]
      dist = _correlate_valid(dist, win)[::2, ::2]
    mu1 = _correlate_valid(ref, win)
    mu2 = _correlate_valid(dist, win)
    sigma1_sq = _correlate_valid(ref * ref, win) - mu1 * mu1
    sigma2_sq = _correlate_valid(dist * dist, win) - mu2 * mu2
    sigma12 = _correlate_valid(ref * dist, win) - mu1 * mu2
    sigma1_sq[sigma1_sq < 0] = 0
    sigma2_sq[sigma2_sq < 0] = 0
    g = sigma12 / (sigma1_sq + 1e-10)
    sv_sq = sigma2_sq - g * sigma12
    m = sigma1_sq < 1e-10
    g[m] = 0
    sv_sq[m] = sigma2_sq[m]
    sigma1_sq[m] = 0
    m = sigma2_sq < 1e-10
    g[m] = 0
    sv_sq[m] = 0
    m = g < 0
    sv_sq[m] = sigma2_sq[m]
    g[m] = 0
    sv_sq[sv_sq <= 1e-10] = 1e-10
    num += np.sum(np.log10(1 + g**2 * sigma1_sq / (sv_sq + sigma_nsq)))
    den += np.sum(np.log10(1 + sigma1_sq / sigma_nsq))
  return num / den


def _qabf_reference(a, b, f):
  """Xydeas-Petrovic with MATLAB's Sobel kernels, conv2 over the 'valid' (interior) region."""
  h1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=float)
  h3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float)

  def edges(image):
    sx = signal.convolve2d(image, h3, mode="valid")
    sy = signal.convolve2d(image, h1, mode="valid")
    angle = np.full(sx.shape, np.pi / 2)
    nonzero = sx != 0
    angle[nonzero] = np.arctan(sy[nonzero] / sx[nonzero])
    return np.sqrt(sx**2 + sy**2), angle

  g_f, a_f = edges(f)

  def preservation(image):
    g, angle = edges(image)
    strength = np.ones_like(g)
    larger = g > g_f
    smaller = g < g_f
    strength[larger] = g_f[larger] / g[larger]
    strength[smaller] = g[smaller] / g_f[smaller]
    orientation = 1 - np.abs(angle - a_f) / (np.pi / 2)
    q = (
      0.9994
      / (1 + np.exp(-15 * (strength - 0.5)))
      * 0.9879
      / (1 + np.exp(-22 * (orientation - 0.8)))
    )
    return q, g

  q_a, g_a = preservation(a)
  q_b, g_b = preservation(b)
  return float(np.sum(q_a * g_a + q_b * g_b) / np.sum(g_a + g_b))


# ------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("shape", [(161, 161), (256, 256), (200, 300)])
def test_ms_ssim_matches_tf_style_reference(rng, shape):
  a = _texture(rng, shape)
  b = _texture(rng, shape)
  fused = np.clip(0.6 * a + 0.4 * b + rng.normal(scale=5, size=shape), 0, 255)
  expected_a = _ms_ssim_reference(fused, a)
  expected_b = _ms_ssim_reference(fused, b)
  assert metrics.ms_ssim(fused, a).value == pytest.approx(expected_a, rel=1e-9)
  assert metrics.fusion_ms_ssim(fused, [a, b]).value == pytest.approx(
    (expected_a + expected_b) / 2, rel=1e-9
  )
  scores = metrics.compute_metrics(fused, [a, b], names=["MS-SSIM"])
  assert scores["MS-SSIM"].value == pytest.approx((expected_a + expected_b) / 2, rel=1e-9)


def test_ms_ssim_undefined_at_160_px(rng):
  a = _texture(rng, (160, 240))
  result = metrics.ms_ssim(a, np.clip(a + 3, 0, 255))
  assert result.value is None
  assert "161" in result.reason
  assert metrics.ms_ssim(_texture(rng, (161, 240)), _texture(rng, (161, 240))).defined


@pytest.mark.parametrize("shape", [(37, 52), (64, 45)])
def test_ssim_matches_direct_reference(rng, shape):
  x = _texture(rng, shape)
  y = np.clip(0.7 * x + rng.normal(scale=20, size=shape) + 20, 0, 255)
  expected, _ = _ssim_and_cs(x, y)
  assert metrics.ssim(x, y).value == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("count", [2, 3])
def test_mef_ssim_matches_per_patch_reference(rng, count):
  shape = (27, 35)
  base = _texture(rng, shape)
  # An exposure sequence with saturated (flat) areas: under-exposed black on the left, over-
  # exposed white at the top, both flat in the corner, so flat and partly flat patches occur.
  under = np.clip(np.round(0.6 * base - 20), 0, 255)
  under[:, :14] = 0
  over = np.clip(np.round(1.4 * base + 40), 0, 255)
  over[:13] = 255
  middle = np.clip(base + rng.normal(scale=4, size=shape), 0, 255)
  sequence = [under, over, middle][:count]
  fused = np.clip(np.mean(sequence, axis=0) + rng.normal(scale=6, size=shape), 0, 255)
  expected = _mef_ssim_reference(sequence, fused)
  assert metrics.mef_ssim(fused, sequence).value == pytest.approx(expected, rel=1e-9)


def test_mef_ms_ssim_matches_per_patch_reference(rng):
  shape = (45, 47)
  a = _texture(rng, shape)
  b = np.clip(255 - a + rng.normal(scale=10, size=shape), 0, 255)
  fused = np.clip((a + b) / 2 + rng.normal(scale=10, size=shape), 0, 255)
  expected = _mef_ms_ssim_reference([a, b], fused)
  assert metrics.mef_ms_ssim(fused, [a, b]).value == pytest.approx(expected, rel=1e-9)
  paper = metrics.compute_metrics(fused, [a, b], names=["MS-SSIM"], convention="paper")
  assert paper["MS-SSIM"].value == pytest.approx(expected, rel=1e-9)


def test_mef_ms_ssim_size_rule(rng):
  a, b = _texture(rng, (43, 60)), _texture(rng, (43, 60))
  result = metrics.mef_ms_ssim((a + b) / 2, [a, b])
  assert result.value is None and "44" in result.reason


@pytest.mark.parametrize(
  "shape, flat_region", [((97, 121), False), ((97, 121), True), ((41, 50), False)]
)
def test_vif_matches_reference(rng, shape, flat_region):
  ref = _texture(rng, shape)
  dist = np.clip(0.8 * ref + 30 + rng.normal(scale=12, size=shape), 0, 255)
  if flat_region:
    # Flat areas exercise the zero-variance branches of the reference code.
    ref[:40, :50] = 200
    dist[60:, 70:] = 10
  expected = _vifp_reference(ref, dist)
  assert metrics.vif(ref, dist).value == pytest.approx(expected, rel=1e-9)


def test_fusion_vif_is_sum_of_terms(rng):
  shape = (90, 83)
  a, b = _texture(rng, shape), _texture(rng, shape)
  fused = (a + b) / 2
  expected = _vifp_reference(a, fused) + _vifp_reference(b, fused)
  assert metrics.fusion_vif(fused, [a, b]).value == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("shape", [(40, 57), (33, 33)])
def test_qabf_matches_reference(rng, shape):
  a = _texture(rng, shape)
  b = _texture(rng, shape)
  fused = np.clip(np.maximum(a, b) - rng.integers(0, 3, size=shape), 0, 255)
  fused[:5] = a[:5]  # equal strengths where F copies A
  expected = _qabf_reference(a, b, fused)
  assert metrics.qabf(fused, [a, b]).value == pytest.approx(expected, rel=1e-10)


def test_scd_matches_corrcoef(rng):
  shape = (31, 44)
  a, b = _texture(rng, shape), _texture(rng, shape)
  fused = np.clip(0.5 * a + 0.5 * b + rng.normal(scale=10, size=shape), 0, 255)
  expected = (
    np.corrcoef((fused - b).ravel(), a.ravel())[0, 1]
    + np.corrcoef((fused - a).ravel(), b.ravel())[0, 1]
  )
  assert metrics.scd(fused, [a, b]).value == pytest.approx(expected, rel=1e-10)


def test_mi_matches_histogram2d(rng):
  shape = (47, 38)
  a = rng.integers(0, 256, size=shape)
  b = rng.integers(0, 256, size=shape)
  fused = (a + b) / 2  # half levels round up

  def entropy(p):
    p = p[p > 0] / p.sum()
    return -np.sum(p * np.log2(p))

  levels = np.floor(fused + 0.5)
  expected = 0.0
  for source in (a, b):
    joint, _, _ = np.histogram2d(
      source.ravel(), levels.ravel(), bins=256, range=[[0, 256], [0, 256]]
    )
    expected += entropy(joint.sum(1)) + entropy(joint.sum(0)) - entropy(joint)
  assert metrics.mutual_information(fused, [a, b]).value == pytest.approx(expected, rel=1e-12)
