"""What a network costs: its parameters, and the FLOPs of its forward pass by XLA's cost analysis.

The one parameter counter and the one FLOP counter of the repository: evaluation reports, the
benchmarks (``benchmarks/speed.py``, ``benchmarks/models_benchmark.py``) and
:attr:`fusionjax.stages.FusionModel.num_params` use them. Nothing is executed: FLOPs come from the
lowered program (compiled only when the lowering offers no analysis).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from fusionjax import inference
from fusionjax import tiling


def count_parameters(tree: Any) -> int:
  """Number of scalars in a parameter pytree (0 for ``None``)."""
  if tree is None:
    return 0
  import jax

  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))


def forward_cost(
  fusion_model,
  height: int,
  width: int,
  pad_multiple: int | None = None,
  while_trips: float | None = None,
) -> dict:
  """FLOPs of the jitted forward pass at one input size, by XLA's cost analysis (nothing is executed).

  The input is padded to the size inference runs at. XLA's ``HloCostAnalysis`` counts the body of a
  loop once, whatever its trip count; FRUFN runs its N units under ``scan`` and EFRUFN its solver
  in a ``while`` loop, so that raw count (``flops_xla``) covers one unit. ``flops`` corrects it:
  each loop body is lowered on its own, costed by XLA, and counted ``trips`` times (``scan``: its
  length; ``while``: ``while_trips``, e.g. the solver's mean number of iterations, or once when not
  given), recursively for nested loops.

  Args:
    fusion_model: the model.
    height: image height.
    width: image width.
    pad_multiple: as in :func:`fusionjax.inference.fuse_images`.
    while_trips: iterations to count for each ``while`` loop (None: once, as XLA does).

  Returns:
    ``{"flops", "flops_xla", "bytes_accessed", "input_size": [h, w], "loops": [{"kind", "trips",
    "body_flops"}], "while_loops": bool, "while_trips"}`` (and ``"colornet_flops"`` when the model
    has a ColorNet).
  """
  import jax
  import jax.numpy as jnp

  align = inference.network_align(fusion_model, pad_multiple)
  h, w = tiling.round_up(height, align), tiling.round_up(width, align)
  y = jax.ShapeDtypeStruct((1, h, w, 1), jnp.float32)
  variables = fusion_model.variables
  model = fusion_model.model
  closed = jax.make_jaxpr(lambda v, a, b: model.apply(v, a, b))(variables, y, y)
  loops: list = []
  flops, xla = _loop_aware_flops(closed, while_trips, loops)
  result = {
    "flops": flops,
    "flops_xla": xla["flops"],
    "bytes_accessed": xla.get("bytes accessed"),
    "input_size": [int(h), int(w)],
    "loops": loops,
    "while_loops": any(loop["kind"] == "while" for loop in loops),
    "while_trips": while_trips,
  }
  if fusion_model.colornet is not None:
    ch, cw = tiling.round_up(height, pad_multiple or 1), tiling.round_up(width, pad_multiple or 1)
    c = jax.ShapeDtypeStruct((1, ch, cw, 2), jnp.float32)
    yc = jax.ShapeDtypeStruct((1, ch, cw, 1), jnp.float32)
    colornet = fusion_model.colornet
    apply = jax.jit(lambda v, c1, c2, y: colornet.apply(v, c1, c2, y))
    lowered = apply.lower(fusion_model.colornet_variables, c, c, yc)
    result["colornet_flops"] = xla_cost(lowered).get("flops")
  return result


def _jaxpr_cost(closed) -> dict:
  """XLA's cost analysis of a closed jaxpr lowered on its own (loop bodies counted once)."""
  import jax
  from jax.extend import core as jex_core

  args = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in closed.in_avals]
  cost = xla_cost(jax.jit(jex_core.jaxpr_as_fun(closed)).lower(*args))
  cost.setdefault("flops", 0.0)
  return cost


def _loops_in(jaxpr):
  """Yields ``(kind, body, trips_or_None)`` for the loops reachable without entering another loop."""
  from jax.extend import core as jex_core

  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "scan":
      yield "scan", eqn.params["jaxpr"], int(eqn.params["length"])
    elif name == "while":
      yield "while", eqn.params["body_jaxpr"], None
    elif name != "cond":
      # Calls (pjit, custom_vjp/jvp, remat, ...) are inlined by XLA: look for loops inside.
      for sub in jex_core.jaxprs_in_params(eqn.params):
        yield from _loops_in(sub)


def _loop_aware_flops(closed, while_trips: float | None, record: list) -> tuple[float, dict]:
  """``C(J) = X(J) + sum over loops (trips * C(body) - X(body))``; returns ``(C(J), XLA's cost of J)``."""
  from jax.extend import core as jex_core

  xla = _jaxpr_cost(closed)
  total = xla["flops"]
  for kind, body, trips in _loops_in(closed.jaxpr):
    if not isinstance(body, jex_core.ClosedJaxpr):
      body = jex_core.ClosedJaxpr(body, ())
    count = float(trips if trips is not None else (while_trips if while_trips is not None else 1))
    body_total, body_xla = _loop_aware_flops(body, while_trips, [])
    record.append({"kind": kind, "trips": count, "body_flops": body_total})
    total += count * body_total - body_xla["flops"]
  return total, xla


def xla_cost(program) -> dict:
  """XLA's cost analysis (``flops``, ``bytes accessed``, ...) of a lowered or compiled program.

  Args:
    program: ``jax.jit(f).lower(...)`` or its ``.compile()``; a lowering is compiled only when it
      offers no analysis of its own.

  Returns:
    The numeric entries of the analysis. Loop bodies are counted once (see :func:`forward_cost`).
  """
  # The HLO-level analysis needs no XLA compilation; its FLOP count is that of the compiled
  # program, as fusion moves work without removing any.
  analysis = _cost_dict(program.cost_analysis())
  if "flops" not in analysis and hasattr(program, "compile"):
    analysis = _cost_dict(program.compile().cost_analysis())
  return analysis


def xla_flops(program) -> float:
  """FLOPs of a lowered or compiled program by :func:`xla_cost` (0 when XLA reports none)."""
  return float(xla_cost(program).get("flops", 0.0))


def _cost_dict(analysis) -> dict:
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return {k: float(v) for k, v in (analysis or {}).items() if isinstance(v, (int, float))}


def describe(fusion_model) -> dict:
  """A JSON-able description of a model: class, task, step, path and parameter counts."""
  network = count_parameters(fusion_model.params)
  colornet = (
    count_parameters(fusion_model.colornet_params) if fusion_model.colornet is not None else 0
  )
  return {
    "network": type(fusion_model.model).__name__,
    "task": fusion_model.task,
    "step": fusion_model.step,
    "path": fusion_model.path,
    "network_params": network,
    "colornet_params": colornet,
    "params": network + colornet,
    "model_config": json.loads(json.dumps(fusion_model.metadata.get("model"), default=str))
    if fusion_model.metadata
    else None,
  }
