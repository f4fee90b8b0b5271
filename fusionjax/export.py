"""A fusion stage as a self-contained StableHLO program (``jax.export``) that needs only ``jax`` to run.

``fusionjax export --task ivf -o ivf.jaxexport`` (or :func:`export_fusion` and :func:`save_exported`)
serialises the luma (Y-channel) fusion of a stage with its weights baked in: a function of two
``(1, H, W, 1)`` float32 luma images in [0, 1] with *symbolic* H and W (any size of at least the
network's ``multiple`` on each side, 8 for the shipped stages) that returns the fused
``(1, H, W, 1)`` luma. Inside, it pads by reflection to the network's multiple and by the border of
``fusionjax.inference.BORDER`` and crops back, exactly as inference does, so its output equals
``fusionjax fuse`` with the checkpoint (to float32
rounding; ``tests/test_workflows.py`` checks 1e-5 on two sizes). Loading it needs no Flax, Optax or
Orbax::

  import jax, numpy as np
  fuse = jax.export.deserialize(open("ivf.jaxexport", "rb").read())
  y1 = np.random.rand(1, 120, 160, 1).astype(np.float32)  # visible luma, [0, 1]
  y2 = np.random.rand(1, 120, 160, 1).astype(np.float32)  # infrared luma
  fused = np.asarray(fuse.call(y1, y2))[0, ..., 0]         # (120, 160), compiled for this size

``fusionjax fuse ... --exported ivf.jaxexport`` runs the same file: it splits colour into luma and
chroma, tiles large images, and rebuilds colour with the rule-based chroma (the program holds no
ColorNet: the MEIF stage's ColorNet colours of ``fusionjax fuse --task meif`` are not reproduced).

How the symbolic sizes get through the network: every shape the network derives from H and W is
symbolic arithmetic that ``jax.export`` follows; the attention mask of the shifted Swin windows is
built with ``jax.numpy`` when the size is symbolic (:func:`fusionjax.models.swin.shifted_window_mask`).
The stage's task, its ``multiple`` and whether it had a ColorNet are recorded in the program's name
(``Exported.fun_name``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from fusionjax import color
from fusionjax import imageio
from fusionjax import inference
from fusionjax import tiling

#: Suffix of exported fusion programs.
SUFFIX = ".jaxexport"

# Program name: fusionjax_luma_<task>_m<multiple>[_colornet].
_NAME = re.compile(r"^fusionjax_luma_(?P<task>[a-z]+)_m(?P<multiple>\d+)(?P<colornet>_colornet)?$")


def program_name(task: str, multiple: int, colornet: bool) -> str:
  """The ``fun_name`` an exported stage carries (task, padding multiple, ColorNet left out)."""
  return f"fusionjax_luma_{task}_m{int(multiple)}" + ("_colornet" if colornet else "")


def export_fusion(fusion_model):
  """Exports a stage's luma fusion with symbolic height and width (see the module docstring).

  Args:
    fusion_model: a loaded :class:`fusionjax.stages.FusionModel` (its ColorNet is not exported).

  Returns:
    A ``jax.export.Exported`` taking two float32 ``(1, H, W, 1)`` lumas, H and W >= the network's
    ``multiple``, and returning the fused ``(1, H, W, 1)`` luma.

  Raises:
    ValueError: the network cannot be traced with symbolic sizes (the message says why).
  """
  import jax
  import jax.numpy as jnp
  from jax import export

  model = fusion_model.model
  multiple = int(getattr(model, "multiple", 1) or 1)
  border = getattr(inference.fusion_network(fusion_model), "border", 0)  # As inference fuses.
  variables = fusion_model.variables

  def reflect(index, size):
    # Reflection without repeating the edge, as jnp.pad(mode="reflect"): -j reads j, n + j reads n - 2 - j.
    index = jnp.abs(index)
    return jnp.where(index < size, index, 2 * (size - 1) - index)

  def pad_index(size, aligned, padded):
    # The rows (or columns) the network reads, padded as fusion_network pads them in inference: the
    # image reflected to the multiple at the bottom/right (``aligned``), ``border`` reflected on every
    # side of that, and reflected again to the multiple (``padded``).
    index = jax.lax.iota(jnp.int32, padded)
    n, a = jnp.asarray(size, jnp.int32), jnp.asarray(aligned, jnp.int32)
    index = reflect(index, a + 2 * border) - border
    return reflect(reflect(index, a), n)

  def luma_fusion(y1, y2):
    height, width = y1.shape[1], y1.shape[2]
    up = lambda size: (size + multiple - 1) // multiple * multiple
    rows = pad_index(height, up(height), up(up(height) + 2 * border))
    cols = pad_index(width, up(width), up(up(width) + 2 * border))
    pad = lambda y: jnp.asarray(y, jnp.float32)[:, rows][:, :, cols]
    fused = model.apply(variables, pad(y1), pad(y2))
    return fused[:, border : border + height, border : border + width]

  luma_fusion.__name__ = program_name(
    fusion_model.task, multiple, fusion_model.colornet is not None
  )
  smallest = max(
    multiple, border + 1
  )  # Reflecting ``border`` rows needs more than ``border`` rows.
  height, width = export.symbolic_shape(
    "H, W", constraints=(f"H >= {smallest}", f"W >= {smallest}")
  )
  spec = jax.ShapeDtypeStruct((1, height, width, 1), jnp.float32)
  try:
    return export.export(jax.jit(luma_fusion))(spec, spec)
  except (TypeError, ValueError, jax.errors.InconclusiveDimensionOperation) as error:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise ValueError(
      f"Cannot export the {fusion_model.task} network {type(model).__name__} with symbolic "
      f"sizes: {first}"
    ) from error


def save_exported(exported, path: str | os.PathLike) -> Path:
  """Writes a serialised export atomically (a failed write leaves an existing file as it was).

  Args:
    exported: from :func:`export_fusion`.
    path: the file to write (``.jaxexport`` by convention).

  Returns:
    The written path.
  """
  blob = exported.serialize()

  def write(tmp: str) -> None:
    with open(tmp, "wb") as handle:
      handle.write(blob)

  return imageio.write_atomic(path, write)


@dataclasses.dataclass
class ExportedFusion:
  """An exported stage, loaded: fuses images like :func:`fusionjax.inference.fuse_images`.

  Attributes:
    exported: the ``jax.export.Exported``.
    path: the file it came from.
    task: the stage's task ('mfif', 'meif' or 'ivf').
    multiple: the network's padding multiple (inputs need H, W >= it; tiles align on it).
    had_colornet: the checkpoint had a ColorNet, which the export leaves out.
  """

  exported: object
  path: Path
  task: str
  multiple: int
  had_colornet: bool

  def __post_init__(self):
    import jax

    self._call = jax.jit(self.exported.call)  # One compilation per input shape.
    self.seen_shapes: set = set()

  def fuse_luma(
    self,
    lumas: Sequence[np.ndarray],
    *,
    tile_size: int = tiling.DEFAULT_TILE_SIZE,
    tile_overlap: int = tiling.DEFAULT_TILE_OVERLAP,
    pad_multiple: int | None = None,
    sequence: str | None = None,
  ) -> tuple[np.ndarray, bool]:
    """Fuses two or more (H, W, 1) lumas, tiled above ``tile_size``, as :func:`fusionjax.inference.fuse_luma`.

    ``sequence`` is the rule for more than two (:data:`fusionjax.inference.SEQUENCE_RULES`;
    ``None``: the task's default).

    Returns:
      ``(fused (H, W, 1) float32, whether a new input shape was compiled)``.
    """
    align = math.lcm(int(pad_multiple or 1), self.multiple)
    compiled = False

    def run(t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
      nonlocal compiled
      if t1.shape not in self.seen_shapes:
        self.seen_shapes.add(t1.shape)
        compiled = True
      return np.asarray(self._call(t1[None], t2[None]))[0]

    def fuse_pair(first: np.ndarray, second: np.ndarray, _) -> np.ndarray:
      fused = tiling.tiled_apply(
        run, [first, second], tile_size=tile_size, overlap=tile_overlap, align=align
      )
      return np.clip(fused, 0.0, 1.0)

    rule = inference.check_sequence_rule(sequence, self.task)
    lumas = [np.asarray(y, np.float32) for y in lumas]
    return inference.combine_sequence(fuse_pair, lumas, rule)[0], compiled

  def fuse_images(
    self,
    images: Sequence[np.ndarray],
    *,
    tile_size: int = tiling.DEFAULT_TILE_SIZE,
    tile_overlap: int = tiling.DEFAULT_TILE_OVERLAP,
    grey: bool = False,
    pad_multiple: int | None = None,
    sequence: str | None = None,
  ) -> tuple[np.ndarray, bool]:
    """Fuses images (H, W, 1 | 3) in [0, 1]: the exported luma fusion, rule-based chroma.

    ``sequence``: the rule for more than two sources, as in :func:`fusionjax.inference.fuse_images`.

    Returns:
      ``(fused image, whether a new input shape was compiled)``; (H, W, 3) when any source is colour
      and ``grey`` is false, else (H, W, 1).
    """
    inference.check_sources(images)
    split = [color.split_luma_chroma(image) for image in images]
    luma, compiled = self.fuse_luma(
      [y for y, _ in split],
      tile_size=tile_size,
      tile_overlap=tile_overlap,
      pad_multiple=pad_multiple,
      sequence=sequence,
    )
    if grey:
      return luma, compiled
    chroma = inference.fuse_chroma_sources(None, [c for _, c in split], [], use_colornet=False)
    if chroma is None:
      return luma, compiled
    return color.merge_luma_chroma(luma, chroma), compiled


def load_exported(path: str | os.PathLike) -> ExportedFusion:
  """Reads a file written by :func:`save_exported` (``fusionjax export``).

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not a fusionjax export (or was written by an incompatible JAX).
  """
  path = Path(path)
  if path.is_dir() or not path.is_file():
    raise FileNotFoundError(
      f"Exported model {path} not found; write one with `fusionjax export --task TASK -o "
      f"{path.name if path.suffix == SUFFIX else 'model' + SUFFIX}`."
    )
  from jax import export

  try:
    exported = export.deserialize(bytearray(path.read_bytes()))
  except Exception as error:  # pylint: disable=broad-except
    # A damaged or foreign file fails inside the flatbuffer reader with varied exception types.
    raise ValueError(
      f"{path} is not a readable jax.export file ({type(error).__name__}: {error}); write it "
      "again with `fusionjax export`."
    ) from error
  match = _NAME.match(getattr(exported, "fun_name", "") or "")
  if match is None:
    raise ValueError(
      f"{path} holds the jax.export program {exported.fun_name!r}, not one written by "
      "`fusionjax export`; export the stage with `fusionjax export --task TASK -o FILE`."
    )
  return ExportedFusion(
    exported=exported,
    path=path,
    task=match["task"],
    multiple=int(match["multiple"]),
    had_colornet=bool(match["colornet"]),
  )
