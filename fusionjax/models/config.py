"""Model configuration: documented defaults and the factory ``create_model``.

Every number the paper leaves open has its value and reason here; the defaults reproduce the
paper's configuration (§4.1.1): width 32, Swin depth 2, windows 2 (GLT) and 4 (MSMG), FRUFN with
N = 5 units, EFRUFN with at most 5 Anderson iterations and the Jacobian-free backward (eq. 20).
Parameter counts of the defaults: EFRUFN 236,147 (paper 0.236 M), FRUFN 863,163 (paper 0.864 M).
"""

from __future__ import annotations

from typing import Any, Mapping, Union

import jax.numpy as jnp
import ml_collections

from fusionjax import deq
from fusionjax.models.unfolding import EFRUFN, EFRUFN_VARIANTS, FRUFN, FRUFN_VARIANTS, UNIT_RULES

MODEL_NAMES = ("efrufn", "frufn")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
SOLVERS = ("anderson", "fixed_point", "broyden")
BACKWARDS = ("jfb", "phantom", "implicit")
IMPLICIT_SOLVERS = ("iterate", "gmres")
ANDERSON_IMPLEMENTATIONS = ("native", "jaxopt")


def default_model_config() -> ml_collections.ConfigDict:
  """Returns the default model configuration (the paper's EFRUFN).

  Returns:
    A ``ml_collections.ConfigDict``; each field is commented in the source.
  """
  c = ml_collections.ConfigDict()
  c.name = "efrufn"  # 'efrufn' (DEQ, shared unit) or 'frufn' (N unrolled units).
  # Table 8 ablations: FRUFN 'full' | 'shared' | 'no_unfold' | 'no_mask'; EFRUFN 'full' | 'no_mask'.
  c.variant = "full"
  c.width = 32  # Feature channels everywhere (paper §4.1.1).
  c.num_units = 5  # FRUFN's N (paper: 5); EFRUFN ignores it.
  c.swin_depth = 2  # Swin blocks per GLT (paper: 2).
  # The paper's 6 heads do not divide 32 channels. 4 (head size 8) is the nearest divisor that
  # keeps cosine attention meaningful (8 heads would leave 4-dimensional heads) and, with the
  # rest of the design, gives the paper's parameter counts.
  c.num_heads = 4
  c.glt_window = 2  # Swin window in GLT (paper: 2).
  c.msmg_window = 4  # Swin window in MSMG's GLT (paper: 4, for a larger receptive field).
  c.mlp_ratio = 4.0  # Swin MLP width / channels: Swin's standard value.
  c.convnext_mlp_ratio = 4.0  # ConvNeXt MLP width / channels: ConvNeXt's standard value.
  c.cpb_hidden = 512  # Swin V2 continuous position-bias MLP width: Swin V2's value.
  # MSMG scales: max-pool by 2, 4, 8 (paper) plus the unpooled full resolution (see MSMG).
  c.pool_factors = (1, 2, 4, 8)
  c.inverse_hidden = 16  # Hidden channels of Tθ3⁻¹: brings Tθ1+Tθ2+Tθ3⁻¹ to the paper's ~0.079 M.
  c.transform_scale_init = 0.1  # Initial layer scale of T = I + scaled GLT (see UFUnit).
  # UF update rule: 'residual' (paper eq. 14) | 'anchored' (F' = F2 + M (F - F2 + T(F1 - F)),
  # a non-degenerate fixed point) | 'auto': FRUFN 'residual', EFRUFN 'anchored' (see UFUnit).
  c.unit_rule = "auto"
  c.dtype = "float32"  # Compute dtype: 'float32' or 'bfloat16' (GPU/TPU); params stay float32.
  # EFRUFN's fixed-point solve (fusionjax.deq).
  # 'anderson' (paper) | 'fixed_point' (plain/damped iteration) | 'broyden' (limited-memory "good"
  # Broyden, the DEQ reference solver of Bai et al.).
  c.solver = "anderson"
  c.max_iter = 5  # Most solver iterations (paper: 5); raise at will, memory does not grow.
  # Relative residual ||f(z) - z|| / ||f(z)|| at which the solve stops early; 1e-3 is a common
  # DEQ setting. The state is (F - F(1), M), see EFRUFN.
  c.tol = 1e-3
  c.anderson_history = 5  # Anderson memory (5 as in Bai et al.'s DEQ code); 2x this many states.
  c.anderson_mixing = 1.0  # Anderson beta: 1 mixes the map's outputs undamped.
  c.anderson_ridge = 1e-5  # Tikhonov term of Anderson's least squares (fusionjax.deq default).
  # 'native': per-image Anderson weights, so a fused image does not depend on the rest of its
  # batch (as in the reference DEQ code); 'jaxopt': jaxopt's update, weights shared by the batch
  # and plain iteration for the first `anderson_history` steps.
  c.anderson_implementation = "native"
  c.fixed_point_damping = 1.0  # Step size of solver='fixed_point'.
  # Rank-one terms of solver='broyden' (2x this many states). 5, not fusionjax.deq's 10: the buffer
  # restarts only when full, so 5 holds every update of the paper's 5-iteration solve (and of the
  # CPU configs' 3), and its memory equals Anderson's with anderson_history=5.
  c.broyden_memory = 5
  # Every solver returns the iterate with the lowest relative residual seen instead of the last; they
  # differ only when a solve stops unconverged, which a 3-5 iteration budget often does (and Broyden's
  # residual is not monotone). True is fusionjax.deq's default; checkpoints recorded before the field
  # existed load with it.
  c.keep_best = True
  c.backward = "jfb"  # 'jfb' (paper eq. 20) | 'phantom' (Geng et al. 2021) | 'implicit' (eq. 19).
  c.phantom_steps = 5  # Unrolled steps of the phantom gradient (Geng et al.'s setting).
  c.phantom_damping = 0.5  # Damping of the phantom gradient (Geng et al.'s setting).
  c.implicit_max_iter = 30  # Adjoint iterations of the implicit gradient.
  c.implicit_tol = 1e-4  # Relative tolerance of the implicit gradient's adjoint solve.
  # How backward='implicit' solves its adjoint system: 'iterate' (fusionjax.deq's default, one reverse
  # pass per step, needs the map contractive at z*, which the fixed-point term keeps it) or 'gmres'
  # (restarted GMRES, needs only I - df/dz invertible, for maps that are not contractive).
  c.implicit_solver = "iterate"
  return c


def _resolve(
  config: Union[None, Mapping[str, Any], ml_collections.ConfigDict],
) -> ml_collections.ConfigDict:
  """Merges ``config`` into the defaults, rejecting unknown keys."""
  merged = default_model_config()
  if config is None:
    return merged
  if isinstance(config, ml_collections.ConfigDict):
    items = config.to_dict()
  elif isinstance(config, Mapping):
    items = dict(config)
  else:
    raise ValueError(f"model config must be a ConfigDict or a dict, got {type(config).__name__}.")
  unknown = sorted(set(items) - set(merged.keys()))
  if unknown:
    raise ValueError(
      f"Unknown model config field(s) {unknown}; valid fields are {sorted(merged.keys())}."
    )
  with merged.unlocked():
    for key, value in items.items():
      merged[key] = value
  return merged


def _check_int(c, key: str, minimum: int) -> int:
  value = c[key]
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"model config {key} must be an int >= {minimum}, got {value!r}.")
  return value


def _check_choice(c, key: str, choices) -> str:
  value = c[key]
  if value not in choices:
    raise ValueError(f"model config {key} must be one of {tuple(choices)}, got {value!r}.")
  return value


def solver_options(config: Union[Mapping[str, Any], ml_collections.ConfigDict]):
  """Builds EFRUFN's ``fusionjax.deq`` solver and backward options from a model config.

  Args:
    config: a model config (missing fields take their defaults).

  Returns:
    ``(solver, backward)``: e.g. ``(deq.Anderson(...), deq.JFB())``.
  """
  c = _resolve(config)
  solver_name = _check_choice(c, "solver", SOLVERS)
  backward_name = _check_choice(c, "backward", BACKWARDS)
  # Checked whatever the backward, so a typo fails where it is made.
  implicit_solver = _check_choice(c, "implicit_solver", IMPLICIT_SOLVERS)
  max_iter = _check_int(c, "max_iter", 1)
  if not isinstance(c.keep_best, bool):
    raise ValueError(f"model config keep_best must be True or False, got {c.keep_best!r}.")
  common = dict(max_iter=max_iter, tol=float(c.tol), keep_best=c.keep_best)
  if solver_name == "anderson":
    solver = deq.Anderson(
      history=_check_int(c, "anderson_history", 1),
      mixing=float(c.anderson_mixing),
      ridge=float(c.anderson_ridge),
      implementation=_check_choice(c, "anderson_implementation", ANDERSON_IMPLEMENTATIONS),
      **common,
    )
  elif solver_name == "broyden":
    solver = deq.Broyden(memory=_check_int(c, "broyden_memory", 1), **common)
  else:
    solver = deq.FixedPointIteration(damping=float(c.fixed_point_damping), **common)
  if backward_name == "jfb":
    backward = deq.JFB()
  elif backward_name == "phantom":
    backward = deq.Phantom(
      steps=_check_int(c, "phantom_steps", 1), damping=float(c.phantom_damping)
    )
  else:
    backward = deq.Implicit(
      max_iter=_check_int(c, "implicit_max_iter", 1),
      tol=float(c.implicit_tol),
      solver=implicit_solver,
    )
  return solver, backward


def create_model(config: Union[None, Mapping[str, Any], ml_collections.ConfigDict] = None):
  """Builds FRUFN or EFRUFN from a model config.

  Args:
    config: a ``ConfigDict`` or dict with fields of :func:`default_model_config` (missing ones
      take their defaults; unknown ones are an error); ``None`` gives the default EFRUFN.

  Returns:
    An unbound ``flax.linen`` module ``m`` with ``m.init(rng, y1, y2)`` and
    ``m.apply(variables, y1, y2) -> (B, H, W, 1)`` in [0, 1].

  Raises:
    ValueError: for an unknown model name or field, a variant the model does not have, or an
      invalid value.
  """
  c = _resolve(config)
  name = c.name.lower() if isinstance(c.name, str) else c.name
  if name not in MODEL_NAMES:
    raise ValueError(f"model config name must be one of {MODEL_NAMES}, got {c.name!r}.")
  variants = FRUFN_VARIANTS if name == "frufn" else EFRUFN_VARIANTS
  if c.variant not in variants:
    raise ValueError(
      f"variant {c.variant!r} is not available for {name}; choose one of {variants} "
      f"(FRUFN: {FRUFN_VARIANTS}, EFRUFN: {EFRUFN_VARIANTS})."
    )
  width = _check_int(c, "width", 1)
  num_heads = _check_int(c, "num_heads", 1)
  if width % num_heads:
    raise ValueError(
      f"model config num_heads={num_heads} must divide width={width} (the paper's 6 heads do "
      "not divide 32; use 4 or 8)."
    )
  for key in ("glt_window", "msmg_window", "inverse_hidden", "cpb_hidden"):
    _check_int(c, key, 1)
  _check_int(c, "swin_depth", 0)
  pool_factors = tuple(c.pool_factors)
  if not pool_factors or any(
    isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in pool_factors
  ):
    raise ValueError(
      f"model config pool_factors must be a non-empty list of ints >= 1, got {pool_factors}."
    )
  for key in ("mlp_ratio", "convnext_mlp_ratio"):
    if not float(c[key]) > 0:
      raise ValueError(f"model config {key} must be > 0, got {c[key]!r}.")
  dtype = DTYPES[_check_choice(c, "dtype", tuple(DTYPES))]
  unit_rule = _check_choice(c, "unit_rule", ("auto",) + UNIT_RULES)
  common = dict(
    width=width,
    variant=c.variant,
    swin_depth=c.swin_depth,
    num_heads=num_heads,
    glt_window=c.glt_window,
    msmg_window=c.msmg_window,
    mlp_ratio=float(c.mlp_ratio),
    convnext_mlp_ratio=float(c.convnext_mlp_ratio),
    cpb_hidden=c.cpb_hidden,
    pool_factors=pool_factors,
    inverse_hidden=c.inverse_hidden,
    transform_scale_init=float(c.transform_scale_init),
    unit_rule=None if unit_rule == "auto" else unit_rule,
    dtype=dtype,
  )
  # The solver fields are checked for FRUFN too, so a typo fails wherever it is made.
  solver, backward = solver_options(c)
  if name == "frufn":
    return FRUFN(num_units=_check_int(c, "num_units", 1), **common)
  return EFRUFN(solver=solver, backward=backward, **common)
