"""Reading the solver statistics that EFRUFN sows (:class:`fusionjax.models.EFRUFN`).

EFRUFN sows the ``fusionjax.deq.SolverStats`` of its fixed-point solve (one entry per image) as
``intermediates/solver_stats``; read them back from ``model.apply(..., mutable=['intermediates'])``::

    from fusionjax.models import stats
    fused, aux = model.apply(variables, y1, y2, mutable=["intermediates"])
    found = stats.find_solver_stats(aux["intermediates"])   # a SolverStats, or None (FRUFN)
    stats.solver_stats_summary(found)                       # {"num_steps": 3.0, ...}
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

#: The name EFRUFN sows its solver statistics under, in the ``intermediates`` collection.
SOLVER_STATS = "solver_stats"


def find_solver_stats(intermediates: Any):
  """The solver statistics sown anywhere in an ``intermediates`` tree.

  Args:
    intermediates: the ``'intermediates'`` collection (or any nesting of mappings holding it).

  Returns:
    The first ``fusionjax.deq.SolverStats`` found (flax stores sown values in a tuple: its first
    entry), or None when nothing was sown (networks without a solver).
  """
  if isinstance(intermediates, Mapping):
    if SOLVER_STATS in intermediates:
      stats = intermediates[SOLVER_STATS]
      return stats[0] if isinstance(stats, (tuple, list)) and stats else stats
    for value in intermediates.values():
      found = find_solver_stats(value)
      if found is not None:
        return found
  return None


def solver_stats_summary(stats) -> dict | None:
  """The worst case over a batch of solver statistics, as plain Python numbers.

  Args:
    stats: a ``fusionjax.deq.SolverStats`` (per image), or None.

  Returns:
    ``num_steps``, ``abs_residual``, ``rel_residual`` (max over images), ``converged``, ``finite``
    (all images) and ``result`` (the worst ``fusionjax.deq.RESULTS`` code); None for None.
  """
  if stats is None:
    return None
  out = {}
  for name in ("num_steps", "abs_residual", "rel_residual", "converged", "finite", "result"):
    value = getattr(stats, name, None)
    if value is None:
      continue
    value = np.asarray(value)
    if value.dtype == bool:
      out[name] = bool(value.all())
    elif name == "result":
      out[name] = int(value.max())  # fusionjax.deq.RESULTS codes rise with severity: the worst one.
    else:
      out[name] = float(value.max())
  return out


def merge_solver_summaries(a: dict | None, b: dict | None) -> dict | None:
  """The worst of two :func:`solver_stats_summary` results (flags: all; numbers: max)."""
  if a is None or b is None:
    return a or b
  merged = dict(a)
  for name, value in b.items():
    merged[name] = (
      (merged[name] and value) if isinstance(value, bool) else max(merged.get(name, value), value)
    )
  return merged
