r"""Speed of the networks against this machine's own ceilings and against IFCNN, in one process.

Every figure is also printed as a ratio measured in the same run (to the dense 3x3 convolution's
GFLOP/s, to IFCNN's latency, to the previous formulation of the same network), because absolute
times on a shared machine move with its load while ratios taken minutes apart mostly do not.

Sections (each timing is the fastest of ``--runs`` calls after a warm-up call; compilation is timed
separately):

1. Ceilings: a dense 3x3 convolution 32 -> 32 and a matrix product 32 -> 128 at the image size
   (GFLOP/s), and the copy bandwidth of a 256 MiB array (GB/s).
2. Inference at 224x448, batch 1, float32: EFRUFN at width 32 with 5 solver iterations (the
   paper's setting), the same network in its previous formulation (grouped depthwise convolution,
   default XLA:CPU library fusion; see ``fusionjax/models/ops.py`` and ``fusionjax/runtime.py``),
   the shipped stage's size, FRUFN (N = 5) and IFCNN (``benchmarks/ifcnn.py``).
3. Components of the width-32 unit at the same size.
4. One training step of each stage (full configs: EFRUFN, batch 8, 128 px; and the ``:cpu``
   configs), with the previous formulation's step time and loss for MFIF.
5. Compilation: EFRUFN's forward compile time, and ``fusionjax fuse`` run twice as separate
   processes with an empty compilation cache (the second call loads the compiled program).
6. ``--large``: ``fusionjax fuse`` of a 4000x3000 pair (wall time and peak resident memory).

Writes ``results/speed.md`` (``--out``) and prints the same tables. Usage::

  python benchmarks/speed.py                  # everything but --large (long on a CPU)
  python benchmarks/speed.py --quick          # smaller: no FRUFN, training only MFIF full + :cpu
  python benchmarks/speed.py --large          # add the 4000x3000 fuse
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
  if str(path) not in sys.path:
    sys.path.insert(0, str(path))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from fusionjax import models, runtime, stages, tasks, weights  # noqa: E402
from fusionjax.evaluation import cost  # noqa: E402
from fusionjax.models import ops  # noqa: E402
from fusionjax.models.blocks import ConvNeXtBlock  # noqa: E402
from fusionjax.models.glt import GLT  # noqa: E402
from fusionjax.models.msmg import MSMG  # noqa: E402
from fusionjax.models.swin import SwinBlock  # noqa: E402
from fusionjax.models.unfolding import SourceTransform, UFUnit  # noqa: E402

#: The formulation of the networks before fusionjax.models.ops: grouped depthwise convolution and
#: XLA:CPU's default library fusion.
PREVIOUS = {"implementations": {"depthwise_conv2d": "xla"}, "compiler_options": {}}
CURRENT = {"implementations": {}, "compiler_options": runtime.COMPILER_OPTIONS}


class Timed:
  """A compiled function with its compile time; ``time()`` is the fastest of ``runs`` calls."""

  def __init__(self, fn, args, variant=CURRENT):
    with ops.implementations(**variant["implementations"]):
      start = time.perf_counter()
      self.compiled = jax.jit(fn).lower(*args).compile(compiler_options=variant["compiler_options"])
      self.compile_s = time.perf_counter() - start
    self.args = args
    self.flops = cost.xla_flops(self.compiled)
    memory = self.compiled.memory_analysis()
    self.temp_mib = memory.temp_size_in_bytes / 2**20 if memory is not None else float("nan")
    self.output = jax.block_until_ready(self.compiled(*args))  # warm-up
    self.times: list[float] = []

  def run(self) -> float:
    start = time.perf_counter()
    jax.block_until_ready(self.compiled(*self.args))
    self.times.append(time.perf_counter() - start)
    return self.times[-1]

  @property
  def best(self) -> float:
    return min(self.times)


def interleave(timed: list[Timed], runs: int) -> None:
  """Runs every function ``runs`` times, round-robin, so that load changes hit all alike."""
  for _ in range(runs):
    for t in timed:
      t.run()


def _rand(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).random(shape, np.float32))


def ceilings(height: int, width: int, runs: int) -> dict:
  x = _rand((1, height, width, 32))
  w3 = _rand((3, 3, 32, 32), 1)
  k = _rand((32, 128), 2)
  big = _rand((64, 1024, 1024), 3)  # 256 MiB
  conv = Timed(
    lambda x, w: lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    ),
    (x, w3),
  )
  dot = Timed(lambda x, k: x @ k, (x, k))
  copy = Timed(lambda a: a + 1.0, (big,))
  interleave([conv, dot, copy], runs)
  return {"conv": conv, "dot": dot, "copy": copy, "copy_gbs": 2 * big.nbytes / copy.best / 1e9}


def _efrufn(width: int, iterations: int, heads: int | None = None, cpb: int = 512):
  heads = heads or (4 if width % 4 == 0 and width >= 32 else 2)
  # tol = 0: always run ``iterations`` solver steps, the paper's fixed budget.
  return models.create_model(
    dict(name="efrufn", width=width, num_heads=heads, cpb_hidden=cpb, max_iter=iterations, tol=0.0)
  )


def _init(model, shape=(1, 64, 64, 1)):
  y = jnp.full(shape, 0.5, jnp.float32)
  with jax.threefry_partitionable(False):
    return jax.jit(model.init)(jax.random.PRNGKey(0), y, y)


def _nominal_flops(model, params, height, width, trips) -> float:
  fusion_model = stages.FusionModel(task="ivf", model=model, params=params["params"])
  return cost.forward_cost(fusion_model, height, width, while_trips=trips)["flops"]


def inference_section(height: int, width: int, runs: int, quick: bool) -> dict:
  y1, y2 = _rand((1, height, width, 1), 4), _rand((1, height, width, 1), 5)
  apply = lambda model: lambda p, a, b: model.apply(p, a, b)
  rows = {}
  efrufn = _efrufn(32, 5)
  p32 = _init(efrufn)
  rows["EFRUFN w32, 5 it."] = (
    Timed(apply(efrufn), (p32, y1, y2)),
    _nominal_flops(efrufn, p32, height, width, 5),
  )
  rows["EFRUFN w32, 5 it., previous formulation"] = (
    Timed(apply(efrufn), (p32, y1, y2), PREVIOUS),
    rows["EFRUFN w32, 5 it."][1],
  )
  shipped = stages.load_fusion_model(weights.shipped_checkpoint("ivf"))
  cfg = shipped.metadata["model"]
  small = _efrufn(
    int(cfg["width"]), int(cfg["max_iter"]), int(cfg["num_heads"]), int(cfg["cpb_hidden"])
  )
  ps = {"params": shipped.params}
  name = f"EFRUFN shipped size (w{cfg['width']}, {cfg['max_iter']} it.)"
  rows[name] = (
    Timed(apply(small), (ps, y1, y2)),
    _nominal_flops(small, ps, height, width, int(cfg["max_iter"])),
  )
  if not quick:
    frufn = models.create_model(dict(name="frufn", width=32, num_heads=4, num_units=5))
    pf = _init(frufn)
    rows["FRUFN w32, N = 5"] = (
      Timed(apply(frufn), (pf, y1, y2)),
      _nominal_flops(frufn, pf, height, width, None),
    )
  from ifcnn import IFCNN

  ifcnn = IFCNN()
  pi = jax.jit(ifcnn.init)(jax.random.PRNGKey(0), y1[:, :32, :32], y2[:, :32, :32])
  ifcnn_t = Timed(lambda p, a, b: ifcnn.apply(p, a, b), (pi, y1, y2))
  rows["IFCNN (Zhang et al. 2020)"] = (ifcnn_t, ifcnn_t.flops)
  interleave([t for t, _ in rows.values()], runs)
  diff = float(
    np.abs(
      np.asarray(rows["EFRUFN w32, 5 it."][0].output)
      - np.asarray(rows["EFRUFN w32, 5 it., previous formulation"][0].output)
    ).max()
  )
  return {
    "rows": rows,
    "max_output_difference": diff,
    "params": {"EFRUFN w32": cost.count_parameters(p32), "IFCNN": cost.count_parameters(pi)},
  }


def components_section(height: int, width: int, runs: int) -> dict:
  x = _rand((1, height, width, 32), 6) - 0.5
  m = jnp.full((1, height, width, 1), 0.5, jnp.float32)
  model = _efrufn(32, 5)
  unit = UFUnit(**model.unit_kwargs(True))
  init = lambda module, *a: jax.jit(module.init)(jax.random.PRNGKey(0), *a)
  cases = {
    "Tθ1 (conv + 2 residual blocks)": (SourceTransform(32), (x[..., :1],)),
    "UF unit (MSMG + GLT)": (unit, (x, 0.5 * x, m, 0.5 * x)),
    "MSMG": (MSMG(32, num_heads=4), (x, m)),
    "GLT (window 2)": (GLT(32, num_heads=4, window=2), (x,)),
    "ConvNeXt block (full resolution)": (ConvNeXtBlock(32), (x,)),
    "Swin block (window 4, shifted)": (SwinBlock(32, 4, 4, shift=True), (x,)),
  }
  timed = {}
  for name, (module, args) in cases.items():
    small_args = tuple(a[:, :32, :32] for a in args)
    params = init(module, *small_args)
    timed[name] = Timed(lambda p, *a, module=module: module.apply(p, *a), (params,) + args)
  kernel = _rand((7, 7, 1, 32), 7)
  for impl in ops.IMPLEMENTATIONS["depthwise_conv2d"]:
    timed[f"depthwise 7x7 conv, '{impl}'"] = Timed(
      lambda a, k, impl=impl: ops.depthwise_conv2d(a, k, implementation=impl), (x, kernel)
    )
  interleave(list(timed.values()), runs)
  return timed


def training_section(quick: bool) -> list[dict]:
  import train_benchmark

  cases = (
    [("mfif", None), ("mfif", "cpu")]
    if quick
    else [(s, arg) for arg in (None, "cpu") for s in tasks.STAGES]
  )
  results = []
  for stage, arg in cases:
    result = train_benchmark.benchmark_stage(
      stage,
      steps=2,
      batch_size=None,
      patch_size=None,
      model_name=None,
      config_arg=arg,
      compiler_options=CURRENT["compiler_options"],
    )
    result["config"] = f"configs/{stage}.py" + (f":{arg}" if arg else "")
    if stage == "mfif":
      with ops.implementations(**PREVIOUS["implementations"]):
        old = train_benchmark.benchmark_stage(
          stage,
          steps=2,
          batch_size=None,
          patch_size=None,
          model_name=None,
          config_arg=arg,
          compiler_options=PREVIOUS["compiler_options"],
        )
      result["previous"] = old
    results.append(result)
    print(json.dumps(result), flush=True)
  return results


def _fuse_command(a: str, b: str, out: str, task: str) -> list[str]:
  return [sys.executable, "-m", "fusionjax", "fuse", a, b, "-o", out, "--task", task]


def _run_timed(command: list[str], env: dict) -> tuple[float, float]:
  """Runs a command; returns (wall seconds, peak resident MiB of that child)."""
  before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  start = time.perf_counter()
  proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
  wall = time.perf_counter() - start
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
  after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  # ru_maxrss of RUSAGE_CHILDREN is the largest child so far (KiB on Linux).
  return wall, max(after, before) / 1024.0


def compile_section() -> dict:
  samples = ROOT / "fusionjax" / "data" / "samples" / "tno"
  a, b = str(samples / "vi" / "37.png"), str(samples / "ir" / "37.png")
  with tempfile.TemporaryDirectory() as tmp:
    env = dict(os.environ, FUSIONJAX_CACHE_DIR=os.path.join(tmp, "cache"))
    first, _ = _run_timed(_fuse_command(a, b, os.path.join(tmp, "1.png"), "ivf"), env)
    second, _ = _run_timed(_fuse_command(a, b, os.path.join(tmp, "2.png"), "ivf"), env)
    off = dict(env, FUSIONJAX_CACHE_DIR="off")
    uncached, _ = _run_timed(_fuse_command(a, b, os.path.join(tmp, "3.png"), "ivf"), off)
  return {"first": first, "second": second, "uncached_second": uncached}


def large_section(height: int = 3000, width: int = 4000) -> dict:
  from PIL import Image

  samples = ROOT / "fusionjax" / "data" / "samples" / "lytro"
  with tempfile.TemporaryDirectory() as tmp:
    paths = []
    for name in ("lytro-20-A.jpg", "lytro-20-B.jpg"):
      image = Image.open(samples / name).convert("RGB").resize((width, height), Image.BICUBIC)
      paths.append(os.path.join(tmp, name.replace(".jpg", ".png")))
      image.save(paths[-1])
    env = dict(os.environ, FUSIONJAX_CACHE_DIR=os.path.join(tmp, "cache"))
    wall, rss = _run_timed(
      _fuse_command(paths[0], paths[1], os.path.join(tmp, "out.png"), "mfif"), env
    )
  return {"size": f"{width}x{height}", "wall_s": wall, "peak_rss_mib": rss}


def _table(header: list[str], rows: list[list]) -> str:
  lines = [
    "| " + " | ".join(header) + " |",
    "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
  ]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def report(args, ceil, infer, comps, train, comp, large) -> str:
  conv_rate = ceil["conv"].flops / ceil["conv"].best
  out = [
    f"# Speed on {jax.devices()[0].device_kind} ({os.cpu_count()} cores), JAX {jax.__version__}",
    "",
    f"`python benchmarks/speed.py{' --quick' if args.quick else ''}{' --large' if args.large else ''}`, "
    f"{datetime.date.today().isoformat()}; {args.height}x{args.width}, batch 1, float32; fastest of "
    f"{args.runs} interleaved runs. Ratios are taken within this one run.",
    "",
    "## Ceilings",
    "",
  ]
  out.append(
    _table(
      ["operation", "ms", "rate"],
      [
        [
          "dense 3x3 conv 32→32",
          f"{ceil['conv'].best * 1e3:.1f}",
          f"{conv_rate / 1e9:.1f} GFLOP/s",
        ],
        [
          "matrix product 32→128",
          f"{ceil['dot'].best * 1e3:.1f}",
          f"{ceil['dot'].flops / ceil['dot'].best / 1e9:.1f} GFLOP/s",
        ],
        [
          "copy of 256 MiB (read + write)",
          f"{ceil['copy'].best * 1e3:.1f}",
          f"{ceil['copy_gbs']:.1f} GB/s",
        ],
      ],
    )
  )
  rows = infer["rows"]
  ifcnn = rows["IFCNN (Zhang et al. 2020)"][0].best
  table = []
  for name, (t, flops) in rows.items():
    rate = flops / t.best
    table.append(
      [
        name,
        f"{flops / 1e9:.1f}",
        f"{t.best:.3f}",
        f"{rate / 1e9:.1f}",
        f"{rate / conv_rate:.2f}",
        f"{t.best / ifcnn:.2f}",
        f"{t.compile_s:.1f}",
        f"{t.temp_mib:.0f}",
      ]
    )
  out += [
    "",
    "## Inference",
    "",
    _table(
      [
        "network",
        "GFLOPs",
        "s",
        "GFLOP/s",
        "÷ dense conv",
        "× IFCNN time",
        "compile s",
        "temp MiB",
      ],
      table,
    ),
    "",
    f"Largest output difference, current vs previous formulation: {infer['max_output_difference']:.1e}. "
    f"GFLOPs count every solver iteration / unrolled unit (`fusionjax.evaluation.cost.forward_cost`).",
  ]
  table = []
  for name, t in comps.items():
    rate = t.flops / t.best
    table.append(
      [
        name,
        f"{t.flops / 1e9:.2f}",
        f"{t.best * 1e3:.1f}",
        f"{rate / 1e9:.1f}",
        f"{rate / conv_rate:.2f}",
      ]
    )
  out += [
    "",
    "## Components (width 32)",
    "",
    _table(["component", "GFLOPs", "ms", "GFLOP/s", "÷ dense conv"], table),
  ]
  if train:
    table = []
    for r in train:
      prev = r.get("previous")
      table.append(
        [
          r["config"],
          f"{r['batch_size']}×{r['patch_size']}²",
          f"{r['sec_per_step']:.2f}",
          f"{r['compile_s']:.0f}",
          f"{r['temp_mib']:.0f}",
          f"{r['loss']:.6f}",
          f"{prev['sec_per_step'] / r['sec_per_step']:.2f}× ({prev['sec_per_step']:.2f} s, loss {prev['loss']:.6f})"
          if prev
          else "",
        ]
      )
    out += [
      "",
      "## Training step",
      "",
      _table(
        [
          "config",
          "batch",
          "s/step",
          "compile s",
          "temp MiB",
          "loss",
          "speed-up over the previous formulation",
        ],
        table,
      ),
      "",
      "Random inputs of the training shapes (data loading not timed); 2 timed steps after a warm-up.",
    ]
  if comp:
    out += [
      "",
      "## Compilation",
      "",
      _table(
        ["`fusionjax fuse` (TNO 37, shipped IVF stage), separate processes", "s"],
        [
          ["first call, empty compilation cache", f"{comp['first']:.1f}"],
          [
            "second call, same size (cache hit)",
            f"{comp['second']:.1f} ({comp['second'] / comp['first']:.2f} of the first)",
          ],
          ["a call with the cache off", f"{comp['uncached_second']:.1f}"],
        ],
      ),
    ]
  if large:
    out += [
      "",
      "## Large image",
      "",
      f"`fusionjax fuse` of a {large['size']} pair (Lytro 20 upscaled), shipped MFIF "
      f"stage: {large['wall_s']:.0f} s, peak resident memory {large['peak_rss_mib']:.0f} MiB.",
    ]
  return "\n".join(out) + "\n"


def readme_summary(args, ceil, infer, comps, train, comp) -> str:
  """The README's short speed table (the full report is results/speed.md)."""
  conv_rate = ceil["conv"].flops / ceil["conv"].best
  rows = infer["rows"]
  ifcnn = rows["IFCNN (Zhang et al. 2020)"][0].best
  table = [
    [
      name,
      f"{flops / 1e9:.1f}",
      f"{t.best:.2f}",
      f"{flops / t.best / conv_rate:.2f}",
      f"{t.best / ifcnn:.1f}",
    ]
    for name, (t, flops) in rows.items()
  ]
  dw = {
    impl: comps[f"depthwise 7x7 conv, '{impl}'"] for impl in ops.IMPLEMENTATIONS["depthwise_conv2d"]
  }
  lines = [
    f"`python benchmarks/speed.py{' --quick' if args.quick else ''}` on {os.cpu_count()} CPU cores "
    f"({datetime.date.today().isoformat()}); 224×448, batch 1, float32; ratios from one run "
    f"(dense 3×3 conv ran at {conv_rate / 1e9:.0f} GFLOP/s). Full report: `results/speed.md`.",
    _table(["network", "GFLOPs", "s", "GFLOP/s ÷ dense conv", "time ÷ IFCNN"], table),
    f"7×7 depthwise convolution: {dw['shifted'].flops / dw['shifted'].best / conv_rate:.2f} of the dense-conv "
    f"rate as shifted multiply-adds, {dw['xla'].flops / dw['xla'].best / conv_rate:.3f} as XLA's grouped "
    "convolution.",
  ]
  for r in train:
    prev = r.get("previous")
    if prev:
      lines.append(
        f"Training step `{r['config']}` ({r['batch_size']}×{r['patch_size']}²): {r['sec_per_step']:.2f} s "
        f"against {prev['sec_per_step']:.2f} s in the previous formulation (speed-up "
        f"{prev['sec_per_step'] / r['sec_per_step']:.2f}×; losses differ by "
        f"{abs(prev['loss'] - r['loss']):.1e}). Steps run one after the other, so load changes "
        "between them show in this ratio."
      )
  if comp:
    lines.append(
      f"`fusionjax fuse` of a TNO pair as a new process: {comp['first']:.0f} s with an empty compilation "
      f"cache, {comp['second']:.0f} s when the cache holds the program."
    )
  return "\n\n".join(lines[:2]) + "\n\n" + "\n".join(f"- {line}" for line in lines[2:]) + "\n"


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--height", type=int, default=224)
  parser.add_argument("--width", type=int, default=448)
  parser.add_argument("--runs", type=int, default=3)
  parser.add_argument(
    "--quick", action="store_true", help="no FRUFN; training only MFIF full and :cpu"
  )
  parser.add_argument("--no_train", action="store_true", help="skip the training steps")
  parser.add_argument("--large", action="store_true", help="also fuse a 4000x3000 pair")
  parser.add_argument(
    "--only_large", action="store_true", help="only the 4000x3000 fuse (appended to --out)"
  )
  parser.add_argument(
    "--only_compile",
    action="store_true",
    help="only the three `fusionjax fuse` processes of the compilation section (printed)",
  )
  parser.add_argument("--out", default=str(ROOT / "results" / "speed.md"))
  parser.add_argument(
    "--readme",
    default=None,
    help="also replace the block between <!-- speed:begin --> and <!-- speed:end --> of this file",
  )
  args = parser.parse_args(argv)
  if args.only_large:
    large = large_section()
    text = (
      f"\n## Large image\n\n`python benchmarks/speed.py --only_large`: `fusionjax fuse` of a {large['size']} pair "
      f"(Lytro 20 upscaled), shipped MFIF stage: {large['wall_s']:.0f} s, peak resident memory "
      f"{large['peak_rss_mib']:.0f} MiB.\n"
    )
    print(text)
    with open(args.out, "a") as f:
      f.write(text)
    return
  if args.only_compile:
    comp = compile_section()
    print(
      f"`fusionjax fuse` of TNO 37, separate processes: first call (empty compilation cache) "
      f"{comp['first']:.1f} s, second call (cache hit) {comp['second']:.1f} s "
      f"({comp['second'] / comp['first']:.2f} of the first), cache off {comp['uncached_second']:.1f} s"
    )
    return
  ceil = ceilings(args.height, args.width, args.runs)
  infer = inference_section(args.height, args.width, args.runs, args.quick)
  comps = components_section(args.height, args.width, args.runs)
  train = [] if args.no_train else training_section(args.quick)
  comp = compile_section()
  large = large_section() if args.large else None
  text = report(args, ceil, infer, comps, train, comp, large)
  print(text)
  Path(args.out).write_text(text)
  if args.readme:
    sys.path.insert(0, str(ROOT / "results"))
    from make_tables import update_readme

    update_readme(
      Path(args.readme),
      readme_summary(args, ceil, infer, comps, train, comp),
      "<!-- speed:begin -->",
      "<!-- speed:end -->",
    )


if __name__ == "__main__":
  main()
