r"""Stage 2: multi-exposure image fusion (MEIF) with gradient transfer from the frozen MFIF model.

Loss (paper eq. 1–3, 8): ``1 − SSIM(f(under, over), hdr) + λ·‖max(∇f_MFIF − ∇f, 0)‖₁`` for the fusion
network, and ColorNet's ``‖f_color(CrCb_under, CrCb_over, f) − CrCb_hdr‖₁`` for ColorNet, trained
alongside with its own Adam.

Command (from the repository root, after stage 1)::

  python train.py --config=configs/meif.py --workdir=runs/meif --config.data.data_dir=/path/to/data \
      --config.teacher_ckpt=runs/mfif

Trains EFRUFN and ColorNet on SICE's training scenes (``DATA/sice16/train``) mixed half and half with
under/over pairs synthesised from ``DATA/clean_natural``; 8 crops of 128 px per step, 10k steps. The
teacher defaults to ``runs/mfif``; a missing teacher, or one that is not an MFIF checkpoint, stops the
run before anything is computed. ``--config.use_teacher=False`` trains without it (ablation).

How long: days on a CPU (``python benchmarks/train_benchmark.py --stages meif`` times one step on the
machine at hand; README: training has the measured times); train on an accelerator.

Smoke run (after the stage-1 smoke run, which it takes as teacher from ``runs/smoke/mfif``; a few
minutes on a CPU)::

  XLA_FLAGS=--xla_backend_optimization_level=0 python train.py --config=configs/meif.py:smoke \
      --config.data.data_dir=/path/to/data
"""

from __future__ import annotations

from configs import common


def get_config(arg: str | None = None):
  """The stage-2 config; ``arg='smoke'`` shrinks it for a CPU smoke run, ``'cpu'`` to the shipped weights' CPU run."""
  config = common.get_common_config("meif")
  # 10k steps: the network starts from scratch but the teacher's structure term speeds it up, and the
  # real exposure pairs (11 SICE scenes) would be memorised by much longer runs.
  config.num_steps = 10_000
  # λ = 1 (eq. 1): L_gt is the mean Sobel deficit, which for a fusion lacking the sharper image's
  # edges is about the size of 1 − SSIM (measured on 128 px training crops, the plain average of the
  # two sources against the reference: 1 − SSIM 0.157, deficit 0.163; `python
  # benchmarks/train_benchmark.py --loss_scales --data_dir=DATA`). Weight 1 makes the teacher's
  # structure count like the reference's where the student lacks it; it vanishes where the student's
  # edges are at least as strong.
  config.loss.lambda_gt = 1.0
  # ColorNet (paper Remark 1) is trained in this stage and saved with it.
  config.train_colornet = True
  config.colornet = common.default_colornet_config()
  common.apply_variant(config, arg)
  if arg == "smoke":
    config.colornet.features = 4
  return config
