"""Datasets for AdderNet experiments: pure torch + numpy, never torchvision,
never a download. Small digit sets are embedded; the paper's data sets are read
from a local root. See ``DATASETS`` for the names.

``get_dataset``/``make_loaders`` also take dataset objects (``ArrayDataset`` over
in-memory tensors), class subsets, pseudo-labels and seeded label noise, and give
pixel-space [0, 1] data with ``normalize=False`` (``Normalize`` then goes in front of
the model). ``addernet.data.augment`` holds batched, seeded tensor augmentations.
"""

from . import augment
from .arrays import ArrayDataset
from .info import DatasetInfo
from .loaders import make_loaders
from .registry import DATASETS, dataset_info, get_dataset
from .transforms import Normalize
from .views import RelabelledDataset, TransformedDataset, symmetric_noise

__all__ = ["DATASETS", "ArrayDataset", "DatasetInfo", "Normalize", "RelabelledDataset", "TransformedDataset",
           "augment", "dataset_info", "get_dataset", "make_loaders", "symmetric_noise"]
