"""Defaults shared by the three stage configs (``configs/mfif.py``, ``meif.py``, ``ivf.py``).

The paper (§3.1, §4.1) names Adam and gradient clipping but gives no learning rate, batch, patch,
step count or loss weight; every such number is set here or in the stage configs, with its reason.

Fields (``--config.<field>=...`` on the command line):

- ``task``: 'mfif', 'meif' or 'ivf'; ``workdir_default``: where the stage writes when ``--workdir`` is
  not given (``runs/<task>``).
- ``model``: :func:`fusionjax.models.default_model_config` (EFRUFN by default; ``--config.model.name=frufn``
  and ``--config.model.variant=shared|no_unfold|no_mask`` select FRUFN and the ablations).
- ``data``: :func:`fusionjax.data.default_data_config` of the task. ``data.data_dir`` has no default:
  pass ``--config.data.data_dir=DIR`` or set the environment variable ``FUSIONJAX_DATA=DIR``.
- ``optimizer``, ``loss``, ``num_steps``: below and in the stage configs.
- ``use_teacher``, ``teacher_ckpt``, ``teacher_step``: the frozen previous-stage model for the
  gradient-transfer loss; ``teacher_ckpt`` defaults to the previous stage's default workdir.
- ``init_ckpt``, ``init_step``: optional checkpoint (and its step; default the latest) to start the
  parameters from (resume from the workdir wins).
- logging, checkpointing and devices: ``log_every``, ``checkpoint_every``, ``keep_checkpoints``,
  ``sample_every``, ``num_samples``, ``eval_metrics``, ``num_devices``, ``prefetch``.
- data parallelism and multi-process runs (``docs/multihost.md``): ``parallel`` ('jit' or 'pmap'),
  ``distributed``, ``coordinator_address``, ``num_processes``, ``process_id``.

``apply_smoke`` shrinks any stage to a CPU run of a few minutes (``--config=configs/<stage>.py:smoke``;
``time python train.py --config=configs/mfif.py:smoke --config.data.data_dir=fusionjax/data/samples``
measures one); ``apply_cpu`` is the reduced configuration the shipped
reference weights (``fusionjax/weights``) were trained with on a 2-core CPU (``configs/<stage>.py:cpu``).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from fusionjax import data, models, tasks
from fusionjax.train import parallel


#: Config arguments a stage config accepts after its path (``configs/ivf.py:cpu``).
VARIANTS = ("smoke", "cpu")


def default_workdir(task: str, variant: str | None = None) -> str:
  """The workdir a stage writes to when ``--workdir`` is not given: ``runs/<task>``, or
  ``runs/<variant>/<task>`` for the ``smoke`` and ``cpu`` variants."""
  return f"runs/{variant}/{task}" if variant else f"runs/{task}"


def get_common_config(task: str) -> ml_collections.ConfigDict:
  """The shared defaults for ``task``; stage configs override what differs.

  Args:
    task: 'mfif', 'meif' or 'ivf'.

  Returns:
    A ConfigDict with every field ``fusionjax.train.train_and_evaluate`` reads.
  """
  tasks.check_stage(task)
  config = ml_collections.ConfigDict()
  config.task = task
  config.workdir_default = default_workdir(task)

  # EFRUFN, the paper's main model, with its own defaults (width 32, Anderson, at most 5 iterations).
  config.model = models.default_model_config()

  config.data = data.default_data_config(task)
  # 8 crops of 128 px: the data defaults (reasons in fusionjax.data.default_data_config), restated
  # here because the learning rate and step counts below were chosen for them.
  config.data.batch_size = 8
  config.data.patch_size = 128

  config.optimizer = ml_collections.ConfigDict()
  # Peak learning rate 2e-4: SwinIR's Adam rate, a Swin-based image-restoration network trained on
  # small crops like this one; the paper gives none.
  config.optimizer.learning_rate = 2e-4
  # Warm-up over 500 steps: Adam's second-moment estimate is poor in its first few hundred steps, and a
  # full-rate start can push the DEQ's fixed-point map out of its contractive regime.
  config.optimizer.warmup_steps = 500
  # Cosine decay to 1% of the peak: a smooth anneal with no milestones to tune per stage.
  config.optimizer.end_lr_factor = 0.01
  # Adam's standard moments and epsilon.
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  # Global-norm clipping at 1 (the paper clips gradients, as DEQ training usually must; 1 is the
  # common default, e.g. big_vision's). The full EFRUFN's gradient norm measured 3.9 (MFIF) and 12 (IVF)
  # at initialisation on 128 px crops, and 1-4 over the first steps of the smoke runs, so the clip is
  # active early on and whenever the norm jumps (e.g. a solve that did not converge). Adam divides by
  # the running RMS of the gradient, so clipping changes how much one step moves the moments, not the
  # step size scale (about the learning rate either way).
  config.optimizer.grad_clip_norm = 1.0

  config.loss = ml_collections.ConfigDict()
  # λ of eq. (1); 0 in stage 1, set by the stage configs for stages 2 and 3.
  config.loss.lambda_gt = 0.0
  # β1, β2 of eq. (4): stage 3 only.
  config.loss.beta1 = 0.0
  config.loss.beta2 = 0.0
  # γ, weight of EFRUFN's fixed-point residual ||f(z*) - z*||² / ||z*||² (not in the paper; FRUFN
  # ignores it). Under the paper's Jacobian-free backward nothing else keeps the map contractive: CPU
  # runs without it (configs/<stage>.py:cpu, at learning rates 4e-4, 2e-4 and 1e-4) all drifted from a
  # relative residual of ~1e-2 after 3 iterations to 0.6-0.8 within 100-150 steps, and the loss then
  # rose above its starting value. 1 makes the term about as large as the reconstruction loss when the
  # solve stalls (residual² 0.3-0.6) and negligible when it converges (~1e-4). 0 restores the paper's loss.
  config.loss.fixed_point = 1.0
  # γ_J, weight of EFRUFN's Jacobian penalty ||∂f/∂z*||²_F / dim z (Bai et al. 2021, "Stabilizing
  # Equilibrium Models by Jacobian Regularization"; not in the paper; a one-probe Hutchinson estimate
  # at the stopped solution, FRUFN rejects it). It bounds the map's contraction directly where γ only
  # penalises its symptom, at the cost of a double backward through the unit (~1.5x the :cpu step).
  # 0 by default: the shipped weights were trained with the fixed-point term alone, and in 200-step :cpu
  # stage-1 runs γ_J = 1 (with or without γ) dominated the clipped warm-up updates (gradient ~30x the
  # γ run's) and ended at 1 - SSIM 0.41-0.42 on held-back pairs against 0.09 for γ alone (README:
  # training; benchmarks/jacobian_comparison.py).
  config.loss.jacobian = 0.0

  teacher = tasks.TEACHER_OF.get(task)
  # Stages 2 and 3 learn from the frozen previous stage; --config.use_teacher=False is the ablation of
  # paper Table 6-7 (the same stage trained alone).
  config.use_teacher = teacher is not None
  # The previous stage's default workdir, so the default commands chain without extra flags.
  config.teacher_ckpt = (
    default_workdir(teacher) if teacher is not None else config_dict.placeholder(str)
  )
  # Teacher checkpoint step; None takes its latest.
  config.teacher_step = config_dict.placeholder(int)
  # Checkpoint (a stage workdir) to start the parameters from instead of scratch; None = scratch.
  config.init_ckpt = config_dict.placeholder(str)
  # Checkpoint step of init_ckpt (e.g. the step its validation curve chose); None takes its latest.
  config.init_step = config_dict.placeholder(int)

  config.num_steps = 20_000
  config.seed = 0  # Parameter initialisation; the data order has its own config.data.seed.
  # A line (and a metrics.jsonl record) every 50 steps: under a minute apart on an accelerator.
  config.log_every = 50
  # Checkpoints every 1000 steps, the last 3 kept: at most 1000 steps are lost to an interruption.
  config.checkpoint_every = 1000
  config.keep_checkpoints = 3
  # A sample grid every 2000 steps (and at the end; 0 = only at the end), of the first 4 crops of step 0.
  config.sample_every = 2000
  config.num_samples = 4
  # Metrics of the sample fusions reported at the end (fusionjax.metrics names; PSNR needs a reference).
  config.eval_metrics = ("EN", "SD", "SF", "SSIM", "Qabf", "PSNR")
  config.num_devices = config_dict.placeholder(int)  # Devices of each process to use; None = all.
  # Data-parallel step: 'jit' (jax.jit + shard_map over a device mesh) or 'pmap'; the default is
  # the one that measured faster (docs/multihost.md, benchmarks/train_benchmark.py --parallel).
  config.parallel = parallel.DEFAULT_MODE
  # Multi-process runs (docs/multihost.md): the three fields below, all set, start one process of a
  # run by hand or from a launcher; distributed=True without them lets JAX detect the cluster.
  config.distributed = False
  config.coordinator_address = config_dict.placeholder(str)  # HOST:PORT of process 0.
  config.num_processes = config_dict.placeholder(int)
  config.process_id = config_dict.placeholder(int)  # This process's rank, 0..num_processes-1.
  config.prefetch = 2  # Batches prepared ahead by the data thread.
  return config


def default_colornet_config() -> ml_collections.ConfigDict:
  """ColorNet's keyword arguments (:class:`fusionjax.models.ColorNet`), trained in the MEIF stage."""
  config = ml_collections.ConfigDict()
  # ColorNet's own defaults: width 32 like the fusion network, two residual blocks (11x11 receptive
  # field; colour correction is local), and a last layer that starts close to the weighted-average rule.
  config.features = 32
  config.num_blocks = 2
  config.output_init_scale = 1e-2
  return config


def apply_smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a stage config to a CPU smoke run of a few minutes (tiny network, 32 px crops, 6 steps).

  Args:
    config: a stage config (modified in place).

  Returns:
    The same config.
  """
  # A tiny network with every part of the real one (Swin blocks with shifted windows, MSMG, the DEQ
  # solve). XLA's CPU compile time grows with the solver iterations and pooling scales (measured on a
  # busy 2-core CPU, compiling the init: 88 s with 3 iterations and 4 scales, 56 s with 1 iteration,
  # 77 s with 2 scales), so both are cut. XLA_FLAGS=--xla_backend_optimization_level=0 halves a smoke
  # run again (stage 1: 74 s instead of 149 s) with the same losses.
  config.model.width = 8
  config.model.num_heads = 2
  config.model.num_units = 2
  config.model.max_iter = 2
  config.model.pool_factors = (1, 2)
  config.model.cpb_hidden = 16
  # 2 crops of 32 px (a multiple of every window and pooling factor) from the first 4 images of each
  # set: data takes a fraction of each step, and every stage's sets are still read.
  config.data.batch_size = 2
  config.data.patch_size = 32
  config.data.max_images = 4
  # 6 steps with a checkpoint at 3 exercise warm-up, decay, saving and the final save.
  config.optimizer.warmup_steps = 2
  config.num_steps = 6
  config.log_every = 1
  config.checkpoint_every = 3
  config.sample_every = 0
  config.num_samples = 2
  config.eval_metrics = ("EN", "SD", "PSNR")
  _chain_workdirs(config, "smoke")
  return config


def _chain_workdirs(config: ml_collections.ConfigDict, variant: str) -> None:
  """Runs of one variant chain among themselves (``runs/<variant>/<task>``), apart from the full runs."""
  config.workdir_default = default_workdir(config.task, variant)
  teacher = tasks.TEACHER_OF.get(config.task)
  if teacher is not None:
    config.teacher_ckpt = default_workdir(teacher, variant)


#: Steps of each stage in the ``cpu`` variant: about 20 minutes per stage on a 2-core CPU (the run behind
#: the shipped weights: MFIF 1000 steps in 1353 s, MEIF 600 in 1277 s; results/logs/*/metrics.jsonl).
CPU_STEPS = {"mfif": 1000, "meif": 600, "ivf": 600}


def apply_cpu(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a stage config to the CPU reference run that produced the shipped weights.

  The architecture keeps every part and setting of the paper's EFRUFN except its width (16 instead of
  32, 2 heads), the position-bias MLP (64 hidden instead of 512) and the solver budget (3 Anderson
  iterations instead of 5); training keeps the data, losses and their weights and cuts the crops (4 of
  64 px instead of 8 of 128 px) and the steps (``CPU_STEPS``, 5-6% of the full schedule's steps and
  under 1% of its training pixels). ``python benchmarks/train_benchmark.py --config_arg=cpu`` times
  one step of each stage.

  Args:
    config: a stage config (modified in place).

  Returns:
    The same config.
  """
  config.model.update(width=16, num_heads=2, cpb_hidden=64, max_iter=3)
  if "colornet" in config:
    config.colornet.features = 16
  config.data.update(batch_size=4, patch_size=64)
  # A short warm-up (50 steps, under 10% of the shortest stage) at the full runs' peak rate of 2e-4. A
  # first CPU run at 4e-4 pushed the fixed-point map out of its contractive regime as soon as the
  # warm-up passed 3e-4 (relative residual after 3 iterations 4e-3 at step 40, 0.3-0.8 from step 60,
  # loss up from 0.52 to 0.85), so the rate is not raised for the short schedule.
  config.optimizer.warmup_steps = 50
  config.num_steps = CPU_STEPS[config.task]
  config.log_every = 20
  config.checkpoint_every = 200
  config.keep_checkpoints = 2
  config.sample_every = 0
  _chain_workdirs(config, "cpu")
  return config


def apply_variant(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """Applies the config argument of ``configs/<stage>.py:<arg>`` (None: the full configuration)."""
  if arg == "smoke":
    return apply_smoke(config)
  if arg == "cpu":
    return apply_cpu(config)
  if arg:
    raise ValueError(
      f"Unknown config argument {arg!r}; use configs/{config.task}.py or "
      f"configs/{config.task}.py:<variant> with a variant in {VARIANTS}."
    )
  return config
