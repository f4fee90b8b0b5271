"""fusionjax.metrics: known values, symmetry, conventions, undefined cases, input checks, summaries."""

import math
import os

import numpy as np
import pytest

from fusionjax import metrics


@pytest.fixture
def rng(request):
  # A fresh seed per test, printed so a failure can be replayed with METRICS_SEED=<seed>.
  seed = int(os.environ.get("METRICS_SEED", np.random.SeedSequence().entropy % 2**32))
  print(f"{request.node.name}: METRICS_SEED={seed}")
  return np.random.default_rng(seed)


def _texture(rng, shape):
  """Random image with local structure: blocky noise plus fine noise, integer levels 0..255."""
  coarse = rng.normal(size=(shape[0] // 4 + 1, shape[1] // 4 + 1))
  blocky = np.kron(coarse, np.ones((4, 4)))[: shape[0], : shape[1]]
  return np.clip(np.round(128 + 50 * blocky + rng.normal(scale=10, size=shape)), 0, 255)


def _pair(rng, shape):
  a = _texture(rng, shape)
  b = _texture(rng, shape)
  fused = np.clip(0.5 * a + 0.5 * b + rng.normal(scale=4, size=shape), 0, 255)
  return fused, a, b


# --------------------------------------------------------------------------- known values


@pytest.mark.parametrize("level", [0, 37.0, 255])
def test_constant_image_has_zero_en_sd_sf_ag(level):
  image = np.full((13, 22), level)
  assert metrics.entropy(image).value == 0
  assert metrics.standard_deviation(image).value == 0
  assert metrics.spatial_frequency(image).value == 0
  assert metrics.average_gradient(image).value == 0


@pytest.mark.parametrize("k", [1, 2, 5, 16, 256])
def test_entropy_of_k_equally_frequent_levels_is_log2_k(rng, k):
  levels = rng.choice(256, size=k, replace=False)
  image = rng.permutation(np.repeat(levels, 15)).reshape(5, 3 * k)  # each level 15 times
  assert metrics.entropy(image.astype(np.uint8)).value == pytest.approx(math.log2(k), abs=1e-12)


def test_entropy_rounds_float_levels_half_up():
  image = np.array([[0.49, 0.5, 1.49, 254.5]])  # levels 0, 1, 1, 255
  assert metrics.entropy(image).value == pytest.approx(1.5)


def test_sd_sf_ag_closed_forms(rng):
  shape = (9, 14)
  image = rng.uniform(0, 255, size=shape)
  assert metrics.standard_deviation(image).value == pytest.approx(
    np.sqrt(np.mean((image - image.mean()) ** 2))
  )
  # A horizontal ramp: RF^2 = (W - 1) H s^2 / (H W), CF = 0; AG = s / sqrt(2).
  ramp = np.tile(np.arange(14) * 3.0, (9, 1))
  assert metrics.spatial_frequency(ramp).value == pytest.approx(math.sqrt(13 * 9 * 9 / (9 * 14)))
  assert metrics.average_gradient(ramp).value == pytest.approx(3 / math.sqrt(2))
  sf = math.sqrt(
    (np.sum(np.diff(image, axis=1) ** 2) + np.sum(np.diff(image, axis=0) ** 2)) / image.size
  )
  assert metrics.spatial_frequency(image).value == pytest.approx(sf)


def test_identical_images_ssim_ms_ssim_one_and_psnr_inf(rng):
  image = _texture(rng, (170, 203))
  assert metrics.ssim(image, image).value == pytest.approx(1.0, abs=1e-12)
  assert metrics.ms_ssim(image, image).value == pytest.approx(1.0, abs=1e-12)
  result = metrics.psnr(image, image)
  assert result.defined and result.value == math.inf
  scores = metrics.compute_metrics(image, [image, image], reference=image)
  assert scores["PSNR"].value == math.inf
  assert scores["SSIM"].value == pytest.approx(1.0, abs=1e-12)


def test_psnr_closed_form(rng):
  reference = _texture(rng, (21, 30))
  fused = np.clip(reference + rng.choice([-4.0, 4.0], size=reference.shape), 0, 255)
  mse = np.mean((fused - reference) ** 2)
  assert metrics.psnr(fused, reference).value == pytest.approx(10 * math.log10(255**2 / mse))


def test_scd_of_sum_is_two(rng):
  a = np.round(rng.uniform(0, 110, size=(19, 26)))
  b = np.round(rng.uniform(0, 110, size=(19, 26)))
  assert metrics.scd(a + b + 17, [a, b]).value == pytest.approx(2.0, abs=1e-12)


def test_mi_of_independent_images_is_zero_and_of_identical_is_twice_entropy(rng):
  # Rows carry A's level and columns F's: every (a, f) pair occurs equally often, so I(A; F) = 0.
  levels_a = rng.choice(256, size=4, replace=False)
  levels_f = rng.choice(256, size=8, replace=False)
  a = np.tile(levels_a.repeat(3)[:, None], (1, 40))  # 12 x 40
  fused = np.tile(levels_f.repeat(5)[None, :], (12, 1))
  assert metrics.mutual_information(fused, [a, a]).value == pytest.approx(0.0, abs=1e-12)
  image = _texture(rng, (33, 27))
  expected = 2 * metrics.entropy(image).value
  assert metrics.mutual_information(image, [image, image]).value == pytest.approx(
    expected, abs=1e-12
  )
  # Random independent images: only the finite-sample bias remains (about 255^2 / (2 N ln 2) bits
  # per term, 0.38 here), far below the identical case.
  noise = [rng.integers(0, 256, size=(320, 384)) for _ in range(3)]
  independent = metrics.mutual_information(noise[0], noise[1:]).value
  assert independent < 0.1 * 2 * metrics.entropy(noise[0]).value


def test_qabf_of_identical_images_is_its_known_limit(rng):
  image = _texture(rng, (29, 40))
  limit = 0.9994 / (1 + math.exp(-15 * 0.5)) * 0.9879 / (1 + math.exp(-22 * 0.2))
  assert metrics.qabf(image, [image, image]).value == pytest.approx(limit, abs=1e-12)
  assert limit == pytest.approx(0.974794, abs=1e-6)


def test_vif_of_identical_images_is_one_per_term(rng):
  image = _texture(rng, (85, 96))
  assert metrics.vif(image, image).value == pytest.approx(1.0, abs=1e-8)
  assert metrics.fusion_vif(image, [image, image]).value == pytest.approx(2.0, abs=1e-8)


def test_mef_ssim_of_identical_sequence_is_one(rng):
  image = _texture(rng, (30, 41))
  assert metrics.mef_ssim(image, [image, image]).value == pytest.approx(1.0, abs=1e-8)
  larger = _texture(rng, (47, 50))
  assert metrics.mef_ms_ssim(larger, [larger, larger, larger]).value == pytest.approx(1.0, abs=1e-8)
  flat = np.full((30, 41), 90.0)
  assert metrics.mef_ssim(flat, [flat, flat]).value == pytest.approx(1.0, abs=1e-12)
  assert metrics.mef_ssim(flat, [image, image]).value < 0.9


# ------------------------------------------------------------------------------- symmetry


def test_two_source_metrics_are_symmetric_in_the_sources(rng):
  fused, a, b = _pair(rng, (163, 177))
  forward = metrics.compute_metrics(fused, [a, b])
  backward = metrics.compute_metrics(fused, [b, a])
  for name in ("MI", "SCD", "MS-SSIM", "MEF-SSIM", "SSIM", "Qabf", "VIF"):
    assert forward[name].value == pytest.approx(backward[name].value, rel=1e-12), name
  paper_forward = metrics.compute_metrics(fused, [a, b], names=["MS-SSIM"], convention="paper")
  paper_backward = metrics.compute_metrics(fused, [b, a], names=["MS-SSIM"], convention="paper")
  assert paper_forward["MS-SSIM"].value == pytest.approx(paper_backward["MS-SSIM"].value, rel=1e-12)


# ---------------------------------------------------------------------------- conventions


def test_paper_mi_is_twice_entropy(rng):
  fused, a, b = _pair(rng, (37, 52))
  scores = metrics.compute_metrics(fused, [a, b], names=["EN", "MI"], convention="paper")
  assert scores["MI"].value == pytest.approx(2 * scores["EN"].value, abs=1e-12)
  assert metrics.mutual_information(fused, [a, b], convention="paper").value == scores["MI"].value
  clean = metrics.compute_metrics(fused, [a, b], names=["MI"])
  assert clean["MI"].value < scores["MI"].value


def test_paper_ms_ssim_is_mef_ms_ssim_and_other_metrics_agree(rng):
  fused, a, b = _pair(rng, (171, 165))
  reference = np.clip(fused + 3, 0, 255)
  clean = metrics.compute_metrics(fused, [a, b], reference=reference)
  paper = metrics.compute_metrics(fused, [a, b], reference=reference, convention="paper")
  assert paper["MS-SSIM"].value == pytest.approx(
    metrics.mef_ms_ssim(fused, [a, b]).value, rel=1e-12
  )
  assert clean["MS-SSIM"].value == pytest.approx(metrics.ms_ssim(fused, reference).value, rel=1e-12)
  for name in metrics.METRIC_NAMES:
    if name not in ("MI", "MS-SSIM"):
      assert paper[name] == clean[name], name


def test_compare_to_selects_reference_or_sources(rng):
  fused, a, b = _pair(rng, (165, 170))
  reference = np.clip(0.9 * fused + 10, 0, 255)
  to_sources = metrics.compute_metrics(
    fused, [a, b], reference, names=["SSIM", "MS-SSIM"], compare_to="sources"
  )
  to_reference = metrics.compute_metrics(fused, [a, b], reference, names=["SSIM", "MS-SSIM"])
  assert to_sources["SSIM"].value == pytest.approx(
    metrics.fusion_ssim(fused, [a, b]).value, rel=1e-12
  )
  assert to_sources["MS-SSIM"].value == pytest.approx(
    metrics.fusion_ms_ssim(fused, [a, b]).value, rel=1e-12
  )
  assert to_reference["SSIM"].value == pytest.approx(
    metrics.ssim(fused, reference).value, rel=1e-12
  )
  fusion_ssim = (metrics.ssim(fused, a).value + metrics.ssim(fused, b).value) / 2
  assert to_sources["SSIM"].value == pytest.approx(fusion_ssim, rel=1e-12)
  missing = metrics.compute_metrics(fused, [a, b], names=["SSIM"], compare_to="reference")
  assert missing["SSIM"].value is None and "reference" in missing["SSIM"].reason


# ------------------------------------------------------------------------ undefined cases


def test_undefined_metrics_say_why(rng):
  fused, a, b = _pair(rng, (40, 45))  # VIF needs 41 px, MS-SSIM 161
  scores = metrics.compute_metrics(fused, [a, b])
  assert scores["PSNR"].value is None and "reference" in scores["PSNR"].reason
  assert scores["MS-SSIM"].value is None and "161" in scores["MS-SSIM"].reason
  assert scores["VIF"].value is None and "41" in scores["VIF"].reason
  for name in ("EN", "MI", "SCD", "MEF-SSIM", "SSIM", "Qabf", "SD", "SF", "AG"):
    assert scores[name].defined, name


def test_scd_undefined_for_zero_variance(rng):
  a = _texture(rng, (17, 23))
  b = _texture(rng, (17, 23))
  result = metrics.scd(a, [a, b])  # F - A is constant
  assert result.value is None and "F - A" in result.reason
  constant = np.full((17, 23), 5.0)
  assert metrics.scd(a, [constant, b]).value is None


def test_flat_sources_make_vif_and_qabf_undefined(rng):
  flat = np.full((90, 88), 120.0)
  image = _texture(rng, (90, 88))
  assert metrics.fusion_vif(image, [flat, image]).value is None
  assert "flat" in metrics.vif(flat, image).reason
  assert metrics.qabf(image, [flat, flat]).value is None


def test_two_source_metrics_undefined_for_three_sources(rng):
  fused, a, b = _pair(rng, (170, 175))
  c = _texture(rng, (170, 175))
  scores = metrics.compute_metrics(fused, [a, b, c])
  for name in ("MI", "SCD", "Qabf", "VIF"):
    assert scores[name].value is None and "two" in scores[name].reason, name
  for name in ("EN", "MS-SSIM", "MEF-SSIM", "SSIM", "SD", "SF", "AG"):
    assert scores[name].defined, name
  expected = np.mean([metrics.ms_ssim(fused, s).value for s in (a, b, c)])
  assert scores["MS-SSIM"].value == pytest.approx(expected, rel=1e-12)


def test_metric_result_invariants():
  with pytest.raises(ValueError):
    metrics.MetricResult(None)
  with pytest.raises(ValueError):
    metrics.MetricResult(1.0, "both")
  with pytest.raises(ValueError):
    metrics.MetricResult(float("nan"))
  with pytest.raises(ValueError, match="no reference"):
    float(metrics.MetricResult(None, "no reference"))
  assert float(metrics.MetricResult(2)) == 2.0


# --------------------------------------------------------------------------- input checks


def test_bad_inputs_raise_clear_errors(rng):
  image = _texture(rng, (20, 30))
  with pytest.raises(ValueError, match="shape"):
    metrics.compute_metrics(image, [image, image[:, :29]])
  with pytest.raises(ValueError, match="reference has shape"):
    metrics.compute_metrics(image, [image, image], reference=image[:19])
  with pytest.raises(ValueError, match="2-D"):
    metrics.compute_metrics(np.stack([image] * 3, axis=-1), [image, image])
  bright = image.copy()
  bright[2, 3] = 255.5
  with pytest.raises(ValueError, match="outside 0..255"):
    metrics.compute_metrics(bright, [image, image])
  with pytest.raises(ValueError, match="outside 0..255"):
    metrics.entropy(image - 300)
  with pytest.raises(ValueError, match="outside 0..255"):
    metrics.psnr(image, np.full(image.shape, -1, dtype=np.int16))
  nan_image = image.copy()
  nan_image[3, 4] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    metrics.compute_metrics(image, [image, nan_image])
  with pytest.raises(ValueError, match="list or tuple"):
    metrics.compute_metrics(image, np.stack([image, image]))
  with pytest.raises(ValueError, match="at least 2"):
    metrics.compute_metrics(image, [image])
  with pytest.raises(ValueError, match="unknown metric"):
    metrics.compute_metrics(image, [image, image], names=["EN", "UNIQUE"])
  with pytest.raises(ValueError, match="convention"):
    metrics.compute_metrics(image, [image, image], convention="matlab")
  with pytest.raises(ValueError, match="convention"):
    metrics.mutual_information(image, [image, image], convention="matlab")
  with pytest.raises(ValueError, match="compare_to"):
    metrics.compute_metrics(image, [image, image], compare_to="fused")
  with pytest.raises(ValueError, match="dtype"):
    metrics.entropy(image > 100)
  with pytest.raises(ValueError, match="y has shape"):
    metrics.ssim(image, image.T)


def test_unit_range_float_image_warns(rng):
  image = rng.uniform(0, 1, size=(12, 12))
  with pytest.warns(UserWarning, match="multiplied by 255"):
    metrics.entropy(image)


def test_uint8_and_float_inputs_agree(rng):
  fused, a, b = _pair(rng, (50, 61))
  fused = np.round(fused)
  as_float = metrics.compute_metrics(fused, [a, b])
  as_uint8 = metrics.compute_metrics(
    fused.astype(np.uint8), [a.astype(np.uint8), b.astype(np.uint8)]
  )
  assert as_float == as_uint8


def test_compute_metrics_names_and_order(rng):
  fused, a, b = _pair(rng, (30, 33))
  assert list(metrics.compute_metrics(fused, [a, b])) == list(metrics.METRIC_NAMES)
  assert list(metrics.compute_metrics(fused, [a, b], names=["SF", "EN"])) == ["SF", "EN"]
  assert list(metrics.compute_metrics(fused, [a, b], names="AG")) == ["AG"]
  assert metrics.METRIC_NAMES == (
    "EN",
    "MI",
    "SCD",
    "MS-SSIM",
    "MEF-SSIM",
    "PSNR",
    "SSIM",
    "Qabf",
    "VIF",
    "SD",
    "SF",
    "AG",
  )


# ------------------------------------------------------------------------------ summaries


def test_summarize_skips_undefined_values():
  R = metrics.MetricResult
  results = [
    {"EN": R(7.0), "PSNR": R(None, "no reference"), "MS-SSIM": R(0.9)},
    {"EN": R(6.0), "PSNR": R(30.0), "MS-SSIM": R(None, "too small")},
    {"EN": R(8.0), "PSNR": R(None, "no reference")},
  ]
  summary = metrics.summarize(results)
  assert list(summary) == ["EN", "MS-SSIM", "PSNR"]
  assert summary["EN"] == {
    "mean": pytest.approx(7.0),
    "std": pytest.approx(math.sqrt(2 / 3)),
    "n": 3,
    "missing": 0,
  }
  assert summary["PSNR"] == {"mean": 30.0, "std": 0.0, "n": 1, "missing": 2}
  assert summary["MS-SSIM"] == {"mean": 0.9, "std": 0.0, "n": 1, "missing": 2}
  empty = metrics.summarize([{"PSNR": R(None, "no reference")}])
  assert empty["PSNR"] == {"mean": None, "std": None, "n": 0, "missing": 1}
  infinite = metrics.summarize([{"PSNR": R(math.inf)}, {"PSNR": R(40.0)}])
  assert infinite["PSNR"]["mean"] == math.inf and math.isnan(infinite["PSNR"]["std"])
