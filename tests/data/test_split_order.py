"""The embedded test splits come in a fixed, class-stratified shuffled order (issue 22), so that a
partial evaluation (``--limit-batches``) sees every class in its share, not the first digits only."""
from __future__ import annotations

import numpy as np
import pytest

from addernet.data.embedded import load_digits_split, load_mnist5k, stratified_order


def _prefix_balance(labels, classes):
    counts = np.zeros(classes, dtype=int)
    worst = 0
    for i, c in enumerate(labels, 1):
        counts[c] += 1
        worst = max(worst, counts.max() - counts.min())
    return worst


@pytest.mark.parametrize("load,minimum", [(load_mnist5k, 100), (load_digits_split, 35)])
def test_test_split_is_stratified_in_every_prefix(load, minimum):
    _, y = load(train=False)
    # While every class still has images, any prefix holds each class within one of the others.
    head = y[: 10 * minimum]
    assert _prefix_balance(head, 10) <= 1
    for k in (1, 5, minimum):
        assert np.array_equal(np.bincount(head[: 10 * k], minlength=10), np.full(10, k))
    assert not np.array_equal(y[:20], np.sort(y[:20]))  # not sorted by class


def test_order_is_fixed_and_a_permutation():
    x1, y1 = load_mnist5k(train=False)
    order = stratified_order(np.repeat(np.arange(10), 100))
    assert np.array_equal(np.sort(order), np.arange(1000))
    assert np.array_equal(order, stratified_order(np.repeat(np.arange(10), 100)))
    x2, y2 = load_mnist5k(train=False)
    assert np.array_equal(y1, y2) and np.array_equal(x1, x2)
    assert len(set(map(bytes, x1.reshape(len(x1), -1)))) == 1000


def test_uneven_classes_are_all_dealt():
    labels = np.array([0] * 5 + [1] * 2 + [2] * 3)
    order = stratified_order(labels, seed=3)
    assert sorted(order.tolist()) == list(range(10))
    assert sorted(labels[order[:6]].tolist()) == [0, 0, 1, 1, 2, 2]


def test_train_split_stays_sorted_by_row():
    # The train split's order is the loader's business (it shuffles); only the test order changed.
    x, y = load_mnist5k(train=True)
    assert len(y) == 4000 and np.array_equal(np.bincount(y), np.full(10, 400))
