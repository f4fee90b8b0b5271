"""Data: benchmark readers, synthetic training pairs, the training pipeline and TFDS builders.

- Records and checks: :class:`Pair`, :func:`validate_pairs`, :func:`load_pair`, :func:`folder_pairs`.
- Readers: :func:`list_pairs` over the :data:`DATASETS` registry, :func:`list_images` for photographs.
- Synthesis: :func:`multi_focus_pair`, :func:`multi_exposure_pair`.
- Training batches: :func:`default_data_config` and :func:`resolve_data_config` (``config.py``: the
  fields, their defaults and checks), :func:`make_training_source` (``pipeline.py``),
  :class:`BatchIterator` (``prefetch.py``: the prefetch thread). ``shard_batch``, which splits a
  batch over devices, lives in :mod:`fusionjax.train.parallel`, its only user.
- Shipped samples: :func:`samples_dir`, :func:`sample_pair`, :func:`list_sample_pairs`.
- TFDS (imported on first use, as it loads tensorflow_datasets): ``fusionjax.data.tfds_builders``.
"""

from fusionjax.data.pairs import TASKS as TASKS
from fusionjax.data.pairs import LoadedPair as LoadedPair
from fusionjax.data.pairs import Pair as Pair
from fusionjax.data.pairs import folder_pairs as folder_pairs
from fusionjax.data.pairs import image_header as image_header
from fusionjax.data.pairs import load_pair as load_pair
from fusionjax.data.pairs import validate_pairs as validate_pairs
from fusionjax.data.config import default_data_config as default_data_config
from fusionjax.data.config import resolve_data_config as resolve_data_config
from fusionjax.data.pipeline import TrainingSource as TrainingSource
from fusionjax.data.pipeline import make_training_source as make_training_source
from fusionjax.data.prefetch import BatchIterator as BatchIterator
from fusionjax.data.readers import DATASETS as DATASETS
from fusionjax.data.readers import Reader as Reader
from fusionjax.data.readers import dataset_dir as dataset_dir
from fusionjax.data.readers import list_images as list_images
from fusionjax.data.readers import list_pairs as list_pairs
from fusionjax.data.sample_pairs import SAMPLE_DATASETS as SAMPLE_DATASETS
from fusionjax.data.sample_pairs import list_sample_pairs as list_sample_pairs
from fusionjax.data.sample_pairs import sample_pair as sample_pair
from fusionjax.data.sample_pairs import sample_path as sample_path
from fusionjax.data.sample_pairs import samples_dir as samples_dir
from fusionjax.data.synthetic import multi_exposure_pair as multi_exposure_pair
from fusionjax.data.synthetic import multi_focus_pair as multi_focus_pair
from fusionjax.data.synthetic import random_focus_mask as random_focus_mask
from fusionjax.data.synthetic import random_response_curve as random_response_curve


def __getattr__(name):
  # tensorflow_datasets takes about a second to import; only TFDS users pay for it.
  if name == "tfds_builders":
    import importlib  # pylint: disable=import-outside-toplevel

    return importlib.import_module("fusionjax.data.tfds_builders")
  if name == "shard_batch":
    # Moved to fusionjax.train.parallel; imported lazily here (train imports data, not the reverse).
    from fusionjax.train.parallel import shard_batch  # pylint: disable=import-outside-toplevel

    return shard_batch
  raise AttributeError(f"module 'fusionjax.data' has no attribute {name!r}")
