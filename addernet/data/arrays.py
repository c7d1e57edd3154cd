"""A dataset over in-memory arrays that converts one item at a time."""

import numpy as np
from torch.utils.data import Dataset

from .transforms import to_tensor


class ArrayDataset(Dataset):
    """Images kept as the raw uint8 arrays (N,H,W or N,H,W,C) and converted to a
    float CxHxW tensor per item: CIFAR stays at 150 MB instead of 600 MB as
    float32, and the untouched pixels remain inspectable via ``data``.

    ``data``/``targets`` hold exactly what was read from disk (no scaling, no
    normalisation), which is what tests and debugging want to look at.
    """

    def __init__(self, data, targets, transform=None, classes=None):
        if len(data) != len(targets):
            raise ValueError(f"{len(data)} images but {len(targets)} labels")
        self.data = data
        self.targets = np.asarray(targets, dtype=np.int64)
        self.transform = transform
        self.classes = classes

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        img = to_tensor(self.data[index])
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[index])

    def raw(self, index):
        """(uint8 array as stored, label) – bypasses conversion and transforms."""
        return self.data[index], int(self.targets[index])

    def __repr__(self):
        return (f"{type(self).__name__}(n={len(self)}, item_shape={tuple(self.data.shape[1:])}, "
                f"transform={self.transform!r})")

