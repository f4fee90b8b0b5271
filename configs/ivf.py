r"""Stage 3: infrared-visible fusion (IVF), unsupervised, with gradient transfer from the frozen MEIF model.

Loss (paper eq. 1, 3–7): ``L_int + β1·L_text + β2·L_stru + λ·L_gt`` with
``L_int = ‖f − max(vis, ir)‖₁``, ``L_text = ‖∇f − max(∇vis, ∇ir)‖₁``,
``L_stru = 2 − SSIM(f, vis) − SSIM(f, ir)`` and ``L_gt = ‖max(∇f_MEIF − ∇f, 0)‖₁``.

Command (from the repository root, after stage 2)::

  python train.py --config=configs/ivf.py --workdir=runs/ivf --config.data.data_dir=/path/to/data \
      --config.teacher_ckpt=runs/meif

Trains EFRUFN on RoadScene's training pairs (``DATA/roadscene`` minus its 50-pair test list; TNO is
kept for testing), 8 crops of 128 px per step, 10k steps. The teacher defaults to ``runs/meif`` and
must be an MEIF checkpoint; its checkpoint names its own MFIF teacher, so this stage's checkpoint
holds the whole chain (``fusionjax.checkpoints.stage_lineage``).

How long: days on a CPU (``python benchmarks/train_benchmark.py --stages ivf`` times one step on the
machine at hand; README: training has the measured times); train on an accelerator.

Smoke run (after the stage-2 smoke run, its teacher from ``runs/smoke/meif``; a few minutes on a
CPU)::

  XLA_FLAGS=--xla_backend_optimization_level=0 python train.py --config=configs/ivf.py:smoke \
      --config.data.data_dir=/path/to/data
"""

from __future__ import annotations

from configs import common


def get_config(arg: str | None = None):
  """The stage-3 config; ``arg='smoke'`` shrinks it for a CPU smoke run, ``'cpu'`` to the shipped weights' CPU run."""
  config = common.get_common_config("ivf")
  # 10k steps x 8 crops = 80k crops of 171 RoadScene training pairs: each pair is seen as ~470 random
  # crops, enough for an unsupervised loss that has no reference to overfit to.
  config.num_steps = 10_000
  # β1 = 1, β2 = 0.5 (eq. 4). Measured on 128 px RoadScene training crops for the plain average of
  # the two sources (`python benchmarks/train_benchmark.py --loss_scales --data_dir=DATA`):
  # L_int 0.125, L_text 0.210, L_stru 0.585. These weights make the three contributions the same
  # order (0.125 : 0.21 : 0.29), with texture and structure, the information the paper's framework
  # is about preserving, slightly ahead of intensity.
  config.loss.beta1 = 1.0
  config.loss.beta2 = 0.5
  # λ = 1: L_gt is in the same Sobel units as L_text (the average's deficit against the visible
  # image measured 0.078), so λ = β1 weighs the teacher's structure like the sources' structure.
  config.loss.lambda_gt = 1.0
  common.apply_variant(config, arg)
  return config
