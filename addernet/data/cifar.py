"""CIFAR-10 / CIFAR-100 from the official "python version" batches.

The batches are pickles, read through ``safe_pickle`` so a tampered file cannot
run code. Rows are 3072 uint8 values, channel-major (1024 R, 1024 G, 1024 B);
they are kept as uint8 N x 32 x 32 x 3 and converted per item.
"""

import os

import numpy as np

from .safe_pickle import safe_load

SPECS = {
    "cifar10": {
        "subdir": "cifar-10-batches-py",
        "archive": "cifar-10-python.tar.gz",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_key": "labels",
        "num_classes": 10,
    },
    "cifar100": {
        "subdir": "cifar-100-python",
        "archive": "cifar-100-python.tar.gz",
        "train": ["train"],
        "test": ["test"],
        "label_key": "fine_labels",
        "num_classes": 100,
    },
}


def _find_dir(root, name):
    spec = SPECS[name]
    dirs = [root, os.path.join(root, spec["subdir"])]
    first = spec["test"][0]
    for d in dirs:
        if os.path.isfile(os.path.join(d, first)):
            return d
    tried = [os.path.join(d, first) for d in dirs]
    hint = ""
    if os.path.isfile(os.path.join(root, spec["archive"])):
        hint = f"\n(found {spec['archive']} in {root}: extract it there first)"
    raise FileNotFoundError(f"{name}: could not find the python batches; tried:\n  "
                            + "\n  ".join(tried) + hint)


def _get(batch, key):
    # Python-3-written batches have bytes keys; Python-2 ones loaded as latin1 have str.
    if key.encode() in batch:
        return batch[key.encode()]
    return batch.get(key)


def _read_batch(path, label_key, num_classes):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"expected CIFAR batch file {path}")
    try:
        batch = safe_load(path)
    except Exception as e:  # UnpicklingError, EOFError, ... all mean "not a batch"
        raise ValueError(f"{path}: not a readable CIFAR pickle batch ({type(e).__name__}: {e})") from e
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    data, labels = _get(batch, "data"), _get(batch, label_key)
    if data is None or labels is None:
        raise ValueError(f"{path}: expected keys b'data' and b'{label_key}', "
                         f"found {sorted(map(repr, batch))}")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: 'data' must be uint8 of shape (N, 3072), got "
                         f"{data.dtype} {data.shape}")
    if labels.ndim != 1 or len(labels) != len(data) or labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: expected {len(data)} integer labels under "
                         f"'{label_key}', got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: labels must lie in 0..{num_classes - 1}")
    return data, labels.astype(np.int64)


def load_cifar_split(root, name, train=True):
    """(uint8 images N x 32 x 32 x 3, int64 labels) for 'cifar10' / 'cifar100'."""
    spec = SPECS[name]
    d = _find_dir(root, name)
    parts = [_read_batch(os.path.join(d, f), spec["label_key"], spec["num_classes"])
             for f in spec["train" if train else "test"]]
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels
