"""methods.common.split: the validation split carved from the training images (issue 27)."""
import numpy as np
import pytest
import torch

from addernet.data import ArrayDataset, get_dataset
from methods.common.split import SPLIT_SEED, split_loaders, validation_indices, validation_split


def test_indices_are_stratified_disjoint_and_cover_the_set():
    targets = np.repeat(np.arange(4), [10, 20, 30, 41])
    fit, val = validation_indices(targets, fraction=0.2, seed=3)
    assert np.intersect1d(fit, val).size == 0
    assert np.array_equal(np.sort(np.concatenate([fit, val])), np.arange(targets.size))
    assert np.bincount(targets[val]).tolist() == [2, 4, 6, 8]
    again = validation_indices(targets, fraction=0.2, seed=3)
    assert np.array_equal(again[1], val)
    assert not np.array_equal(validation_indices(targets, fraction=0.2, seed=4)[1], val)


def test_bad_split_requests_are_refused():
    with pytest.raises(ValueError, match="fraction"):
        validation_indices([0, 0, 1, 1], fraction=1.0)
    with pytest.raises(ValueError, match="class 1 has 1"):
        validation_indices([0, 0, 1], fraction=0.5)
    with pytest.raises(ValueError, match="evaluate_on"):
        split_loaders("digits", None, 8, evaluate_on="train")


def test_split_of_a_dataset_returns_its_own_images():
    ds = ArrayDataset(torch.arange(20, dtype=torch.float32).view(20, 1, 1, 1) / 20, np.arange(20) % 2)
    fit, val = validation_split(ds, fraction=0.3, seed=0)
    assert len(fit) == 14 and len(val) == 6
    for part in (fit, val):
        for i in range(len(part)):
            x, y = part[i]
            assert y == int(part.targets[i]) == int(round(float(x.flatten()[0]) * 20)) % 2


def test_mnist5k_validation_images_never_reach_training_and_class_subsets_agree():
    train = get_dataset("mnist5k", None, train=True, augment=False, normalize=False)
    fit_idx, val_idx = validation_indices(train.targets, seed=SPLIT_SEED)
    assert len(val_idx) == 800 and len(fit_idx) == 3200
    tr, ev, info = split_loaders("mnist5k", None, 4000, evaluate_on="val", classes=[5, 6, 7, 8, 9])
    assert info.num_classes == 5 and info.normalized is False
    xs_fit = torch.cat([x for x, _ in tr])
    xs_val = torch.cat([x for x, _ in ev])
    assert xs_fit.min() >= 0 and xs_fit.max() <= 1
    # no validation image is a training image (compare exact pixels)
    fit_keys = {bytes(x.numpy().tobytes()) for x in xs_fit}
    assert not any(bytes(x.numpy().tobytes()) in fit_keys for x in xs_val)
    # the validation images of 5-9 are exactly the full split's validation images with labels 5-9
    expected = int(np.isin(train.targets[val_idx], [5, 6, 7, 8, 9]).sum())
    assert len(ev.dataset) == expected
    _, test, _ = split_loaders("mnist5k", None, 64, evaluate_on="test", classes=[5, 6, 7, 8, 9])
    assert len(test.dataset) == int(np.isin(get_dataset("mnist5k", None, train=False).targets, [5, 6, 7, 8, 9]).sum())
