"""MNIST / Fashion-MNIST from their idx files, parsed here (no torchvision).

idx layout: big-endian uint32 magic (0x00000803 = 2051 for uint8 rank-3 images,
0x00000801 = 2049 for uint8 rank-1 labels), one big-endian uint32 per dimension,
then the uint8 payload.
"""

import gzip
import os
import zlib

import numpy as np

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049

FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# torchvision's download layout is <root>/<ClassName>/raw; a bare folder works too.
LAYOUT_DIRS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def candidate_paths(root, name, filename):
    dirs = [root, os.path.join(root, LAYOUT_DIRS[name], "raw")]
    return [os.path.join(d, filename + ext) for d in dirs for ext in ("", ".gz")]


def find_file(root, name, filename):
    tried = candidate_paths(root, name, filename)
    for path in tried:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"{name}: could not find {filename}[.gz]; tried:\n  " + "\n  ".join(tried))


def _read_bytes(path):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise ValueError(f"{path}: unreadable or corrupt gzip data ({e})") from e


def read_idx(path, expected_magic):
    """Parse one idx file into a uint8 array, validating magic and size."""
    buf = _read_bytes(path)
    kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
    if len(buf) < 4:
        raise ValueError(f"{path}: truncated: {len(buf)} bytes, no idx header")
    magic = int.from_bytes(buf[:4], "big")
    if magic != expected_magic:
        raise ValueError(
            f"{path}: bad magic number {magic} (0x{magic:08x}); expected {expected_magic} "
            f"(0x{expected_magic:08x}) for an idx {kind} file")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise ValueError(f"{path}: truncated: header needs {header} bytes, file has {len(buf)}")
    dims = tuple(int.from_bytes(buf[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(buf) != expected:
        what = "truncated" if len(buf) < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: {what}: dims {dims} need {expected} bytes, file has {len(buf)}")
    return np.frombuffer(buf, dtype=np.uint8, offset=header).reshape(dims)


def load_idx_split(root, name, train=True):
    """(uint8 images N x 28 x 28, int64 labels) of MNIST or Fashion-MNIST."""
    img_name, lbl_name = FILES[bool(train)]
    img_path = find_file(root, name, img_name)
    lbl_path = find_file(root, name, lbl_name)
    images = read_idx(img_path, IMAGES_MAGIC)
    labels = read_idx(lbl_path, LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{img_path} has {len(images)} images but {lbl_path} has "
                         f"{len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{lbl_path}: label {labels.max()} outside 0..9")
    return images, labels
