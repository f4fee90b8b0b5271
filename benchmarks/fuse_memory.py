r"""Peak memory of fusing one large colour pair: the process's peak RSS and the numpy/Python peak.

  python benchmarks/fuse_memory.py [--height 3000 --width 4000] [--ckpt tiny|shipped]

``--ckpt tiny`` (default) fuses with a randomly initialised one-unit FRUFN of width 8, so the run
is quick and its memory is what the fusion path around the network holds (sources, luma and chroma,
tile accumulators, colour conversion); ``shipped`` uses the shipped MFIF stage (minutes on a CPU).
Random RGB sources; the whole-image float arrays the caller passes are counted in the RSS but not
in the traced peak, which starts after they exist.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from fusionjax import runtime  # noqa: E402


def _peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tiny_model():
  """A one-unit FRUFN of width 8 with its ``init`` parameters (seed 0), as a FusionModel."""
  import jax
  import jax.numpy as jnp

  from fusionjax import models, stages

  config = {"name": "frufn", "num_units": 1, "width": 8, "num_heads": 2, "cpb_hidden": 16}
  model = models.create_model(config)
  dummy = jnp.zeros((1, 32, 32, 1), jnp.float32)
  params = model.init(jax.random.key(0), dummy, dummy)["params"]
  return stages.FusionModel(task="mfif", model=model, params=params, metadata={"model": config})


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--height", type=int, default=3000)
  parser.add_argument("--width", type=int, default=4000)
  parser.add_argument("--ckpt", default="tiny", help="'tiny' or 'shipped'")
  args = parser.parse_args(argv)
  runtime.configure()
  from fusionjax import inference, stages

  model = tiny_model() if args.ckpt == "tiny" else stages.load_model(None, task="mfif")
  rng = np.random.default_rng(0)
  sources = [rng.random((args.height, args.width, 3), dtype=np.float32) for _ in range(2)]
  before = _peak_rss_mib()
  tracemalloc.start()
  start = time.perf_counter()
  fused = inference.fuse_images(model, sources)
  elapsed = time.perf_counter() - start
  _, traced = tracemalloc.get_traced_memory()
  pixels = args.height * args.width
  print(
    f"{args.height}x{args.width} ({pixels / 1e6:.1f} MP), {args.ckpt}: {elapsed:.1f} s; peak RSS "
    f"{_peak_rss_mib():.0f} MiB (before fusing {before:.0f} MiB, sources "
    f"{sum(s.nbytes for s in sources) / 2**20:.0f} MiB); numpy/Python peak while fusing "
    f"{traced / 2**20:.0f} MiB ({traced / pixels:.0f} B/pixel); output {fused.shape}"
  )


if __name__ == "__main__":
  main()
