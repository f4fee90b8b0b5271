"""Where the tests find the benchmark images: ``$FUSIONJAX_TEST_DATA``, else ``../shared/data`` beside
the repository (as CI lays it out), else ``/work/shared/data``. Tests that need it skip when absent."""

import os
from pathlib import Path


def _locate() -> Path:
  if os.environ.get("FUSIONJAX_TEST_DATA"):
    return Path(os.environ["FUSIONJAX_TEST_DATA"])
  beside = Path(__file__).resolve().parents[2] / "shared" / "data"
  return beside if beside.is_dir() else Path("/work/shared/data")


SHARED_DATA = _locate()
