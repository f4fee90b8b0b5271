"""Reading EFRUFN's sown solver statistics (:mod:`fusionjax.models.stats`)."""

from __future__ import annotations

import numpy as np

from fusionjax import deq
from fusionjax.models import stats


def _stats(num_steps, rel_residual, converged):
  """A SolverStats-like record per image (only the fields the summary reads)."""
  converged = np.asarray(converged)
  return deq.SolverStats(
    num_steps=np.asarray(num_steps),
    abs_residual=np.asarray(rel_residual) * 2,
    rel_residual=np.asarray(rel_residual),
    converged=converged,
    finite=np.ones_like(converged),
    result=np.where(converged, 0, 1),
    trace=np.zeros((len(converged), 3)),
  )


def test_found_anywhere_in_the_intermediates_and_summarised_as_the_worst_image():
  sown = _stats([2, 3], [1e-4, 5e-4], [True, False])
  assert (
    stats.find_solver_stats(
      {"uf": {"mask": (np.zeros(1),)}, "solve": {stats.SOLVER_STATS: (sown,)}}
    )
    is sown
  )
  assert stats.find_solver_stats({"mask": (np.zeros(1),)}) is None
  summary = stats.solver_stats_summary(sown)
  assert summary == {
    "num_steps": 3.0,
    "abs_residual": 1e-3,
    "rel_residual": 5e-4,
    "converged": False,
    "finite": True,
    "result": 1,
  }
  assert stats.solver_stats_summary(None) is None


def test_merged_summaries_keep_the_worst_of_each():
  a = stats.solver_stats_summary(_stats([2], [1e-4], [True]))
  b = stats.solver_stats_summary(_stats([5], [1e-5], [False]))
  merged = stats.merge_solver_summaries(a, b)
  assert (
    merged["num_steps"] == 5.0 and merged["rel_residual"] == 1e-4 and merged["converged"] is False
  )
  assert stats.merge_solver_summaries(None, b) == b and stats.merge_solver_summaries(a, None) == a
