"""Multi-process runs: the config fields and the call to ``jax.distributed.initialize``.

Every process of a run executes the same ``train.py`` command with its own ``--config.process_id``
(``docs/multihost.md``). This module imports nothing of fusionjax beyond itself, because JAX's
distributed runtime must start before anything touches a JAX device, and importing the training
code does (``fusionjax.losses`` builds arrays at import): ``train.py`` calls :func:`initialize`
before it imports :mod:`fusionjax.train.loop`; ``train_and_evaluate`` calls it again, which is
then a no-op.
"""

from __future__ import annotations

import jax
import ml_collections

#: The config fields of a multi-process run started by hand (``jax.distributed.initialize``'s arguments).
DISTRIBUTED_FIELDS = ("coordinator_address", "num_processes", "process_id")


def distributed_options(config: ml_collections.ConfigDict) -> dict | None:
  """The arguments of ``jax.distributed.initialize`` for this run, or None for a single-process run.

  ``--config.coordinator_address=HOST:PORT --config.num_processes=N --config.process_id=I`` (all
  three) start a multi-process run by hand, from a SLURM script or any launcher;
  ``--config.distributed=True`` without them lets JAX detect the cluster (Cloud TPU, SLURM, ...),
  which returns ``{}``.

  Raises:
    ValueError: only some of the three fields are set, or one is out of range (naming the flag).
  """
  given = {name: config.get(name) for name in DISTRIBUTED_FIELDS}
  if all(value is None for value in given.values()):
    return {} if config.get("distributed", False) else None
  missing = [name for name, value in given.items() if value is None]
  if missing:
    raise ValueError(
      f"{', '.join('--config.' + name for name in missing)} not set: a multi-process run started by hand needs "
      "all three of --config.coordinator_address=HOST:PORT, --config.num_processes=N and --config.process_id=I "
      "(or none of them and --config.distributed=True, to let JAX detect the cluster)."
    )
  address = str(given["coordinator_address"])
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ValueError(
      f"--config.coordinator_address={address!r} is not HOST:PORT; give process 0's host and a "
      "free port, e.g. --config.coordinator_address=10.0.0.1:12355."
    )
  count, index = given["num_processes"], given["process_id"]
  if not isinstance(count, int) or isinstance(count, bool) or count < 1:
    raise ValueError(
      f"--config.num_processes must be a positive integer (how many processes the run has), "
      f"got {count!r}."
    )
  if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
    raise ValueError(
      f"--config.process_id must be in 0..{count - 1} (this process's rank among "
      f"--config.num_processes={count}), got {index!r}."
    )
  return {"coordinator_address": address, "num_processes": count, "process_id": index}


def initialize(config: ml_collections.ConfigDict) -> None:
  """Calls ``jax.distributed.initialize`` with :func:`distributed_options` (once per process).

  Raises:
    ValueError: a bad multi-process field (see :func:`distributed_options`).
    RuntimeError: JAX started its devices before (see the module docstring for the order).
  """
  options = distributed_options(config)
  if options is None or jax.distributed.is_initialized():
    return
  try:
    jax.distributed.initialize(**options)
  except RuntimeError as error:
    if "must be called before" not in str(error):
      raise
    raise RuntimeError(
      "A multi-process run must start JAX's distributed runtime before anything uses JAX devices, and "
      "importing fusionjax.train.loop already does: call fusionjax.train.distributed.initialize(config) "
      "first, as train.py does (docs/multihost.md)."
    ) from error
