"""ImageNet-style folders: ``root/train/<class>/*.jpg`` and ``root/val/<class>/*``.

Images are decoded per item (a whole ImageNet does not fit in memory), with
Pillow imported lazily so the rest of the package works without it.
"""

import os

import numpy as np
from torch.utils.data import Dataset

from .transforms import to_tensor

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif",
                  ".tiff", ".webp")
SPLIT_DIRS = {True: "train", False: "val"}


def _pil_image():
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("the 'imagefolder' dataset decodes images with Pillow "
                          "(`pip install pillow`)") from e
    return Image


def find_classes(split_dir):
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(f"imagefolder: expected a directory {split_dir} "
                                f"holding one sub-folder per class")
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    if not classes:
        raise FileNotFoundError(f"imagefolder: no class sub-folders in {split_dir}")
    return classes


def _image_files(folder):
    """The images under folder, symlinks followed, each real file once, in sorted path order.

    A symlink loop (a link to an ancestor) would otherwise be walked again and again, and a file
    reached through two links would count twice: each real directory is entered once, none that
    holds the class folder (its split folder, say, which holds the other classes) is entered, and
    each real file is kept at its first path.
    """
    top = os.path.realpath(folder)
    seen_dirs, found = set(), []
    for dirpath, dirnames, files in os.walk(folder, followlinks=True):
        st, real = os.stat(dirpath), os.path.realpath(dirpath)
        if (st.st_dev, st.st_ino) in seen_dirs or (real != top and os.path.commonpath([real, top]) == real):
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames.sort()  # so that which alias of a directory is entered does not vary
        found.append((dirpath, files))
    seen_files, paths = set(), []
    for dirpath, files in sorted(found):
        for fn in sorted(files):
            path = os.path.join(dirpath, fn)
            if not fn.lower().endswith(IMG_EXTENSIONS) or not os.path.isfile(path):
                continue
            real = os.path.realpath(path)
            if real not in seen_files:
                seen_files.add(real)
                paths.append(path)
    return paths


class ImageFolderDataset(Dataset):
    """Class index = position of the sub-folder name in sorted order. The class
    list always comes from the *train* folder so that train and val agree on
    indices even if val lacks a class."""

    def __init__(self, root, train=True, transform=None):
        self.root = root
        self.split_dir = os.path.join(root, SPLIT_DIRS[bool(train)])
        self.classes = find_classes(os.path.join(root, SPLIT_DIRS[True]))
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        if not os.path.isdir(self.split_dir):
            raise FileNotFoundError(f"imagefolder: expected a directory {self.split_dir}")
        self.samples = []
        for c in sorted(e.name for e in os.scandir(self.split_dir) if e.is_dir()):
            if c not in self.class_to_idx:
                raise ValueError(f"imagefolder: class folder {os.path.join(self.split_dir, c)} "
                                 f"has no counterpart in {os.path.join(root, 'train')}")
            for path in _image_files(os.path.join(self.split_dir, c)):
                self.samples.append((path, self.class_to_idx[c]))
        if not self.samples:
            raise FileNotFoundError(f"imagefolder: no images ({', '.join(IMG_EXTENSIONS)}) "
                                    f"under {self.split_dir}")
        self.targets = np.array([t for _, t in self.samples], dtype=np.int64)
        self.transform = transform

    def __len__(self):
        return len(self.samples)

    def raw(self, index):
        """(uint8 H x W x 3 RGB array, label) – decoded, no transforms."""
        path, target = self.samples[index]
        Image = _pil_image()
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: could not decode image ({e})") from e
        return arr, target

    def __getitem__(self, index):
        arr, target = self.raw(index)
        img = to_tensor(arr)
        if self.transform is not None:
            img = self.transform(img)
        return img, target

    def __repr__(self):
        return (f"ImageFolderDataset(root={self.root!r}, split={self.split_dir!r}, "
                f"n={len(self)}, classes={len(self.classes)})")
