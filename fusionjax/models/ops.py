"""Array operations with a formulation chosen per backend for speed; same results everywhere.

Some operations of the networks compile to slow code on XLA's CPU backend in their textbook form,
although the arithmetic is small. Each function here has one formulation per backend, selected
by :func:`jax.default_backend` unless ``implementation`` is given, and every formulation computes
the same function (tests compare them on CPU). The measurements behind the choices are printed by
``python benchmarks/speed.py``.

- :func:`depthwise_conv2d`: ``lax.conv_general_dilated`` with ``feature_group_count = C`` (the
  ``'xla'`` form) is what cuDNN and the TPU compiler handle well, but XLA:CPU runs it one to two
  orders of magnitude slower per FLOP than a dense convolution. The ``'shifted'`` form adds the
  K x K shifted copies of the input, each scaled by its tap, which XLA fuses into one loop; its
  custom VJP computes the input gradient the same way (taps flipped) and the kernel gradient as
  K x K sums over row blocks that stay in cache, instead of the transposed grouped convolution
  autodiff would produce.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Dtype = Any

#: The formulations of each operation, and the one each backend uses by default.
IMPLEMENTATIONS = {
  "depthwise_conv2d": ("shifted", "xla"),
}
_BACKEND_DEFAULTS = {
  "cpu": {"depthwise_conv2d": "shifted"},
  "default": {"depthwise_conv2d": "xla"},
}
_overrides: dict[str, str] = {}


def resolve(op: str, implementation: Optional[str] = None) -> str:
  """Returns the formulation of ``op`` to use.

  Args:
    op: a key of :data:`IMPLEMENTATIONS`.
    implementation: an explicit choice, or None for the innermost :func:`implementations`
      override, else the default of :func:`jax.default_backend`.

  Returns:
    One of ``IMPLEMENTATIONS[op]``.
  """
  choice = implementation or _overrides.get(op)
  if choice is None:
    defaults = _BACKEND_DEFAULTS.get(jax.default_backend(), _BACKEND_DEFAULTS["default"])
    choice = defaults[op]
  if choice not in IMPLEMENTATIONS[op]:
    raise ValueError(
      f"{op} implementation must be one of {IMPLEMENTATIONS[op]} or None, got {choice!r}."
    )
  return choice


@contextlib.contextmanager
def implementations(**choices: str) -> Iterator[None]:
  """Overrides the formulation of operations while functions are traced (tests, benchmarks).

  ``with ops.implementations(depthwise_conv2d="xla"): jax.jit(model.apply).lower(...)``. The
  choice is read at trace time: jit-compiled functions traced before keep their formulation.

  Args:
    **choices: operation name -> formulation, as in :data:`IMPLEMENTATIONS`.
  """
  for op, choice in choices.items():
    if op not in IMPLEMENTATIONS or choice not in IMPLEMENTATIONS[op]:
      raise ValueError(f"Unknown implementation {op}={choice!r}; choose from {IMPLEMENTATIONS}.")
  saved = dict(_overrides)
  _overrides.update(choices)
  try:
    yield
  finally:
    _overrides.clear()
    _overrides.update(saved)


def _check_depthwise(x, kernel) -> None:
  if x.ndim != 4 or kernel.ndim != 4:
    raise ValueError(
      f"depthwise_conv2d expects x (B, H, W, C) and kernel (K, K, 1, C), got "
      f"{x.shape} and {kernel.shape}."
    )
  kh, kw, one, channels = kernel.shape
  if one != 1 or channels != x.shape[-1] or kh % 2 == 0 or kw % 2 == 0:
    raise ValueError(
      f"depthwise_conv2d needs an odd (K, K, 1, C) kernel with C = {x.shape[-1]}, "
      f"got {kernel.shape}."
    )


def _shifted_sum(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """'SAME' depthwise cross-correlation as a sum of shifted, scaled copies of ``x``."""
  kh, kw = kernel.shape[:2]
  height, width = x.shape[1], x.shape[2]
  xp = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
  out = None
  for i in range(kh):
    for j in range(kw):
      term = xp[:, i : i + height, j : j + width, :] * kernel[i, j, 0]
      out = term if out is None else out + term
  return out


# Rows of the kernel-gradient blocks: a block of x and of the gradient (a few hundred KiB at the
# networks' sizes) stays in cache while its K x K products are summed.
_KERNEL_GRAD_BLOCK_ROWS = 8


def _kernel_gradient(x: jnp.ndarray, grad: jnp.ndarray, kh: int, kw: int) -> jnp.ndarray:
  """``dL/dkernel`` of :func:`_shifted_sum`: (kh, kw, 1, C) sums over blocks of rows."""
  batch, height, width, channels = x.shape
  rows = _KERNEL_GRAD_BLOCK_ROWS
  blocks = -(-height // rows)
  extra = blocks * rows - height  # zero gradient rows contribute nothing
  xp = jnp.pad(x, ((0, 0), (kh // 2, kh // 2 + extra), (kw // 2, kw // 2), (0, 0)))
  gp = jnp.pad(grad, ((0, 0), (0, extra), (0, 0), (0, 0)))

  def block(total, index):
    xb = lax.dynamic_slice_in_dim(xp, index * rows, rows + kh - 1, axis=1)
    gb = lax.dynamic_slice_in_dim(gp, index * rows, rows, axis=1)
    sums = jnp.stack(
      [
        jnp.sum(xb[:, i : i + rows, j : j + width, :] * gb, axis=(0, 1, 2))
        for i in range(kh)
        for j in range(kw)
      ]
    )  # (kh * kw, C)
    return total + sums.astype(total.dtype), None

  total = jnp.zeros((kh * kw, channels), jnp.promote_types(x.dtype, jnp.float32))
  total, _ = lax.scan(block, total, jnp.arange(blocks))
  return total.reshape(kh, kw, 1, channels)


@jax.custom_vjp
def _shifted_depthwise(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  return _shifted_sum(x, kernel)


def _shifted_depthwise_fwd(x, kernel):
  return _shifted_sum(x, kernel), (x, kernel)


def _shifted_depthwise_bwd(residuals, grad):
  x, kernel = residuals
  kh, kw = kernel.shape[:2]
  # The transpose of a 'SAME' correlation with an odd kernel is the correlation with the kernel
  # flipped in both spatial axes.
  grad_x = _shifted_sum(grad, kernel[::-1, ::-1]).astype(x.dtype)
  grad_kernel = _kernel_gradient(x, grad, kh, kw).astype(kernel.dtype)
  return grad_x, grad_kernel


_shifted_depthwise.defvjp(_shifted_depthwise_fwd, _shifted_depthwise_bwd)


def depthwise_conv2d(
  x: jnp.ndarray,
  kernel: jnp.ndarray,
  bias: Optional[jnp.ndarray] = None,
  *,
  implementation: Optional[str] = None,
) -> jnp.ndarray:
  """Depthwise 'SAME' 2-D cross-correlation (zero padding), as ``flax.linen.Conv`` computes it.

  Args:
    x: (B, H, W, C).
    kernel: (K, K, 1, C) with odd K, Flax's layout for ``feature_group_count = C``.
    bias: optional (C,).
    implementation: ``'shifted'`` (sum of shifted copies, custom VJP; the CPU default) or
      ``'xla'`` (a grouped ``lax.conv_general_dilated``; the default elsewhere).

  Returns:
    (B, H, W, C) in the dtype of ``x`` and ``kernel`` promoted.
  """
  _check_depthwise(x, kernel)
  implementation = resolve("depthwise_conv2d", implementation)
  dtype = jnp.promote_types(x.dtype, kernel.dtype)
  x, kernel = x.astype(dtype), kernel.astype(dtype)
  if implementation == "shifted":
    y = _shifted_depthwise(x, kernel)

  else:
    y = lax.conv_general_dilated(
      x,
      kernel,
      (1, 1),
      "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=x.shape[-1],
    )
  if bias is not None:
    y = y + bias.astype(dtype)
  return y


class DepthwiseConv(nn.Module):
  """Depthwise convolution with the parameters of ``nn.Conv(C, (K, K), feature_group_count=C)``.

  Same parameter names, shapes and initialisers (``kernel`` (K, K, 1, C), LeCun normal; ``bias``
  (C,), zeros), so checkpoints written with ``nn.Conv`` load unchanged; the computation is
  :func:`depthwise_conv2d`.
  """

  features: int  # Channels in and out.
  kernel_size: int = 7  # Spatial size K (odd).
  implementation: Optional[str] = None  # See depthwise_conv2d; None picks by backend.
  dtype: Dtype = jnp.float32  # Compute dtype.
  param_dtype: Dtype = jnp.float32  # Parameter dtype.

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """Applies the convolution.

    Args:
      x: (B, H, W, features).

    Returns:
      (B, H, W, features) in the compute dtype.
    """
    k = self.kernel_size
    kernel = self.param(
      "kernel", nn.initializers.lecun_normal(), (k, k, 1, self.features), self.param_dtype
    )
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), self.param_dtype)
    return depthwise_conv2d(
      x.astype(self.dtype),
      kernel.astype(self.dtype),
      bias.astype(self.dtype),
      implementation=self.implementation,
    )
