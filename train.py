r"""Trains one stage of the fusion chain MFIF -> MEIF -> IVF.

Usage (from the repository root)::

  python train.py --config=configs/mfif.py --workdir=runs/mfif --config.data.data_dir=DATA
  python train.py --config=configs/meif.py --workdir=runs/meif --config.data.data_dir=DATA \
      --config.teacher_ckpt=runs/mfif
  python train.py --config=configs/ivf.py  --workdir=runs/ivf  --config.data.data_dir=DATA \
      --config.teacher_ckpt=runs/meif

``--workdir`` defaults to the config's ``workdir_default`` (``runs/<stage>``), the teacher to the
previous stage's default workdir, and the data directory to ``$FUSIONJAX_DATA``. Any config field can
be overridden with ``--config.<field>=value``; ``python train.py --config=configs/ivf.py --print_config``
lists every field with its value and exits. Append ``:smoke`` to the config path for a CPU run of a
few minutes (``time python train.py --config=configs/mfif.py:smoke
--config.data.data_dir=fusionjax/data/samples`` measures it). Rerunning the same command resumes from
the workdir's latest checkpoint.

A problem with the config, the data, the teacher or the workdir ends the run before anything is
written, with one line on stderr naming the field to change and exit code 2; a full disk ends it with
one line naming the workdir and the space needed (the checkpoints already saved are kept) and exit
code 1. ``FUSIONJAX_TRACEBACK=1`` shows the traceback of these too.

Several processes (one per host, or several on one machine) train one run together when each gets
``--config.coordinator_address=HOST:PORT --config.num_processes=N --config.process_id=I``
(``docs/multihost.md``).
"""

import errno
import os
import sys

from absl import flags
from absl import logging
from ml_collections import config_flags

from fusionjax import checkpoints
from fusionjax import cli
from fusionjax import runtime
from fusionjax.train import distributed
from fusionjax.train import logging as train_logging

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Stage config file, e.g. configs/mfif.py (or "
  "configs/mfif.py:smoke); fields are overridden with --config.<field>=...",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "Where checkpoints, metrics.jsonl and sample grids go (default: the config's workdir_default).",
)
_PRINT_CONFIG = flags.DEFINE_boolean(
  "print_config",
  False,
  "Print the resolved config (every field, with the --config.<field> overrides applied) and exit.",
)
flags.mark_flags_as_required(["config"])

#: Environment variable that shows the traceback of the errors reported in one line.
TRACEBACK_ENV = "FUSIONJAX_TRACEBACK"
# Exit code of a run stopped by its environment (full disk) or by a diverged loss.
_RUN_FAILED = 1


def _fail(error: BaseException, code: int) -> None:
  if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
    raise error
  message = (
    error.strerror if isinstance(error, checkpoints.DiskFullError) else error
  )  # No "[Errno 28]".
  print(f"train.py: error: {message}", file=sys.stderr)
  sys.exit(code)


def main(argv):
  """Trains the stage of ``--config`` in ``--workdir`` (resuming if it holds a checkpoint)."""
  if len(argv) > 1:
    print(
      f"train.py: error: unexpected arguments: {' '.join(argv[1:])}. Config fields are set with "
      "--config.<field>=value.",
      file=sys.stderr,
    )
    sys.exit(cli.USAGE_ERROR)
  config = _CONFIG.value
  try:
    config.task  # ml_collections reports a config file it could not load only when the config is used.
  except OSError as error:
    print(
      f"train.py: error: cannot load the config file ({str(error).splitlines()[-1].strip()}). Pass "
      "--config=configs/<stage>.py with stage mfif, meif or ivf, run from the repository root.",
      file=sys.stderr,
    )
    sys.exit(cli.USAGE_ERROR)
  if _PRINT_CONFIG.value:
    print(config)
    return
  runtime.configure()
  try:
    # Before the training code is imported: that import starts JAX's devices (fusionjax.train.distributed).
    distributed.initialize(config)
  except ValueError as error:
    _fail(error, cli.USAGE_ERROR)
  from fusionjax.train import loop  # pylint: disable=import-outside-toplevel

  logging.set_verbosity(logging.INFO)
  train_logging.quiet_library_logs()
  checkpoints.quiet_disk_full_reports()
  workdir = _WORKDIR.value or config.workdir_default
  try:
    result = loop.train_and_evaluate(config, workdir)
  except loop.InputError as error:
    _fail(error, cli.USAGE_ERROR)
  except FloatingPointError as error:  # The message names the step and the last good checkpoint.
    _fail(error, _RUN_FAILED)
  except OSError as error:
    if error.errno not in (errno.ENOSPC, errno.EDQUOT):
      raise
    _fail(error, _RUN_FAILED)
  logging.info(
    "Finished %s in %s: %s",
    config.task,
    workdir,
    ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.items())),
  )


if __name__ == "__main__":
  cli.run_absl(main)
