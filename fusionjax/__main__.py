"""``python -m fusionjax fuse A B -o OUT --ckpt DIR``: the ``fusionjax`` command without installing it."""

import sys

from fusionjax.cli import main

if __name__ == "__main__":
  sys.exit(main())
