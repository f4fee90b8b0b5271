"""Data parallelism: the only module that knows how a train step is spread over devices.

The step functions in :mod:`fusionjax.train.steps` are written for one device's share of the batch
and average their gradients over the named axis :data:`AXIS_NAME` with ``lax.pmean``. Two
implementations map them over the devices, behind one interface (``shard``, ``replicate``,
``unreplicate``, ``compile_step``, ``check_batch_size``), chosen by ``--config.parallel``:

- ``pmap`` (:class:`DataParallel`): ``jax.pmap`` over the devices; every array carries a leading
  device axis (replicas of the state, one slice of the batch per device).
- ``jit`` (:class:`MeshDataParallel`): ``jax.jit`` of the step under ``jax.shard_map`` over a
  one-axis :class:`jax.sharding.Mesh` of the same devices. The batch is one global array sharded
  on :data:`AXIS_NAME`; the state (parameters, optimiser states, step, key) and the teacher's
  parameters are replicated global arrays. Each device runs the same per-shard step as under
  ``pmap`` (so a DEQ solve stops on its own shard's residual in both), and the two give the same
  parameters to float tolerance (``tests/test_train_parallel.py``). ``jax.pmap`` is in maintenance
  mode since JAX 0.8; this is the implementation JAX recommends instead.

``benchmarks/train_benchmark.py --parallel=pmap|jit`` times both; their measured step times and
the default's reason are in ``docs/multihost.md``.

Multi-process runs (``jax.distributed.initialize``, see :mod:`fusionjax.train.loop`): each process
drives its own devices (the first ``num_devices`` of them, the same number in every process) and
makes its own share of every global batch (the data source is built with this process's index and
count; a batch is a pure function of the seed and the step), so processes exchange no data;
``pmean`` averages over all devices of all processes. The global device order is process-major,
which puts process ``p``'s share at rows ``p * B / P ...`` of the global batch, as in one process.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

#: Name of the device axis that the step functions reduce over with ``lax.pmean``.
AXIS_NAME = "batch"
#: The implementations of ``--config.parallel``.
MODES = ("pmap", "jit")
#: ``--config.parallel``'s default (why: ``docs/multihost.md``, measured with ``benchmarks/train_benchmark.py``).
DEFAULT_MODE = "jit"


def shard_batch(batch: Mapping[str, np.ndarray], num_devices: int) -> dict[str, np.ndarray]:
  """Reshapes every array's leading axis B to (num_devices, B // num_devices) for ``pmap``.

  Args:
    batch: dict of arrays with the same leading size B.
    num_devices: local device count (``jax.local_device_count()``).

  Returns:
    Dict of reshaped arrays (views, no copy).

  Raises:
    ValueError: B is not divisible by ``num_devices`` or the leading sizes differ.
  """
  if not isinstance(num_devices, (int, np.integer)) or num_devices < 1:
    raise ValueError(f"num_devices must be a positive integer, got {num_devices!r}.")
  sizes = {key: np.shape(value)[0] if np.ndim(value) else None for key, value in batch.items()}
  if len(set(sizes.values())) != 1 or None in sizes.values():
    raise ValueError(f"All batch arrays need the same leading (batch) axis, got {sizes}.")
  size = next(iter(sizes.values()))
  if size % num_devices:
    raise ValueError(
      f"Batch size {size} is not divisible by {num_devices} devices; set "
      f"config.data.batch_size to a multiple of {num_devices}."
    )
  return {
    key: np.reshape(value, (num_devices, size // num_devices) + np.shape(value)[1:])
    for key, value in batch.items()
  }


def _choose_devices(
  num_devices: int | None, devices: Sequence[jax.Device] | None
) -> tuple[list[jax.Device], list[jax.Device]]:
  """(this process's devices, the devices of all processes in process-major order)."""
  if devices is not None:
    chosen = list(devices)
    return chosen, chosen
  local = jax.local_devices()
  if num_devices is not None and not 1 <= num_devices <= len(local):
    raise ValueError(
      f"num_devices={num_devices} but this host has {len(local)} device(s) "
      f"({local[0].platform}); set config.num_devices to at most {len(local)} or to None."
    )
  count = num_devices or len(local)
  if jax.process_count() == 1:
    return local[:count], local[:count]
  everywhere = [
    d for p in range(jax.process_count()) for d in jax.local_devices(process_index=p)[:count]
  ]
  return local[:count], everywhere


class _Devices:
  """The devices a step runs on, in this process and in all of them (shared by both implementations)."""

  mode = ""

  def __init__(self, num_devices: int | None = None, devices: Sequence[jax.Device] | None = None):
    self.devices, self.global_devices = _choose_devices(num_devices, devices)

  @property
  def num_devices(self) -> int:
    """Number of this process's devices that the step runs on."""
    return len(self.devices)

  @property
  def num_global_devices(self) -> int:
    """Devices over all processes (equal to :attr:`num_devices` in a single process)."""
    return len(self.global_devices)

  def check_batch_size(self, global_batch_size: int) -> None:
    """Raises ValueError unless the global batch splits evenly over all devices of all processes."""
    if global_batch_size % self.num_global_devices:
      raise ValueError(
        f"Batch size {global_batch_size} does not split over {self.num_global_devices} device(s); "
        f"set --config.data.batch_size to a multiple of {self.num_global_devices}."
      )


class DataParallel(_Devices):
  """Runs step functions data-parallel over devices with ``jax.pmap`` (``--config.parallel=pmap``).

  Args:
    num_devices: how many of this process's devices to use (the first ones); ``None`` uses all.
    devices: explicit device list of a single-process run (overrides ``num_devices``); used by
      tests to compare one device with several in a single process.
  """

  mode = "pmap"

  def __init__(self, num_devices: int | None = None, devices: Sequence[jax.Device] | None = None):
    super().__init__(num_devices, devices)
    # One mesh axis over this process's devices; its leading-axis sharding is the layout pmap
    # expects, so inputs placed with it are not copied again at each call.
    mesh = jax.sharding.Mesh(np.asarray(self.devices), (AXIS_NAME,))
    self._sharding = NamedSharding(mesh, P(AXIS_NAME))

  def shard(self, batch: dict[str, np.ndarray]) -> Any:
    """Splits this process's batch (B, ...) into (num_devices, B / num_devices, ...), one slice per device."""
    return jax.device_put(shard_batch(batch, self.num_devices), self._sharding)

  def replicate(self, tree: Any) -> Any:
    """Copies a pytree onto every device (a leading device axis is added)."""
    stack = lambda x: np.broadcast_to(np.asarray(x)[None], (self.num_devices,) + np.shape(x))
    return jax.device_put(jax.tree.map(stack, tree), self._sharding)

  def unreplicate(self, tree: Any) -> Any:
    """The first replica of a replicated pytree (state or step metrics), as host numpy arrays."""
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
    # pmap takes the devices of every process (the same list everywhere) in a multi-process run.
    return jax.pmap(
      step_fn,
      axis_name=AXIS_NAME,
      devices=self.global_devices,
      donate_argnums=(0,) if donate_state else (),
    )


class MeshDataParallel(_Devices):
  """Runs step functions with ``jax.jit`` over a device mesh (``--config.parallel=jit``).

  The same interface as :class:`DataParallel`, without the leading device axis: :meth:`shard`
  makes one global batch array sharded on :data:`AXIS_NAME` (each process passes its own rows),
  :meth:`replicate` global arrays replicated on every device, and :meth:`compile_step` runs the
  per-shard step under ``jax.shard_map``.

  Args:
    num_devices: how many of this process's devices to use (the first ones); ``None`` uses all.
    devices: explicit device list of a single-process run (overrides ``num_devices``).
  """

  mode = "jit"

  def __init__(self, num_devices: int | None = None, devices: Sequence[jax.Device] | None = None):
    super().__init__(num_devices, devices)
    # Process-major device order: process p's rows of the global batch land on its own devices.
    self.mesh = jax.sharding.Mesh(np.asarray(self.global_devices), (AXIS_NAME,))
    self._replicated = NamedSharding(self.mesh, P())
    self._batch_sharding = NamedSharding(self.mesh, P(AXIS_NAME))

  def shard(self, batch: dict[str, np.ndarray]) -> Any:
    """One global array per key from this process's rows (B, ...), split over the devices."""
    shard_batch(batch, self.num_devices)  # The same checks (one leading size, divisible) as pmap's.
    return {
      key: jax.make_array_from_process_local_data(self._batch_sharding, np.asarray(value))
      for key, value in batch.items()
    }

  def replicate(self, tree: Any) -> Any:
    """Places a host pytree (the same on every process) on every device of the mesh."""

    def place(x):
      x = np.asarray(x)
      return jax.make_array_from_callback(x.shape, self._replicated, lambda index: x[index])

    return jax.tree.map(place, tree)

  def unreplicate(self, tree: Any) -> Any:
    """A replicated pytree as host numpy arrays (copies: the state's buffers are donated next step)."""
    return jax.tree.map(lambda x: np.array(x.addressable_data(0)), tree)

  def compile_step(self, step_fn: Callable, *, donate_state: bool = True) -> Callable:
    """``jax.jit`` of ``step_fn(state, batch, *frozen)`` mapped over the mesh with ``jax.shard_map``.

    Args:
      step_fn: a pure step that reduces over :data:`AXIS_NAME`.
      donate_state: let XLA reuse the input state's buffers for the output state.

    Returns:
      The step on global arrays, same signature: the state and frozen inputs replicated, the
      batch sharded on :data:`AXIS_NAME`; the new state and the metrics come back replicated.
    """
    mesh = self.mesh

    def sharded_step(state, batch, *frozen):
      in_specs = (P(), P(AXIS_NAME)) + (P(),) * len(frozen)
      # check_vma=False, as pmap runs its body: the networks' scans (flax nn.scan) start their carry
      # from replicated values and end it batch-dependent, which the varying-axis type check rejects.
      # The outputs are replicated because the step averages gradients and metrics with pmean.
      return jax.shard_map(step_fn, mesh=mesh, in_specs=in_specs, out_specs=P(), check_vma=False)(
        state, batch, *frozen
      )

    return jax.jit(sharded_step, donate_argnums=(0,) if donate_state else ())


def make_data_parallel(
  mode: str = "pmap", num_devices: int | None = None, devices: Sequence[jax.Device] | None = None
) -> DataParallel | MeshDataParallel:
  """The implementation of ``--config.parallel=mode`` over the chosen devices.

  Args:
    mode: 'pmap' (:class:`DataParallel`) or 'jit' (:class:`MeshDataParallel`).
    num_devices: how many of this process's devices to use; ``None`` uses all.
    devices: explicit device list of a single-process run (overrides ``num_devices``).

  Raises:
    ValueError: an unknown mode, or more devices than this process has.
  """
  if mode not in MODES:
    raise ValueError(f"--config.parallel={mode!r}; use one of {', '.join(MODES)}.")
  return (MeshDataParallel if mode == "jit" else DataParallel)(num_devices, devices)
