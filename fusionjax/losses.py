"""Training losses of the sequential gradient-transfer framework (paper §3.1, eq. 1–8).

All images are NHWC, shape (B, H, W, C), with values in [0, 1]; the fusion losses act on the Y channel
(C = 1) and the colour loss on CrCb (C = 2). Every function returns a float32 scalar (the mean over the
batch), and computes in float32 whatever the input dtype, so a bfloat16 network still gets float32 loss
arithmetic.

Conventions the paper leaves open, fixed here:

* ``‖·‖₁`` is the *mean* absolute value over pixels and batch, not the sum. Sums grow with the patch
  and batch size, which would tie λ, β1, β2 to the crop size; with means the weights are scale-free and
  the same config works for any patch.
* ``∇`` is the Sobel operator (paper footnote 2) as ``|Gx| + |Gy|`` with the unnormalised 3×3 kernels
  ([-1 0 1; -2 0 2; -1 0 1] and its transpose). This is the form of SwinFusion's ``Sobelxy`` (the IVF
  loss the paper adopts, ref. [1]). The magnitude ``sqrt(Gx² + Gy²)`` has an infinite derivative
  (NaN under autodiff) wherever the image is flat, which crops of sky or background hit; ``abs`` has a
  bounded one. On [0, 1] images the value lies in [0, 8].
* Sobel borders use edge replication. Zero padding would put a spurious edge of height "pixel value"
  round every crop, which eq. (6) and eq. (3) would then try to match; replication gives a flat border.
* SSIM is dm-pix's ``pix.ssim`` (Gaussian window 11, σ 1.5, K1 0.01, K2 0.03, ``max_val`` 1, valid
  region), the standard Wang et al. (2004) definition the paper cites ([68]). Crops must therefore be at
  least 11 pixels on each side.
"""

from __future__ import annotations

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

# A numpy constant: importing this module must not start JAX (jax.distributed.initialize comes first).
_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=np.float32)
_SSIM_WINDOW = 11


def _as_float32_nhwc(x: jax.Array, name: str) -> jax.Array:
  x = jnp.asarray(x)
  if x.ndim != 4:
    raise ValueError(
      f"{name} must be an NHWC batch (B, H, W, C); got shape {x.shape}. Add a batch axis with x[None]."
    )
  return x.astype(jnp.float32)


def _check_same_shape(a: jax.Array, b: jax.Array, names: str) -> None:
  if a.shape != b.shape:
    raise ValueError(f"{names} must have the same shape; got {a.shape} and {b.shape}.")


def sobel_gradient(image: jax.Array) -> jax.Array:
  """Sobel gradient ``|Gx| + |Gy|`` of each channel (the ∇ of paper eq. 3 and 6).

  Args:
    image: (B, H, W, C) array.

  Returns:
    (B, H, W, C) float32 array, non-negative, at most 8 for inputs in [0, 1].
  """
  image = _as_float32_nhwc(image, "image")
  padded = jnp.pad(image, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  channels = image.shape[-1]
  # Depthwise convolution: one Sobel pair per channel, no mixing between channels.
  kernel_x = jnp.tile(_SOBEL_X[:, :, None, None], (1, 1, 1, channels))  # (3, 3, 1, C)
  kernel_y = jnp.tile(_SOBEL_X.T[:, :, None, None], (1, 1, 1, channels))
  conv = lambda k: jax.lax.conv_general_dilated(
    padded,
    k,
    window_strides=(1, 1),
    padding="VALID",
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=channels,
    precision=jax.lax.Precision.HIGHEST,
  )
  return jnp.abs(conv(kernel_x)) + jnp.abs(conv(kernel_y))


def ssim(a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean SSIM of two batches in [0, 1] (dm-pix, max_val 1).

  Args:
    a: (B, H, W, C) array, H and W at least 11.
    b: array of the same shape.

  Returns:
    Scalar: SSIM averaged over the valid region, channels and batch.
  """
  a = _as_float32_nhwc(a, "a")
  b = _as_float32_nhwc(b, "b")
  _check_same_shape(a, b, "ssim inputs")
  if min(a.shape[1:3]) < _SSIM_WINDOW:
    raise ValueError(
      f"SSIM uses an {_SSIM_WINDOW}x{_SSIM_WINDOW} window; got spatial size {a.shape[1:3]}. "
      f"Use crops of at least {_SSIM_WINDOW} pixels (config.data.patch_size)."
    )
  return jnp.mean(pix.ssim(a, b, max_val=1.0))


def ssim_loss(fused: jax.Array, reference: jax.Array) -> jax.Array:
  """Reconstruction loss ``1 − SSIM(fused, reference)`` (paper eq. 2; also stage 2's L_recon).

  Args:
    fused: (B, H, W, 1) network output.
    reference: (B, H, W, 1) ground truth (all-in-focus or HDR Y channel).

  Returns:
    Scalar in [0, 2]; 0 when the two are identical.
  """
  return 1.0 - ssim(fused, reference)


def gradient_transfer_loss(student: jax.Array, teacher: jax.Array) -> jax.Array:
  """Gradient-transfer loss ``‖max(∇teacher − ∇student, 0)‖₁`` (paper eq. 3), as a mean.

  Only pixels where the teacher's fusion has the stronger Sobel gradient contribute, so the student
  is pulled towards the teacher's structure there and is free elsewhere.

  Args:
    student: (B, H, W, 1) fusion of the model being trained.
    teacher: (B, H, W, 1) fusion of the frozen previous-stage model on the same inputs. It is put under
      ``stop_gradient`` here too, so no gradient can reach the teacher whatever the caller does.

  Returns:
    Scalar >= 0.
  """
  student = _as_float32_nhwc(student, "student")
  teacher = jax.lax.stop_gradient(_as_float32_nhwc(teacher, "teacher"))
  _check_same_shape(student, teacher, "student and teacher fusions")
  return jnp.mean(jnp.maximum(sobel_gradient(teacher) - sobel_gradient(student), 0.0))


def _ivf_inputs(fused, visible, infrared):
  """Casts the three IVF loss inputs to float32 NHWC and checks that their shapes agree."""
  fused = _as_float32_nhwc(fused, "fused")
  visible = _as_float32_nhwc(visible, "visible")
  infrared = _as_float32_nhwc(infrared, "infrared")
  _check_same_shape(fused, visible, "fused and visible")
  _check_same_shape(fused, infrared, "fused and infrared")
  return fused, visible, infrared


def intensity_loss(fused: jax.Array, visible: jax.Array, infrared: jax.Array) -> jax.Array:
  """IVF intensity loss ``‖f − max(vis, ir)‖₁`` (paper eq. 5), as a mean.

  Args:
    fused: (B, H, W, 1) fusion.
    visible: (B, H, W, 1) visible Y channel.
    infrared: (B, H, W, 1) infrared image.

  Returns:
    Scalar >= 0.
  """
  fused, visible, infrared = _ivf_inputs(fused, visible, infrared)
  return jnp.mean(jnp.abs(fused - jnp.maximum(visible, infrared)))


def texture_loss(fused: jax.Array, visible: jax.Array, infrared: jax.Array) -> jax.Array:
  """IVF texture loss ``‖∇f − max(∇vis, ∇ir)‖₁`` (paper eq. 6), as a mean.

  Args:
    fused: (B, H, W, 1) fusion.
    visible: (B, H, W, 1) visible Y channel.
    infrared: (B, H, W, 1) infrared image.

  Returns:
    Scalar >= 0.
  """
  fused, visible, infrared = _ivf_inputs(fused, visible, infrared)
  target = jnp.maximum(sobel_gradient(visible), sobel_gradient(infrared))
  return jnp.mean(jnp.abs(sobel_gradient(fused) - target))


def structure_loss(fused: jax.Array, visible: jax.Array, infrared: jax.Array) -> jax.Array:
  """IVF structure loss ``2 − SSIM(f, vis) − SSIM(f, ir)`` (paper eq. 7).

  Args:
    fused: (B, H, W, 1) fusion.
    visible: (B, H, W, 1) visible Y channel.
    infrared: (B, H, W, 1) infrared image.

  Returns:
    Scalar in [0, 4].
  """
  return 2.0 - ssim(fused, visible) - ssim(fused, infrared)


def ivf_reconstruction_loss(
  fused: jax.Array, visible: jax.Array, infrared: jax.Array, *, beta1: float, beta2: float
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Stage-3 reconstruction loss ``L_int + β1·L_text + β2·L_stru`` (paper eq. 4).

  Args:
    fused: (B, H, W, 1) fusion.
    visible: (B, H, W, 1) visible Y channel.
    infrared: (B, H, W, 1) infrared image.
    beta1: weight of the texture term.
    beta2: weight of the structure term.

  Returns:
    ``(total, terms)`` where ``terms`` holds the unweighted ``intensity``, ``texture`` and
    ``structure`` values.
  """
  terms = {
    "intensity": intensity_loss(fused, visible, infrared),
    "texture": texture_loss(fused, visible, infrared),
    "structure": structure_loss(fused, visible, infrared),
  }
  total = terms["intensity"] + beta1 * terms["texture"] + beta2 * terms["structure"]
  return total, terms


def color_loss(predicted_crcb: jax.Array, reference_crcb: jax.Array) -> jax.Array:
  """ColorNet loss ``‖f_color(...) − I_hdr^CrCb‖₁`` (paper eq. 8), as a mean.

  Args:
    predicted_crcb: (B, H, W, 2) ColorNet output.
    reference_crcb: (B, H, W, 2) reference chroma.

  Returns:
    Scalar >= 0.
  """
  predicted_crcb = _as_float32_nhwc(predicted_crcb, "predicted_crcb")
  reference_crcb = _as_float32_nhwc(reference_crcb, "reference_crcb")
  _check_same_shape(predicted_crcb, reference_crcb, "predicted and reference CrCb")
  return jnp.mean(jnp.abs(predicted_crcb - reference_crcb))
