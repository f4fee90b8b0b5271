"""Fusion-rule unfolding networks: Tθ1/Tθ2, Tθ3⁻¹, the UF unit, FRUFN and EFRUFN (paper §3.2).

Both networks fuse two luma images I1, I2 (B, H, W, 1) in [0, 1]:

    F1 = Tθ1(I1),  F(1) = Tθ2(I2),  M(1) = 0
    M(n+1) = G(F1 - F(n), M(n))                              (MSMG)
    F(n+1) = F(n) + M(n+1) ⊙ T(F1 - F(n))                    (T from GLT; paper eq. 14)
      or   F(n+1) = F2 + M(n+1) ⊙ (F(n) - F2 + T(F1 - F(n)))  ('anchored', see UFUnit)
    Î = Tθ3⁻¹(F(N))

FRUFN unrolls N units with their own parameters (eq. 14); EFRUFN shares one unit and solves for
its fixed point (F*, M*) with :func:`fusionjax.deq.fixed_point` (paper eq. 18; anchored rule by
default, because eq. 14's fixed point discards the second source).

Both pad the input once (reflection, bottom/right) to a multiple of every window and pooling factor
and crop the output back, so any H x W works (see :mod:`fusionjax.models.padding`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from fusionjax import deq
from fusionjax.models import padding
from fusionjax.models.blocks import ResidualBlock
from fusionjax.models.glt import GLT
from fusionjax.models.msmg import MSMG
from fusionjax.models.stats import SOLVER_STATS

Dtype = Any

FRUFN_VARIANTS = ("full", "shared", "no_unfold", "no_mask")
EFRUFN_VARIANTS = ("full", "no_mask")


class SourceTransform(nn.Module):
  """Tθ1 / Tθ2: a 3x3 convolution to ``features`` channels and two residual blocks (Fig. 6)."""

  features: int = 32  # Width of the feature space.
  num_blocks: int = 2  # Residual blocks after the first convolution.
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.

  @nn.compact
  def __call__(self, image: jnp.ndarray) -> jnp.ndarray:
    """Projects a single-band image into the feature space.

    Args:
      image: (B, H, W, 1).

    Returns:
      (B, H, W, features) in the compute dtype.
    """
    x = nn.Conv(self.features, (3, 3), dtype=self.dtype, param_dtype=self.param_dtype, name="conv")(
      image
    )
    for i in range(self.num_blocks):
      x = ResidualBlock(
        self.features, dtype=self.dtype, param_dtype=self.param_dtype, name=f"res{i}"
      )(x)
    return x


class InverseTransform(nn.Module):
  """Tθ3⁻¹: ``conv3x3(features -> hidden) -> ReLU -> conv3x3(hidden -> 1) -> sigmoid``.

  The paper only says Tθ3⁻¹ reconstructs the image. Two convolutions with a 16-channel hidden layer
  bring the non-unit parameters (Tθ1 + Tθ2 + Tθ3⁻¹) to the paper's ~0.079 M. A sigmoid keeps the
  output in (0, 1) with a gradient everywhere; clipping would stop the gradient of every pixel
  that leaves the range, which is common early in training.
  """

  hidden: int = 16  # Channels of the hidden layer.
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.

  @nn.compact
  def __call__(self, features: jnp.ndarray) -> jnp.ndarray:
    """Reconstructs the fused image.

    Args:
      features: (B, H, W, C).

    Returns:
      (B, H, W, 1) float32 in (0, 1).
    """
    x = nn.Conv(self.hidden, (3, 3), dtype=self.dtype, param_dtype=self.param_dtype, name="conv1")(
      features
    )
    x = nn.Conv(1, (3, 3), dtype=self.dtype, param_dtype=self.param_dtype, name="conv2")(nn.relu(x))
    return jax.nn.sigmoid(x.astype(jnp.float32))


UNIT_RULES = ("residual", "anchored")


class UFUnit(nn.Module):
  """Unfolding unit: ``M' = G(F1 - F, M)`` and an update of F by ``M' ⊙ T(F1 - F)``.

  Two update rules (``rule``):

  - ``'residual'`` (paper eq. 14): ``F' = F + M' ⊙ T(F1 - F)``. With T = identity this is the
    unfolded rule eq. 11, ``F' = M' F1 + (1 - M') F``.
  - ``'anchored'``: ``F' = F2 + M' ⊙ (F - F2 + T(F1 - F))``, i.e. ``(1 - M') F2 + M' (F +
    T(F1 - F))``. With T = identity this is the classical rule eq. 10, ``F' = M' F1 + (1 - M')
    F2``, re-applied with the refined mask. It equals eq. 14 on the first step (F = F2) and
    differs afterwards. Why it exists: the fixed point of eq. 14 satisfies
    ``M* ⊙ T(F1 - F*) = 0``; a softmax mask is never 0, so ``T(F1 - F*) = 0``: with T near
    the identity F* = F1 and the second source is lost, and the mask, whose input (the
    residual) vanishes, never settles (measured: at 64x64 Anderson drove F to F1 to 1e-6 while
    M kept changing by ~2 % per pixel after 200 iterations). The anchored fixed point is
    ``F* = (1 - M*) F2 + M* (F1 + correction)``, a genuine fusion; Anderson reaches 4e-7
    relative residual in 60 iterations on an untrained unit. EFRUFN uses it by default; FRUFN's
    N finite steps use eq. 14.

  G is the MSMG, fed the residual normalised to unit RMS per image (``r / s``) and the previous
  mask: its output is a scale-free mask, and the normalised input keeps it well conditioned
  however much the residual shrinks over the iterations.

  T is built on the GLT as a residual, scale-equivariant transform

      T(r) = r + alpha ⊙ s · GLT(r / s),   s = RMS of r over (H, W, C), per image,

  with ``alpha`` a learnable per-channel scale initialised to ``transform_scale_init``. The paper
  gives T's blocks but not how they are wired; this wiring is chosen because:
  - T = identity is the rule the paper starts from (eq. 12); GLT learns the interaction that
    eq. 13 adds on top of it.
  - The GLT ends in LayerNorm, so on its own its output has unit size whatever the size of the
    residual: two nearly equal sources would still receive a full-size update, and the map
    ``F -> F + M ⊙ GLT(F1 - F)`` has no reachable fixed point (measured on an untrained unit at
    64x64: after 60 Anderson iterations the residual ||H(F) - F|| was still a quarter of
    ||F1 - F2||, and plain iteration did no better). Dividing the GLT's input by s and
    multiplying its output by s makes T positively homogeneous (T(c r) = c T(r) for c > 0,
    T(0) = 0), like the linear rule it extends.
  - With ``alpha = 0.1`` the correction starts small, so the untrained fixed-point map is close
    to the classical rule and contractive; alpha is learned.

  ``use_mask=False`` fixes M to 1 (no MSMG; both rules give ``F' = F + T(F1 - F)``);
  ``use_transform=False`` replaces T by the identity (no GLT). GLT and MSMG run in the compute
  dtype; the update is assembled in float32 and added in F's own dtype, so a float32 state stays
  float32 under bfloat16 compute.
  """

  features: int = 32  # Width of the feature space.
  use_mask: bool = True  # Predict the mask with MSMG (False: M = 1).
  use_transform: bool = True  # Transform the residual with GLT (False: identity).
  rule: str = "residual"  # 'residual' (paper eq. 14) or 'anchored' (see the class docstring).
  swin_depth: int = 2  # Swin blocks per GLT.
  num_heads: int = 4  # Attention heads per Swin block.
  glt_window: int = 2  # Window of the GLT that models T.
  msmg_window: int = 4  # Window of the GLT inside MSMG.
  mlp_ratio: float = 4.0  # Swin MLP hidden width relative to ``features``.
  convnext_mlp_ratio: float = 4.0  # ConvNeXt MLP hidden width relative to ``features``.
  cpb_hidden: int = 512  # Hidden width of the Swin V2 position-bias MLP.
  pool_factors: Sequence[int] = (1, 2, 4, 8)  # MSMG pyramid scales (1 = full resolution).
  transform_scale_init: float = 0.1  # Initial alpha of T (see the class docstring).
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.

  @nn.compact
  def __call__(
    self,
    f1: jnp.ndarray,
    f: jnp.ndarray,
    mask: Optional[jnp.ndarray],
    f2: Optional[jnp.ndarray] = None,
  ) -> tuple[jnp.ndarray, Optional[jnp.ndarray]]:
    """One unfolding step.

    Args:
      f1: (B, H, W, C) transformed first source F1.
      f: (B, H, W, C) current fused features F(n).
      mask: (B, H, W, 1) previous mask M(n); ignored (may be None) when ``use_mask`` is False.
      f2: (B, H, W, C) transformed second source F2; needed by the ``'anchored'`` rule.

    Returns:
      (F(n+1), M(n+1)): F(n+1) in ``f``'s dtype; M(n+1) float32 (B, H, W, 1), or ``mask``
      unchanged when ``use_mask`` is False.
    """
    if self.rule not in UNIT_RULES:
      raise ValueError(f"UFUnit rule must be one of {UNIT_RULES}, got {self.rule!r}.")
    anchored = self.rule == "anchored" and self.use_mask
    if anchored and f2 is None:
      raise ValueError("The 'anchored' rule needs the second source's features f2.")
    residual32 = (f1 - f).astype(jnp.float32)
    # The epsilon only keeps s > 0 when F = F1, where s * GLT(.) vanishes anyway.
    scale = jnp.sqrt(jnp.mean(jnp.square(residual32), axis=(1, 2, 3), keepdims=True) + 1e-12)
    normalised = (residual32 / scale).astype(self.dtype)
    if self.use_mask:
      new_mask = MSMG(
        self.features,
        self.pool_factors,
        self.convnext_mlp_ratio,
        self.swin_depth,
        self.num_heads,
        self.msmg_window,
        self.mlp_ratio,
        self.cpb_hidden,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name="msmg",
      )(normalised, mask)
    else:
      new_mask = mask
    update = residual32
    if self.use_transform:
      correction = GLT(
        self.features,
        self.swin_depth,
        self.num_heads,
        self.glt_window,
        self.mlp_ratio,
        self.cpb_hidden,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name="glt",
      )(normalised)
      alpha = self.param(
        "transform_scale",
        nn.initializers.constant(self.transform_scale_init),
        (self.features,),
        self.param_dtype,
      )
      update = update + scale * (alpha.astype(jnp.float32) * correction.astype(jnp.float32))
    if anchored:
      offset = (f - f2).astype(jnp.float32)
      return f2 + (new_mask * (offset + update)).astype(f.dtype), new_mask
    if self.use_mask:
      update = new_mask * update
    return f + update.astype(f.dtype), new_mask


class _FusionNetwork(nn.Module):
  """Fields and input handling shared by FRUFN and EFRUFN."""

  width: int = 32  # Channels of the feature space and every block (paper §4.1.1).
  variant: str = "full"  # Ablation variant (paper Table 8); see the subclass.
  swin_depth: int = 2  # Swin blocks per GLT (paper: 2).
  num_heads: int = 4  # Attention heads; the paper's 6 does not divide 32.
  glt_window: int = 2  # Swin window in GLT (paper: 2).
  msmg_window: int = 4  # Swin window in MSMG's GLT (paper: 4).
  mlp_ratio: float = 4.0  # Swin MLP hidden width relative to ``width``.
  convnext_mlp_ratio: float = 4.0  # ConvNeXt MLP hidden width relative to ``width``.
  cpb_hidden: int = 512  # Hidden width of the Swin V2 position-bias MLP.
  pool_factors: Sequence[int] = (1, 2, 4, 8)  # MSMG scales (paper: pooled by 2, 4, 8; plus 1).
  inverse_hidden: int = 16  # Hidden channels of Tθ3⁻¹.
  transform_scale_init: float = 0.1  # Initial layer scale alpha of T (see UFUnit).
  # UF update rule, 'residual' (eq. 14) or 'anchored'; None: FRUFN 'residual', EFRUFN 'anchored'.
  unit_rule: Optional[str] = None
  dtype: Dtype = jnp.float32  # Compute dtype (bfloat16 for GPU/TPU training).
  param_dtype: Dtype = jnp.float32  # Parameter dtype; float32 whatever the compute dtype.
  # Reflected pixels added on every side of the sources and cropped off the output (see
  # fusionjax.models.padding): keeps the zero padding of the convolutions away from the image's own
  # border rows. Not a parameter: training uses 0, the fusion driver sets its own.
  border: int = 0

  default_rule: ClassVar[str] = "residual"  # The UF rule used when ``unit_rule`` is None.

  @property
  def multiple(self) -> int:
    """H and W are padded to a multiple of this: every window and pooling factor divides it."""
    windows = (self.glt_window, self.msmg_window)
    return padding.required_multiple(windows, self.pool_factors)

  @property
  def rule(self) -> str:
    """The UF update rule in use."""
    rule = self.unit_rule if self.unit_rule is not None else self.default_rule
    if rule not in UNIT_RULES:
      raise ValueError(f"unit_rule must be one of {UNIT_RULES} or None, got {rule!r}.")
    return rule

  def unit_kwargs(self, use_mask: bool = True, use_transform: bool = True) -> dict:
    """Returns the :class:`UFUnit` fields for this network's hyper-parameters.

    Args:
      use_mask: the unit's ``use_mask``.
      use_transform: the unit's ``use_transform``.

    Returns:
      A dict of keyword arguments for ``UFUnit``.
    """
    return dict(
      features=self.width,
      use_mask=use_mask,
      use_transform=use_transform,
      rule=self.rule,
      swin_depth=self.swin_depth,
      num_heads=self.num_heads,
      glt_window=self.glt_window,
      msmg_window=self.msmg_window,
      mlp_ratio=self.mlp_ratio,
      convnext_mlp_ratio=self.convnext_mlp_ratio,
      cpb_hidden=self.cpb_hidden,
      pool_factors=tuple(self.pool_factors),
      transform_scale_init=self.transform_scale_init,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
    )

  def _encode(self, y1: jnp.ndarray, y2: jnp.ndarray):
    """Pads the sources and applies Tθ1 and Tθ2 (features returned as float32)."""
    x1 = padding.pad_with_border(jnp.asarray(y1, jnp.float32), self.border, self.multiple)
    x2 = padding.pad_with_border(jnp.asarray(y2, jnp.float32), self.border, self.multiple)
    f1 = SourceTransform(
      self.width, dtype=self.dtype, param_dtype=self.param_dtype, name="source1"
    )(x1)
    f2 = SourceTransform(
      self.width, dtype=self.dtype, param_dtype=self.param_dtype, name="source2"
    )(x2)
    # The unfolding state is kept in float32: it accumulates N (or many solver) updates.
    return f1.astype(jnp.float32), f2.astype(jnp.float32)

  def _decode(self, f: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
    """Applies Tθ3⁻¹ and crops back to the input size."""
    image = InverseTransform(
      self.inverse_hidden, dtype=self.dtype, param_dtype=self.param_dtype, name="inverse"
    )(f)
    return padding.crop_to(image, height, width, offset=self.border)


def check_inputs(y1, y2) -> None:
  """Raises ValueError unless ``y1`` and ``y2`` are equal-shaped, non-empty (B, H, W, 1) arrays.

  Args:
    y1: first source luma.
    y2: second source luma.
  """
  for name, y in (("y1", y1), ("y2", y2)):
    shape = getattr(y, "shape", None)
    if shape is None:
      raise ValueError(f"{name} must be an array of shape (B, H, W, 1), got {type(y).__name__}.")
    if len(shape) != 4:
      raise ValueError(
        f"{name} must have 4 axes (B, H, W, 1), got shape {tuple(shape)}; add the batch axis "
        "with y[None] and the channel axis with y[..., None]."
      )
    if shape[-1] != 1:
      raise ValueError(
        f"{name} must have one channel (the luma Y), got shape {tuple(shape)}; convert colour "
        "images with fusionjax.color.rgb_to_ycrcb and pass the Y channel."
      )
    if min(shape) == 0:
      raise ValueError(f"{name} is empty: shape {tuple(shape)}.")
  if tuple(y1.shape) != tuple(y2.shape):
    raise ValueError(
      f"The two sources must have the same shape, got {tuple(y1.shape)} and "
      f"{tuple(y2.shape)}; register and resize them to a common size first."
    )


def _unit_step(unit: UFUnit, carry, sources):
  """Scan body: one unfolding step on the carry (F, M) with (F1, F2) broadcast."""
  f, mask = carry
  f1, f2 = sources
  return unit(f1, f, mask, f2), None


class FRUFN(_FusionNetwork):
  """Fusion rule unfolding network: N unfolding units, unrolled (paper §3.2.1).

  The N units run under ``flax.linen.scan``: the unit is compiled once whatever N is, and the N
  units' parameters are stacked along a leading axis of length N (``params['uf']``), each unit
  with its own initialisation. Backpropagation stores every step's activations, so training
  memory grows linearly with N, as in the paper's Fig. 13.

  Variants (paper Table 8):
  - ``'full'``: N units with their own parameters.
  - ``'shared'``: one unit applied N times (parameters shared, still unrolled for backprop).
  - ``'no_unfold'``: no unfolding: a single application of the fusion rule of eq. 10,
    ``F = M ⊙ F1 + (1 - M) ⊙ F2`` with ``M = G(F1 - F2, 0)`` from one MSMG, no T and no
    iteration. This reading removes exactly what unfolding adds (the iteration and the learned
    transform of eq. 13) and keeps the learned transforms of eq. 9 and the learned mask.
  - ``'no_mask'``: N units with M fixed to 1 (not in the paper's table; the same ablation as
    EFRUFN's, available for completeness).

  The last mask, cropped to the input size, is sown as ``intermediates/mask`` (not for
  ``'no_mask'``).
  """

  num_units: int = 5  # N, the number of unfolding steps (paper: 5).

  @nn.compact
  def __call__(self, y1: jnp.ndarray, y2: jnp.ndarray) -> jnp.ndarray:
    """Fuses two luma images.

    Args:
      y1: (B, H, W, 1) first source in [0, 1] (near focus / under-exposed / visible / MRI).
      y2: (B, H, W, 1) second source, same shape.

    Returns:
      (B, H, W, 1) float32 fused luma in (0, 1).
    """
    check_inputs(y1, y2)
    if self.variant not in FRUFN_VARIANTS:
      raise ValueError(f"FRUFN variant must be one of {FRUFN_VARIANTS}, got {self.variant!r}.")
    if self.num_units < 1:
      raise ValueError(f"FRUFN needs num_units >= 1, got {self.num_units}.")
    height, width = y1.shape[1], y1.shape[2]
    f1, f2 = self._encode(y1, y2)
    f = f2
    use_mask = self.variant != "no_mask"
    mask = jnp.zeros(f.shape[:3] + (1,), jnp.float32) if use_mask else None
    if self.variant == "no_unfold":
      f, mask = UFUnit(**self.unit_kwargs(use_transform=False), name="uf")(f1, f, mask, f2)
    else:
      shared = self.variant == "shared"
      steps = nn.scan(
        _unit_step,
        variable_axes={} if shared else {"params": 0},
        variable_broadcast="params" if shared else False,
        split_rngs={"params": not shared},
        in_axes=nn.broadcast,
        length=self.num_units,
      )
      (f, mask), _ = steps(UFUnit(**self.unit_kwargs(use_mask), name="uf"), (f, mask), (f1, f2))
    if use_mask and not self.is_initializing():
      self.sow("intermediates", "mask", padding.crop_to(mask, height, width, offset=self.border))
    return self._decode(f, height, width)


#: The collection EFRUFN sows its differentiable fixed-point residual into, when it is mutable.
RESIDUAL_COLLECTION = "losses"
#: The flax rng stream whose presence asks EFRUFN for the Jacobian penalty (its Hutchinson probes).
JACOBIAN_RNG = "jacobian"


def relative_residual(z_next, z) -> jnp.ndarray:
  """Mean over the batch of ``||z_next - z||^2 / (||z||^2 + eps)`` summed over the state's parts.

  ``eps`` is 1e-4 per element, so an all-zero state (the start of a solve) does not divide by zero.
  """
  num = sum(jnp.sum(jnp.square(a - b), axis=tuple(range(1, a.ndim))) for a, b in zip(z_next, z))
  den = sum(
    jnp.sum(jnp.square(b), axis=tuple(range(1, b.ndim))) + 1e-4 * (b.size // b.shape[0]) for b in z
  )
  return jnp.mean(num / den)


class EFRUFN(_FusionNetwork):
  """Efficient FRUFN: one shared unfolding unit whose fixed point is solved (paper §3.2.2).

  The unit uses the ``'anchored'`` rule by default: the fixed point of the paper's eq. 14 is
  degenerate (F* = F1 wherever the mask is non-zero, see :class:`UFUnit`); ``unit_rule=
  'residual'`` gives eq. 14, for which only the truncated solve of the paper (5 iterations) is
  meaningful.

  The solver state is written relative to F(1) = Tθ2(I2): ``z = (D, M)`` with ``F = F2 + D`` and
  ``z0 = (0, 0)``, and F2 enters the fixed-point function through ``args``. This changes neither
  the iteration nor its fixed point (``F* = F2 + D*``), but it is what lets Tθ2 learn under the
  Jacobian-free backward (paper eq. 20), which sends gradients only to the function's ``args``,
  never to the initial state: with ``z0 = F2`` Tθ2 would get no gradient at all. Here it gets
  the gradient of ``F2 + H(sg(D*); F2)``, the one-step path an unrolled network also has (and
  with the anchored rule F2 is part of the map itself).

  The state is float32 whatever the compute dtype: the solver mixes its history in that dtype.

  Variants (paper Table 8): ``'full'`` and ``'no_mask'`` (M fixed to 1; the state is D alone).

  ``init`` creates the parameters with one direct call of the unit and skips the solve (its
  output is that single step's result); ``apply`` solves.

  The mask at the fixed point is sown as ``intermediates/mask`` (not for ``'no_mask'``), and
  the solver's statistics (a ``fusionjax.deq.SolverStats`` with one entry per image) are sown
  as ``intermediates/solver_stats`` (read them from ``model.apply(..., mutable=['intermediates'])``
  with :func:`fusionjax.models.stats.find_solver_stats`).

  When the ``'losses'`` collection is mutable, the unit is applied once more at the (stopped)
  solution and :func:`relative_residual` of that step is sown as ``losses/fixed_point_residual``,
  differentiable in the parameters. Training adds it to the loss (``config.loss.fixed_point``):
  under the Jacobian-free backward nothing else keeps the map contractive, and CPU runs of the
  reduced EFRUFN without it drifted from a residual of 4e-3 after 3 iterations to 0.6-0.8 within
  100-150 steps, after which the loss rose back above its starting value (results/README.md).
  If the call also has a ``'jacobian'`` rng stream (``rngs={'jacobian': key}``), the unit's
  :func:`fusionjax.deq.jacobian_penalty` at the same stopped solution (a one-probe Hutchinson
  estimate of ``||df/dz||_F^2 / dim z``, Bai et al. 2021) is sown as ``losses/jacobian_penalty``,
  differentiable in the parameters (``config.loss.jacobian``).
  Inference leaves the collection immutable and pays nothing.
  """

  default_rule: ClassVar[str] = "anchored"  # Eq. 14's fixed point is degenerate; see UFUnit.
  # Forward solver (a fusionjax.deq option); None: Anderson with the paper's 5 iterations.
  solver: Any = None
  backward: Any = None  # Backward mode (a fusionjax.deq option); None: JFB (paper eq. 20).

  def solver_and_backward(self):
    """Returns the (solver, backward) options in use, filling in the defaults.

    Returns:
      ``self.solver`` or ``deq.Anderson(history=5, max_iter=5, tol=1e-3, implementation=
      'native')``, and ``self.backward`` or ``deq.JFB()``.
    """
    solver = self.solver
    if solver is None:
      solver = deq.Anderson(history=5, max_iter=5, tol=1e-3, implementation="native")
    return solver, (self.backward if self.backward is not None else deq.JFB())

  @nn.compact
  def __call__(self, y1: jnp.ndarray, y2: jnp.ndarray) -> jnp.ndarray:
    """Fuses two luma images.

    Args:
      y1: (B, H, W, 1) first source in [0, 1] (near focus / under-exposed / visible / MRI).
      y2: (B, H, W, 1) second source, same shape.

    Returns:
      (B, H, W, 1) float32 fused luma in (0, 1).
    """
    if self.variant not in EFRUFN_VARIANTS:
      raise ValueError(
        f"EFRUFN variant must be one of {EFRUFN_VARIANTS}, got {self.variant!r} "
        "('shared' and 'no_unfold' are FRUFN ablations)."
      )
    check_inputs(y1, y2)
    height, width = y1.shape[1], y1.shape[2]
    f1, f2 = self._encode(y1, y2)
    use_mask = self.variant != "no_mask"
    unit = UFUnit(**self.unit_kwargs(use_mask), name="uf")
    z0 = (jnp.zeros_like(f2),)
    if use_mask:
      z0 = z0 + (jnp.zeros(f2.shape[:3] + (1,), jnp.float32),)
    if self.is_initializing():
      # One direct call creates the unit's parameters. The solve is skipped: ``init`` only has
      # to create parameters, and compiling the solver loop a second time would double its cost.
      f_one, _ = unit(f1, f2, z0[1] if use_mask else None, f2)
      return self._decode(f_one, height, width)
    params = self.variables["params"]["uf"]
    # An unbound copy: the fixed-point function must take the parameters through ``args``.
    free_unit = UFUnit(**self.unit_kwargs(use_mask), parent=None)

    def step(z, args):
      unit_params, f1_, f2_ = args
      f_new, m_new = free_unit.apply(
        {"params": unit_params}, f1_, f2_ + z[0], z[1] if use_mask else None, f2_
      )
      d_new = (f_new - f2_).astype(jnp.float32)
      return (d_new, m_new.astype(jnp.float32)) if use_mask else (d_new,)

    solver, backward = self.solver_and_backward()
    # Images are independent problems: per-image stopping and stats.
    solution = deq.fixed_point(
      step, z0, (params, f1, f2), solver=solver, backward=backward, batch_axis=0
    )
    self.sow("intermediates", SOLVER_STATS, solution.stats)
    if self.is_mutable_collection(RESIDUAL_COLLECTION):
      # Training asked for the fixed-point residual as a loss term (fusionjax.train, loss.fixed_point).
      z_star = jax.lax.stop_gradient(solution.value)
      residual = relative_residual(step(z_star, (params, f1, f2)), z_star)
      self.sow(RESIDUAL_COLLECTION, "fixed_point_residual", residual)
      if self.has_rng(JACOBIAN_RNG):
        # Asked for by training only (loss.jacobian > 0): one vector-Jacobian product per probe.
        penalty = deq.jacobian_penalty(step, z_star, (params, f1, f2), self.make_rng(JACOBIAN_RNG))
        self.sow(RESIDUAL_COLLECTION, "jacobian_penalty", penalty)
    d_star = solution.value[0]
    if use_mask:
      self.sow(
        "intermediates",
        "mask",
        padding.crop_to(solution.value[1], height, width, offset=self.border),
      )
    return self._decode(f2 + d_star, height, width)
