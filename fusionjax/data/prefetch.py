"""Batches of consecutive steps computed ahead by a background thread (:class:`BatchIterator`)."""

from __future__ import annotations

import queue
import threading
from typing import Callable

import numpy as np


_END = object()


def _put(out: queue.Queue, stop: threading.Event, item) -> bool:
  """Puts ``item`` unless ``stop`` is set first; polls so that a stop request is seen while blocked."""
  while not stop.is_set():
    try:
      out.put(item, timeout=0.1)
      return True
    except queue.Full:
      continue
  return False


def _produce(
  make_batch: Callable[[int], dict],
  step: int,
  end: int | None,
  out: queue.Queue,
  stop: threading.Event,
) -> None:
  # A module-level function holding no reference to the iterator, so that dropping the iterator
  # (without close) lets __del__ stop this thread.
  try:
    while not stop.is_set() and (end is None or step < end):
      if not _put(out, stop, make_batch(step)):
        return
      step += 1
    _put(out, stop, _END)
  except BaseException as error:  # pylint: disable=broad-except
    # Handed to the consumer, which re-raises it in its own thread.
    _put(out, stop, error)


class BatchIterator:
  """Iterator over consecutive steps' batches, optionally prefetched by a daemon thread.

  Errors raised while making a batch are re-raised by ``next()`` in the consumer's thread.

  Attributes:
    next_step: the step of the batch that the next ``next()`` returns.
  """

  def __init__(
    self, make_batch: Callable[[int], dict], start_step: int, prefetch: int, num_steps: int | None
  ):
    self._make_batch = make_batch
    self.next_step = start_step
    self._end = None if num_steps is None else start_step + int(num_steps)
    self._queue: queue.Queue | None = None
    self._thread: threading.Thread | None = None
    self._stop = threading.Event()
    if prefetch > 0:
      self._queue = queue.Queue(maxsize=prefetch)
      self._thread = threading.Thread(
        target=_produce,
        args=(make_batch, start_step, self._end, self._queue, self._stop),
        name="fusionjax-prefetch",
        daemon=True,
      )
      self._thread.start()

  def __iter__(self) -> "BatchIterator":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._queue is None:
      if self._end is not None and self.next_step >= self._end:
        raise StopIteration
      batch = self._make_batch(self.next_step)
    else:
      if self._stop.is_set():
        raise StopIteration
      batch = self._queue.get()
      if batch is _END:
        self._stop.set()
        raise StopIteration
      if isinstance(batch, BaseException):
        self.close()
        raise batch
    self.next_step += 1
    return batch

  def close(self) -> None:
    """Stops the prefetch thread (further ``next()`` calls raise StopIteration)."""
    self._stop.set()
    if self._thread is not None and self._thread.is_alive():
      self._thread.join(timeout=10.0)

  def __enter__(self) -> "BatchIterator":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __del__(self):
    self._stop.set()
