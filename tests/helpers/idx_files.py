"""MNIST-format IDX files written by hand, for the data and CLI tests."""
import gzip

import numpy as np


def idx_bytes(arr, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_file(path, payload, gz=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path


def write_idx_set(folder, rng, n_train=6, n_test=3, gz=False, size=28):
    """The four MNIST files in ``folder``, of ``size`` x ``size`` random images; {train: (images, labels)}."""
    out = {}
    for train, (img, lbl) in {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                              False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}.items():
        n = n_train if train else n_test
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_file(folder / img, idx_bytes(images, 2051), gz)
        write_file(folder / lbl, idx_bytes(labels, 2049), gz)
        out[train] = (images, labels)
    return out
