r"""Trains one stage of the fusion chain MFIF -> MEIF -> IVF.

Usage (from the repository root)::

  python train.py --config=configs/mfif.py --workdir=runs/mfif --config.data.data_dir=DATA
  python train.py --config=configs/meif.py --workdir=runs/meif --config.data.data_dir=DATA \
      --config.teacher_ckpt=runs/mfif
  python train.py --config=configs/ivf.py  --workdir=runs/ivf  --config.data.data_dir=DATA \
      --config.teacher_ckpt=runs/meif

``--workdir`` defaults to the config's ``workdir_default`` (``runs/<stage>``), the teacher to the
previous stage's default workdir, and the data directory to ``$FUSIONJAX_DATA``. Any config field can
be overridden with ``--config.<field>=value``; append ``:smoke`` to the config path for a one-minute
CPU run. Rerunning the same command resumes from the workdir's latest checkpoint.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from fusionjax import runtime
from fusionjax import train
from fusionjax.train import logging as train_logging

_CONFIG = config_flags.DEFINE_config_file("config", None, "Stage config file, e.g. configs/mfif.py.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics.jsonl and sample grids go "
                               "(default: the config's workdir_default).")
flags.mark_flags_as_required(["config"])


def main(argv):
  """Trains the stage of ``--config`` in ``--workdir`` (resuming if it holds a checkpoint)."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  runtime.configure()
  logging.set_verbosity(logging.INFO)
  train_logging.quiet_library_logs()
  config = _CONFIG.value
  workdir = _WORKDIR.value or config.workdir_default
  result = train.train_and_evaluate(config, workdir)
  logging.info("Finished %s in %s: %s", config.task, workdir,
               ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.items())))


if __name__ == "__main__":
  app.run(main)
