"""Process-wide JAX/XLA settings of the command-line programs: compiler flags and compile cache.

``fusionjax fuse``, ``evaluate.py`` and ``train.py`` call :func:`configure` first thing, before JAX
creates its backends. Library users who import ``fusionjax`` in their own programs get none of
this unless they call it too. Two settings:

**XLA flags** (:data:`XLA_FLAGS`), added to the ``XLA_FLAGS`` environment variable unless it
already names the flag (a user's own value wins):

- ``--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT``: XLA:CPU hands
  single dot products and convolutions to its YNNPACK library but keeps elementwise code in its own
  fused loops. By default YNNPACK also takes over larger elementwise graphs; it then materialises
  every shifted copy of the depthwise convolution (see :mod:`fusionjax.models.ops`) as a separate
  full-size buffer, which costs time and temporary memory. Only the CPU backend
  reads the flag. ``python benchmarks/speed.py`` measures EFRUFN with and without it.

**Persistent compilation cache**: compiled XLA programs are kept on disk, so a second run with
the same shapes (the same image size in ``fusionjax fuse``, the same stage config in ``train.py``)
loads them instead of compiling again. The folder is ``$FUSIONJAX_CACHE_DIR`` if set, else
``$XDG_CACHE_HOME/fusionjax/jax`` (``~/.cache/fusionjax/jax``); ``FUSIONJAX_CACHE_DIR=off`` (or
``0``, ``none``, empty) disables it. Entries are keyed by the program, the JAX version and the
device, so a stale entry is never used; delete the folder to reclaim the space.
"""

from __future__ import annotations

import os
from pathlib import Path

#: XLA options set by :func:`configure` (see the module docstring for why); the same can be passed
#: to one compilation as ``jax.jit(f).lower(...).compile(compiler_options=COMPILER_OPTIONS)``.
COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}

#: :data:`COMPILER_OPTIONS` as ``XLA_FLAGS`` entries.
XLA_FLAGS = tuple(f"--{name}={value}" for name, value in COMPILER_OPTIONS.items())

#: Environment variable naming the compilation-cache folder (or disabling the cache).
CACHE_ENV = "FUSIONJAX_CACHE_DIR"

_DISABLED = ("", "0", "off", "none", "false", "no")


def xla_flags(current: str | None = None) -> str:
  """Returns ``current`` (default ``$XLA_FLAGS``) with every flag of :data:`XLA_FLAGS` it lacks.

  Args:
    current: an ``XLA_FLAGS`` value; a flag whose name already appears in it is left as it is.

  Returns:
    The combined flag string.
  """
  current = os.environ.get("XLA_FLAGS", "") if current is None else current
  parts = current.split()
  for flag in XLA_FLAGS:
    name = flag.split("=", 1)[0]
    if not any(p.split("=", 1)[0] == name for p in parts):
      parts.append(flag)
  return " ".join(parts)


def cache_dir() -> Path | None:
  """The persistent compilation-cache folder, or None when ``$FUSIONJAX_CACHE_DIR`` disables it."""
  value = os.environ.get(CACHE_ENV)
  if value is not None:
    return None if value.strip().lower() in _DISABLED else Path(value).expanduser()
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return Path(base) / "fusionjax" / "jax"


def configure() -> Path | None:
  """Sets the XLA flags and turns on the persistent compilation cache (see the module docstring).

  Call it before the first JAX computation: XLA reads its flags when it creates a backend. Calling
  it again is harmless.

  Returns:
    The cache folder in use, or None when disabled or not writable.
  """
  os.environ["XLA_FLAGS"] = xla_flags()
  import jax  # Deferred: the flags above must be in place before JAX starts a backend.

  folder = cache_dir()
  if folder is not None:
    try:
      folder.mkdir(parents=True, exist_ok=True)
    except OSError:
      folder = None  # A read-only home: run without the cache rather than fail.
  if folder is None:
    return None
  jax.config.update("jax_compilation_cache_dir", str(folder))
  # Cache every program that took noticeable time to compile; the default (1 s) would skip the
  # small colour and solver programs that are recompiled on every run otherwise.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return folder
