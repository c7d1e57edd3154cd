"""ImageNet-style folders: ``root/train/<class>/*.jpg`` and ``root/val/<class>/*``.

Images are decoded per item (a whole ImageNet does not fit in memory), with
Pillow imported lazily so the rest of the package works without it.

Unreadable images are found before training, not mid-epoch: the dataset opens every file's header
when it is made (``check="header"``: an empty file, a file that is no image, a format Pillow cannot
read), or decodes every file (``check="decode"``: also a truncated body; one full pass over the
data). What it finds is refused, the files named (``BadImageError``), unless the caller opts in to
``skip_bad=True``: then they are left out, listed in ``dataset.skipped`` and counted in a warning.
A file reached from two class folders (a symlink from one into another) would be one image under
two labels, and is refused.
"""

import os
import warnings

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


class BadImageError(ValueError):
    """Image files that cannot be decoded; the message names them."""


def _problem(Image, path, decode):
    """Why ``path`` is not a usable image ('' if it is), from its header or (``decode``) a full decode."""
    try:
        if os.path.getsize(path) == 0:
            return "an empty file"
        with Image.open(path) as im:
            if decode:
                im.convert("RGB").load()
    except (OSError, ValueError, SyntaxError) as e:  # PIL raises SyntaxError for some broken headers
        return str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
    return ""


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

    def __init__(self, root, train=True, transform=None, *, check="header", skip_bad=False):
        if check not in ("header", "decode", "none"):
            raise ValueError(f"imagefolder: check must be 'header', 'decode' or 'none', got {check!r}")
        self.root = root
        self.split_dir = os.path.join(root, SPLIT_DIRS[bool(train)])
        self.classes = find_classes(os.path.join(root, SPLIT_DIRS[True]))
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        if not os.path.isdir(self.split_dir):
            raise FileNotFoundError(f"imagefolder: expected a directory {self.split_dir}")
        self.samples, owner = [], {}
        for c in sorted(e.name for e in os.scandir(self.split_dir) if e.is_dir()):
            if c not in self.class_to_idx:
                raise ValueError(f"imagefolder: class folder {os.path.join(self.split_dir, c)} "
                                 f"has no counterpart in {os.path.join(root, 'train')}")
            for path in _image_files(os.path.join(self.split_dir, c)):
                real = os.path.realpath(path)
                if real in owner:
                    raise ValueError(f"imagefolder: {path} and {owner[real]} are the same file {real}, in "
                                     f"two class folders, so it would be one image under two labels; "
                                     f"remove the link from the folder of the wrong class")
                owner[real] = path
                self.samples.append((path, self.class_to_idx[c]))
        self.skipped = self._check(check, skip_bad) if check != "none" else []
        if not self.samples:
            raise FileNotFoundError(f"imagefolder: no {'readable ' * bool(self.skipped)}images "
                                    f"({', '.join(IMG_EXTENSIONS)}) under {self.split_dir}")
        self.targets = np.array([t for _, t in self.samples], dtype=np.int64)
        self.transform = transform

    def _check(self, check, skip_bad):
        """Open (or decode) every file; refuse the unreadable ones or (``skip_bad``) drop them."""
        Image = _pil_image()
        bad = [(path, why) for path, _ in self.samples if (why := _problem(Image, path, check == "decode"))]
        if not bad:
            return []
        names = "; ".join(f"{p} ({why})" for p, why in bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
        if not skip_bad:
            raise BadImageError(f"imagefolder: {len(bad)} of {len(self.samples)} files under {self.split_dir} are "
                                f"not readable images: {names}. Remove them, or pass skip_bad=True to train "
                                f"without them")
        dropped = {p for p, _ in bad}
        self.samples = [s for s in self.samples if s[0] not in dropped]
        warnings.warn(f"imagefolder: skipped {len(bad)} unreadable image{'s' * (len(bad) > 1)} under "
                      f"{self.split_dir} ({names})", stacklevel=3)
        return bad

    def __len__(self):
        return len(self.samples)

    def raw(self, index):
        """(uint8 H x W x 3 RGB array, label) – decoded, no transforms."""
        path, target = self.samples[index]
        Image = _pil_image()
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as e:
            raise BadImageError(f"{path}: could not decode image ({e}); ImageFolderDataset(check='decode') "
                                f"finds such files before training") from e
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
