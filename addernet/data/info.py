"""Static facts about each dataset, kept apart from loading code so that model
builders can size their first/last layers without touching any files."""

from dataclasses import dataclass
from typing import Optional, Tuple

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    # None only for an ImageFolder whose root was not given: the class count
    # comes from the folder names, not from the format.
    num_classes: Optional[int]
    in_channels: int
    image_size: Tuple[int, int]
    # Per-channel statistics of the train split: what ``Normalize`` subtracts and divides by.
    # None for a dataset given as an object, whose statistics are not known here.
    mean: Optional[Tuple[float, ...]]
    std: Optional[Tuple[float, ...]]
    # False when the loaders give pixel-space [0, 1] images (``normalize=False``): then put
    # ``Normalize(info.mean, info.std)`` in front of the model.
    normalized: bool = True
