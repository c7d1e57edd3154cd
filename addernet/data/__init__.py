"""Datasets for AdderNet experiments: pure torch + numpy, never torchvision,
never a download. Small digit sets are embedded; the paper's data sets are read
from a local root. See ``DATASETS`` for the names."""

from .info import DatasetInfo
from .loaders import make_loaders
from .registry import DATASETS, dataset_info, get_dataset

__all__ = ["DATASETS", "DatasetInfo", "dataset_info", "get_dataset", "make_loaders"]
