r"""Stage 1: multi-focus image fusion (MFIF), from scratch, loss 1 − SSIM(f(near, far), all-in-focus) (eq. 2).

Command (from the repository root)::

  python train.py --config=configs/mfif.py --workdir=runs/mfif --config.data.data_dir=/path/to/data

Trains EFRUFN (``--config.model.name=frufn`` for FRUFN) on near/far pairs synthesised from the sharp
photographs in ``DATA/clean_natural`` (plus Real-MFF triples when ``--config.data.real_mff_dir`` is set),
8 crops of 128 px per step, 20k steps. The result is the teacher of stage 2 (``configs/meif.py``).

How long: days on a CPU (``python benchmarks/train_benchmark.py --stages mfif`` times one step on the
machine at hand; README: training has the measured times); train on an accelerator.

Smoke run (tiny network, 32 px crops, 6 steps; a few minutes on a CPU, about half that with the XLA
flag below, which only lowers XLA's CPU optimisation level: compilation, which dominates a smoke
run, is several times faster, and the losses come out the same)::

  XLA_FLAGS=--xla_backend_optimization_level=0 python train.py --config=configs/mfif.py:smoke \
      --config.data.data_dir=/path/to/data
"""

from __future__ import annotations

from configs import common


def get_config(arg: str | None = None):
  """The stage-1 config; ``arg='smoke'`` shrinks it for a CPU smoke run, ``'cpu'`` to the shipped weights' CPU run."""
  config = common.get_common_config("mfif")
  # 20k steps x 8 crops = 160k synthetic pairs, about 760 random crops per clean_natural photograph:
  # each step draws a new blur mask and defocus, so longer runs keep seeing new pairs. Stage 1 trains
  # longest because its structure is what the later stages inherit through L_gt.
  config.num_steps = 20_000
  # No teacher in stage 1 (paper: "the weight of the gradient transfer loss function is set to 0").
  config.loss.lambda_gt = 0.0
  config.use_teacher = False
  common.apply_variant(config, arg)
  return config
