"""TensorFlow Datasets builders for the fusion benchmarks, built and read without TensorFlow.

Each builder reads a user's copy of a set (its ``manual_dir``) with the reader of the same name in
:mod:`fusionjax.data.readers` (the only place that knows the layouts), and writes ArrayRecord files.
Features are ``tfds.features.Tensor(shape=(None, None, None), dtype=uint8, encoding=ZLIB)`` and
``tfds.features.Text`` (both build and decode without TensorFlow; ``tfds.features.Image`` needs it).
The channel axis is None rather than fixed per set because grey images are stored as either one or
three channels across the sets (and :func:`fusionjax.imageio.load_image` folds three identical
channels to one); the stored array is exactly ``to_uint8(load_image(path))``, which for 8-bit files is
the file's pixels. Read the result with ``builder.as_data_source()`` (random access, no TensorFlow).

Builders register under ``fusionjax_<dataset>`` (e.g. ``fusionjax_tno``); the prefix keeps clear of
TFDS's own catalogue, which registers builders by class name for the whole process.

Usage::

  builder = build("tno", manual_dir="/path/to/data", data_dir="/path/to/tfds")
  source = data_source("tno", "/path/to/tfds", split="test")
  record = source[0]   # {'name': b'01', 'source1': uint8 (H, W, C), 'source2': ...}
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from fusionjax.data.readers import DATASETS, dataset_dir, get_reader, list_images, list_pairs
from fusionjax.imageio import load_image, to_uint8


def _image_feature(doc: str) -> tfds.features.Tensor:
  return tfds.features.Tensor(
    shape=(None, None, None), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB, doc=doc
  )


def _pixels(path: Path) -> np.ndarray:
  return to_uint8(load_image(path))


class _LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Builder of a set read from the user's copy (``manual_dir``), written as ArrayRecord."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}

  def __init__(self, *, file_format: str = "array_record", **kwargs):
    # ArrayRecord is the format that builds and reads with no TensorFlow installed.
    super().__init__(file_format=file_format, **kwargs)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS finds a packaged builder's file through `importlib_resources`, which etils imports lazily
    # and which is not a dependency here; this module's own path is the answer it would compute.
    return epath.Path(__file__)


class _FusionBuilder(_LocalBuilder, skip_registration=True):
  """Pairs of one benchmark: features ``name``, ``source1``..``sourceK`` and, if the set has one, ``reference``.

  Subclasses set DATASET (a :data:`fusionjax.data.readers.DATASETS` key), NUM_SOURCES and HAS_REFERENCE.
  """

  DATASET = ""
  NUM_SOURCES = 2
  HAS_REFERENCE = False

  def _info(self) -> tfds.core.DatasetInfo:
    reader = get_reader(self.DATASET)
    features = {"name": tfds.features.Text(doc="pair name, as the reader forms it")}
    for k in range(self.NUM_SOURCES):
      features[f"source{k + 1}"] = _image_feature(
        f"source {k + 1} (order of docs/DESIGN.md §2), uint8"
      )
    if self.HAS_REFERENCE:
      features["reference"] = _image_feature("reference image, uint8")
    return self.dataset_info_from_configs(
      description=reader.doc,
      features=tfds.features.FeaturesDict(features),
      supervised_keys=None,
    )

  def _split_generators(self, dl_manager):
    manual_dir = Path(dl_manager.manual_dir)
    reader = get_reader(self.DATASET)
    return {split: self._generate_examples(manual_dir, split) for split in reader.splits}

  def _generate_examples(self, manual_dir: Path, split: str):
    for pair in list_pairs(self.DATASET, manual_dir, split):
      record = {"name": pair.name}
      for k, path in enumerate(pair.sources):
        record[f"source{k + 1}"] = _pixels(path)
      if self.HAS_REFERENCE:
        record["reference"] = _pixels(pair.reference)
      yield pair.name, record


def _builder_class(
  dataset: str, class_name: str, num_sources: int = 2, has_reference: bool = False
):
  reader = get_reader(dataset)
  return type(
    class_name,
    (_FusionBuilder,),
    {
      "__doc__": f"TFDS builder of {dataset}: {reader.doc}",
      "__module__": __name__,
      "DATASET": dataset,
      "NUM_SOURCES": num_sources,
      "HAS_REFERENCE": has_reference,
      "MANUAL_DOWNLOAD_INSTRUCTIONS": (
        f"Point manual_dir at your copy of the {dataset} set (or at a data "
        f"root holding it). Expected: {reader.doc}"
      ),
    },
  )


FusionjaxTno = _builder_class("tno", "FusionjaxTno")
FusionjaxRoadscene = _builder_class("roadscene", "FusionjaxRoadscene")
FusionjaxLytro = _builder_class("lytro", "FusionjaxLytro")
FusionjaxLytroTriple = _builder_class("lytro_triple", "FusionjaxLytroTriple", num_sources=3)
FusionjaxMfiWhu = _builder_class("mfi_whu", "FusionjaxMfiWhu")
FusionjaxMefb = _builder_class("mefb", "FusionjaxMefb")
FusionjaxSice = _builder_class("sice", "FusionjaxSice", has_reference=True)
FusionjaxHarvardMriCt = _builder_class("harvard_mri_ct", "FusionjaxHarvardMriCt")
FusionjaxHarvardMriSpect = _builder_class("harvard_mri_spect", "FusionjaxHarvardMriSpect")
FusionjaxRealMff = _builder_class("real_mff", "FusionjaxRealMff", has_reference=True)


class FusionjaxCleanNatural(_LocalBuilder):
  """Single sharp photographs for synthesis: features ``name`` (relative path) and ``image``."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Point manual_dir at a data root with clean_natural/ or at a folder of "
    f"images. Expected: {DATASETS['clean_natural'].doc}"
  )

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      description=DATASETS["clean_natural"].doc,
      features=tfds.features.FeaturesDict(
        {
          "name": tfds.features.Text(doc="path relative to the image set's folder"),
          "image": _image_feature("the photograph, uint8"),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(Path(dl_manager.manual_dir))}

  def _generate_examples(self, manual_dir: Path):
    folder = dataset_dir("clean_natural", manual_dir)
    for path in list_images(manual_dir):
      name = path.relative_to(folder).as_posix()
      yield name, {"name": name, "image": _pixels(path)}


#: Dataset name -> builder class.
BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
  "tno": FusionjaxTno,
  "roadscene": FusionjaxRoadscene,
  "lytro": FusionjaxLytro,
  "lytro_triple": FusionjaxLytroTriple,
  "mfi_whu": FusionjaxMfiWhu,
  "mefb": FusionjaxMefb,
  "sice": FusionjaxSice,
  "harvard_mri_ct": FusionjaxHarvardMriCt,
  "harvard_mri_spect": FusionjaxHarvardMriSpect,
  "real_mff": FusionjaxRealMff,
  "clean_natural": FusionjaxCleanNatural,
}


def _builder_cls(dataset: str):
  if dataset not in BUILDERS:
    raise ValueError(
      f"No TFDS builder for {dataset!r}; builders exist for {', '.join(sorted(BUILDERS))}."
    )
  return BUILDERS[dataset]


def build(
  dataset: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike
) -> tfds.core.DatasetBuilder:
  """Builds (once) the TFDS version of a set from a local copy.

  Args:
    dataset: a :data:`BUILDERS` key.
    manual_dir: the user's copy of the set, or a data root holding it.
    data_dir: where TFDS writes ``fusionjax_<dataset>/1.0.0/``.

  Returns:
    The prepared builder; ``builder.as_data_source()`` reads it.
  """
  builder = _builder_cls(dataset)(data_dir=os.fspath(data_dir))
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(
      manual_dir=os.fspath(manual_dir), try_download_gcs=False
    )
  )
  return builder


def data_source(dataset: str, data_dir: str | os.PathLike, split: str):
  """Random-access reader of a built split (no TensorFlow): ``len(source)``, ``source[i]``.

  Args:
    dataset: a :data:`BUILDERS` key.
    data_dir: the TFDS data directory given to :func:`build`.
    split: a split of the set (e.g. 'test'; see the reader's doc).

  Returns:
    An ArrayRecord data source yielding dicts of numpy arrays (``name`` as bytes).

  Raises:
    FileNotFoundError: the set has not been built under ``data_dir``.
  """
  builder = _builder_cls(dataset)(data_dir=os.fspath(data_dir))
  if not builder.is_prepared():
    raise FileNotFoundError(
      f"{dataset} is not built under {data_dir}: run "
      f"fusionjax.data.tfds_builders.build({dataset!r}, manual_dir, {str(data_dir)!r}) first."
    )
  return builder.as_data_source(split=split)
