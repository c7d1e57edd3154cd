"""A dataset over in-memory arrays that converts one item at a time."""

import numpy as np
import torch
from torch.utils.data import Dataset

from .transforms import to_tensor


class ArrayDataset(Dataset):
    """Images and integer labels held in memory; items are (float C x H x W tensor, int label).

    ``images`` is either
    - a torch tensor (N, C, H, W), as models take it: float values are used as they are, uint8
      ones are scaled to [0, 1]; or
    - a numpy array as read from disk, (N, H, W) or (N, H, W, C), uint8 (scaled to [0, 1]) or
      float (taken as already in [0, 1]). The registry's sets are kept this way: CIFAR stays at
      150 MB as uint8 instead of 600 MB as float32, and ``data`` shows the untouched pixels.

    ``labels``: N integers (a tensor, array or list), stored as the int64 numpy array ``targets``.
    ``transform`` is applied to each float image; ``classes`` optionally names the classes.
    """

    def __init__(self, images, labels, transform=None, classes=None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if isinstance(images, torch.Tensor):
            if images.dim() != 4:
                raise ValueError(f"image tensors must be (N, C, H, W), got shape {tuple(images.shape)}")
            if not (images.is_floating_point() or images.dtype == torch.uint8):
                raise ValueError(f"image tensors must be float or uint8, got {images.dtype}")
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        labels = np.asarray(labels)
        if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
            raise ValueError(f"labels must be N integers, got {labels.dtype} of shape {labels.shape}")
        self.data = images
        self.targets = labels.astype(np.int64)
        self.transform = transform
        self.classes = classes

    def __len__(self):
        return len(self.data)

    def _image(self, index):
        img = self.data[index]
        if isinstance(img, torch.Tensor):
            return img.float().div(255.0) if img.dtype == torch.uint8 else img
        return to_tensor(img)

    def __getitem__(self, index):
        img = self._image(index)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[index])

    def raw(self, index):
        """(image as stored, label) – bypasses conversion and transforms."""
        return self.data[index], int(self.targets[index])

    def __repr__(self):
        return (f"{type(self).__name__}(n={len(self)}, item_shape={tuple(self.data.shape[1:])}, "
                f"transform={self.transform!r})")
