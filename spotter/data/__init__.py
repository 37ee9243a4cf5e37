"""Data: what a model is trained, unlearned and measured on.

`core` holds the types (TensorSet, Splits, DatasetInfo), the forget/retain split and batching and
imports only torch; `catalog` names the registered datasets and finds their files; `formats`,
`imagefolder`, `faces` and `loaders` read IDX files, CIFAR pickles, image folders, face identity
folders, the synthetic set and surrogate images; `convert` turns a user's own arrays, Dataset or image
folder into a TensorSet and describes it. Nothing here imports a model, a method or a measure.
"""

from spotter.data.catalog import DATASETS, HOW_TO_GET, INFO, check_dataset_name, resolve_root
from spotter.data.convert import as_tensorset, describe
from spotter.data.core import (
    DatasetInfo,
    Splits,
    TensorSet,
    augment,
    batches,
    check_forget_classes,
    conform,
    make_splits,
    to_float,
)
from spotter.data.loaders import DataConfig, load, load_surrogate, prepare, synthetic

__all__ = [
    "DATASETS", "HOW_TO_GET", "INFO", "DataConfig", "DatasetInfo", "Splits", "TensorSet", "as_tensorset",
    "augment", "batches", "check_dataset_name", "check_forget_classes", "conform", "describe", "load",
    "load_surrogate", "make_splits", "prepare", "resolve_root", "synthetic", "to_float",
]  # fmt: skip
