"""Data parallelism: the only module that knows how a train step is spread over devices.

The step functions in :mod:`fusionjax.train.steps` are written for one device's share of the batch
and average their gradients over the named axis :data:`AXIS_NAME` with ``lax.pmean``.
:class:`DataParallel` maps them over the local devices with ``jax.pmap`` and moves pytrees between
the host and the devices.

``jax.pmap`` is in maintenance mode since JAX 0.8 (it now lowers through ``jit`` + ``shard_map``).
To move to ``jit`` with a ``NamedSharding`` over a device mesh, replace this class: keep the method
names, wrap the step in ``jax.shard_map(step, mesh, in_specs=(P(), P(AXIS_NAME), P()),
out_specs=(P(), P()))`` under ``jit``, and make ``replicate``/``shard`` place arrays with
``jax.device_put(x, NamedSharding(mesh, P()))`` and ``P(AXIS_NAME)`` (without the leading
device axis that pmap needs). Nothing outside this module
needs to change.

Multi-host runs (``config.distributed``, after ``jax.distributed.initialize()``): every host makes
its own share of each global batch (the data source is built with this process's index and count;
a batch is a pure function of the seed and the step), so hosts exchange no data; ``pmean`` then
averages over all devices of all hosts.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np

from fusionjax import data

#: Name of the device axis that the step functions reduce over with ``lax.pmean``.
AXIS_NAME = "batch"


class DataParallel:
  """Runs step functions data-parallel over this host's devices.

  Args:
    num_devices: how many local devices to use (the first ones); ``None`` uses all of them.
    devices: explicit device list (overrides ``num_devices``); used by tests to compare one device
      with several in a single process.
  """

  def __init__(self, num_devices: int | None = None, devices: Sequence[jax.Device] | None = None):
    local = jax.local_devices()
    if devices is None:
      if num_devices is not None and not 1 <= num_devices <= len(local):
        raise ValueError(f"num_devices={num_devices} but this host has {len(local)} device(s) "
                         f"({local[0].platform}); set config.num_devices to at most {len(local)} or to None.")
      devices = local[:num_devices] if num_devices else local
    self.devices = list(devices)
    # One mesh axis over the devices; its leading-axis sharding is the layout pmap expects, so
    # inputs placed with it are not copied again at each call.
    mesh = jax.sharding.Mesh(np.asarray(self.devices), (AXIS_NAME,))
    self._sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS_NAME))

  @property
  def num_devices(self) -> int:
    """Number of devices on this host that the step runs on."""
    return len(self.devices)

  @property
  def num_global_devices(self) -> int:
    """Devices over all hosts (equal to :attr:`num_devices` on a single host)."""
    return self.num_devices * jax.process_count()

  def check_batch_size(self, global_batch_size: int) -> None:
    """Raises ValueError unless the global batch splits evenly over all devices of all hosts."""
    if global_batch_size % self.num_global_devices:
      raise ValueError(
          f"Batch size {global_batch_size} does not split over {self.num_global_devices} device(s); "
          f"set --config.data.batch_size to a multiple of {self.num_global_devices}.")

  def shard(self, batch: dict[str, np.ndarray]) -> Any:
    """Splits a host batch (B, ...) into (num_devices, B / num_devices, ...), one slice per device."""
    return jax.device_put(data.shard_batch(batch, self.num_devices), self._sharding)

  def replicate(self, tree: Any) -> Any:
    """Copies a pytree onto every device (a leading device axis is added)."""
    stack = lambda x: np.broadcast_to(np.asarray(x)[None], (self.num_devices,) + np.shape(x))
    return jax.device_put(jax.tree.map(stack, tree), self._sharding)

  def unreplicate(self, tree: Any) -> Any:
    """The first replica of a replicated pytree, as host numpy arrays."""
    return jax.device_get(jax.tree.map(lambda x: x[0], tree))

  def compile_step(self, step_fn: Callable, *, donate_state: bool = True) -> Callable:
    """Maps ``step_fn(state, batch, *frozen)`` over the devices.

    Every argument carries a leading device axis: the state and frozen inputs (such as a teacher's
    parameters) as replicas, the batch as shards.

    Args:
      step_fn: a pure step that reduces over :data:`AXIS_NAME`.
      donate_state: let XLA reuse the input state's buffers for the output state.

    Returns:
      The device-parallel step, same signature.
    """
    return jax.pmap(step_fn, axis_name=AXIS_NAME, devices=self.devices,
                    donate_argnums=(0,) if donate_state else ())

