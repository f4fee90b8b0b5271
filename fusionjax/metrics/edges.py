"""Edge-based fusion metric: Qabf, the edge information of the sources kept in the fused image."""

from __future__ import annotations

import numpy as np

from fusionjax.metrics._filters import strip_rows
from fusionjax.metrics._inputs import Evaluation, prepare, two_sources
from fusionjax.metrics._result import MetricResult, defined, undefined

# Qabf constants (Xydeas & Petrovic, Electron. Lett. 2000).
_GAMMA_G, _KAPPA_G, _SIGMA_G = 0.9994, -15.0, 0.5
_GAMMA_A, _KAPPA_A, _SIGMA_A = 0.9879, -22.0, 0.8
_QABF_L = 1.0


def _sobel(image: np.ndarray):
  # Sobel responses on the interior pixels (separable: [1 2 1] smoothing times [-1 0 1]);
  # strength and orientation arctan(s_y / s_x), pi/2 where s_x = 0.
  smoothed_rows = image[1:-1] * 2
  smoothed_rows += image[:-2]
  smoothed_rows += image[2:]
  smoothed_columns = image[:, 1:-1] * 2
  smoothed_columns += image[:, :-2]
  smoothed_columns += image[:, 2:]
  sx = smoothed_rows[:, 2:] - smoothed_rows[:, :-2]
  sy = smoothed_columns[:-2] - smoothed_columns[2:]
  with np.errstate(divide="ignore", invalid="ignore"):
    orientation = np.arctan(sy / sx)
  np.copyto(orientation, np.pi / 2, where=sx == 0)
  sx *= sx
  sy *= sy
  sx += sy
  return np.sqrt(sx, out=sx), orientation


def _edge_preservation(source_edges, fused_edges) -> np.ndarray:
  # Q^{XF} = Q_g Q_alpha per pixel (Xydeas & Petrovic 2000).
  g_x, a_x = source_edges
  g_f, a_f = fused_edges
  larger = np.maximum(g_x, g_f)
  # Relative strength min/max; where both are 0 the strengths agree (and the weight is 0).
  relative_strength = np.divide(
    np.minimum(g_x, g_f), larger, out=np.ones_like(larger), where=larger > 0
  )
  relative_orientation = np.abs(a_x - a_f)
  relative_orientation *= -2 / np.pi
  relative_orientation += 1
  # Gamma_g Gamma_a / ((1 + exp(kappa_g (G - sigma_g))) (1 + exp(kappa_a (A - sigma_a)))).
  relative_strength -= _SIGMA_G
  relative_strength *= _KAPPA_G
  strength_term = np.exp(relative_strength, out=relative_strength)
  strength_term += 1
  relative_orientation -= _SIGMA_A
  relative_orientation *= _KAPPA_A
  orientation_term = np.exp(relative_orientation, out=relative_orientation)
  orientation_term += 1
  strength_term *= orientation_term
  return np.divide(_GAMMA_G * _GAMMA_A, strength_term, out=strength_term)


def qabf(fused, sources) -> MetricResult:
  """Qabf: edge-information preservation (Xydeas & Petrovic, Electron. Lett. 36(4), 2000).

  Sobel strength g and orientation alpha = arctan(s_y / s_x) (pi/2 where s_x = 0) per pixel;
  for source X: G = min(g_X, g_F) / max(g_X, g_F), A = 1 - |alpha_X - alpha_F| / (pi/2),
  Q^{XF} = Gamma_g / (1 + exp(kappa_g (G - sigma_g))) * Gamma_a / (1 + exp(kappa_a (A - sigma_a))),
  Qabf = sum(Q^{AF} g_A^L + Q^{BF} g_B^L) / sum(g_A^L + g_B^L), with Gamma_g = 0.9994,
  kappa_g = -15, sigma_g = 0.5, Gamma_a = 0.9879, kappa_a = -22, sigma_a = 0.8, L = 1.
  Sums run over interior pixels, where the 3x3 Sobel kernels fit: padding would invent edges at
  the border (the widely copied MATLAB code zero-pads, so its values differ slightly).
  With these constants a perfectly preserved edge (G = A = 1) scores
  Gamma_g / (1 + exp(kappa_g / 2)) * Gamma_a / (1 + exp(kappa_a / 5)) = 0.974794, not 1, so
  Qabf(F = A = B) = 0.974794 for any image with an edge.

  Args:
    fused: 2-D fused grey image, levels 0..255.
    sources: a list or tuple of exactly two source images of the same shape.

  Returns:
    Qabf in [0, 1); undefined for other than two sources, below 3x3 pixels, or when neither
    source has any edge.
  """
  return _qabf(prepare(fused, sources))


def _qabf(evaluation: Evaluation) -> MetricResult:
  reason = two_sources(evaluation, "Qabf")
  if reason is not None:
    return undefined(reason)
  height, width = evaluation.workspace.shape(0)
  if min(height, width) < 3:
    return undefined(f"Qabf needs at least 3x3 pixels for the Sobel kernels, got {height}x{width}.")
  images = [evaluation.image(evaluation.fused)] + [evaluation.image(k) for k in evaluation.sources]
  numerator = 0.0
  denominator = 0.0
  step = strip_rows(width)
  for start in range(0, height - 2, step):
    # Sobel responses of interior rows start+1 .. start+step need input rows start .. start+step+1.
    blocks = [image[start : start + step + 2] for image in images]
    fused_edges = _sobel(blocks[0])
    for block in blocks[1:]:
      source_edges = _sobel(block)
      weight = source_edges[0] ** _QABF_L
      numerator += float(np.sum(_edge_preservation(source_edges, fused_edges) * weight))
      denominator += float(np.sum(weight))
  if denominator == 0:
    return undefined(
      "Qabf is undefined: neither source has an edge (zero Sobel gradient everywhere)."
    )
  return defined(numerator / denominator)
