"""methods.igam.evaluation combines an adder model's attack modes per image (issue 27, item 6)."""
import contextlib

import pytest
import torch
from torch import nn

import methods.igam.evaluation as ev


class _Marker(nn.Module):
    """Predicts class 1 where pixel (0, 0) is above 0.5, else class 0."""

    def forward(self, x):
        z = x[:, 0, 0, 0]
        return torch.stack([0.5 - z, z - 0.5], 1)


@pytest.fixture
def two_modes_break_different_images(monkeypatch):
    """Pretend the model has adder layers; the 'paper' mode's attacks break the first half of the images,
    the 'exact' mode's the second half (pixel (0, 1) holds an image's place in the batch): each mode
    alone leaves half the images, together none. ``state["sizes"]`` records each attack's batch size."""
    state = {"mode": None, "sizes": []}

    @contextlib.contextmanager
    def mode(model, m):
        state["mode"] = m
        yield model
        state["mode"] = None

    def attack(model, x, y, **_kw):
        state["sizes"].append(len(x))
        out = x.clone()
        first_half = x[:, 0, 0, 1] < 0.5
        out[first_half if state["mode"] == "paper" else ~first_half, 0, 0, 0] = 1.0
        return out

    monkeypatch.setattr(ev, "adder_layers", lambda model: [object()])
    monkeypatch.setattr(ev, "adder_grad_mode", mode)
    monkeypatch.setattr(ev, "pgd", attack)
    monkeypatch.setattr(ev, "fgsm", attack)
    return state


def _loader(n=8):
    x = torch.zeros(n, 1, 2, 2)
    x[:, 0, 0, 1] = torch.arange(n) / n       # an image's place, read by the fixture's attack only
    return [(x, torch.zeros(n, dtype=torch.long))]


def test_robustness_takes_the_worst_mode_per_image(two_modes_break_different_images):
    r = ev.robustness(_Marker(), _loader(), eps=(0.1,), steps=1, adder_grad_modes=("paper", "exact"))
    assert r["clean"] == 1.0
    assert r["pgd_by_mode"] == {"paper": {0.1: 0.5}, "exact": {0.1: 0.5}}
    assert r["pgd"][0.1] == 0.0 and r["fgsm"] == 0.0     # the min of the aggregates would say 0.5


def test_strong_pgd_takes_the_worst_mode_per_image(two_modes_break_different_images):
    acc = ev.strong_pgd(_Marker(), _loader(), eps=0.1, steps=1, restarts=1, adder_grad_modes=("paper", "exact"))
    assert acc == 0.0
    assert ev.strong_pgd(_Marker(), _loader(), eps=0.1, steps=1, restarts=1, adder_grad_modes=("paper",)) == 0.5


def test_strong_pgd_attacks_only_the_images_still_standing(two_modes_break_different_images):
    state = two_modes_break_different_images
    assert ev.strong_pgd(_Marker(), _loader(), eps=0.1, steps=1, restarts=2, adder_grad_modes=("paper",)) == 0.5
    assert state["sizes"] == [8, 4, 4, 4]       # CE twice, then the margin twice: the broken half is done
    state["sizes"].clear()
    assert ev.strong_pgd(_Marker(), _loader(), eps=0.1, steps=1, restarts=2,
                         adder_grad_modes=("paper", "exact")) == 0.0
    assert state["sizes"] == [8, 4, 4, 4, 4]    # once every image has fallen, no more attacks


def test_robustness_flags_a_constant_predictor():
    r = ev.robustness(_Marker(), _loader(), eps=(0.0,), steps=1)
    assert r["degenerate"] is True and r["predictions"].tolist() == [0] * 8
    mixed = [(torch.tensor([0.0, 1.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2).contiguous(), torch.tensor([0, 1]))]
    assert ev.robustness(_Marker(), mixed, eps=(0.0,), steps=1)["degenerate"] is False


class _Masked(nn.Module):
    """Class 1 when the mean of the inputs rounded down to tenths exceeds 0.5. The rounding makes the
    input gradient zero everywhere (perfect gradient masking), yet the margin still moves in steps, so a
    search that only reads outputs can climb it. A uniform random start never moves the mean of 64 pixels
    far (sd about 0.02 at eps 0.25), so PGD stays where it started."""

    def forward(self, x):
        z = torch.floor(x * 10) / 10 + 0 * x        # + 0 * x: a graph, as a real masked model has
        score = 20 * (z.mean((1, 2, 3)) - 0.5)
        return torch.stack([torch.zeros_like(score), score], 1)


def test_square_breaks_a_model_whose_gradients_are_masked():
    x = torch.full((6, 1, 8, 8), 0.4)
    loader = [(x, torch.zeros(6, dtype=torch.long))]
    pgd_acc = ev.robustness(_Masked(), loader, eps=(0.25,), steps=5)["pgd"][0.25]
    assert pgd_acc == 1.0                      # PGD is blind: the gradient is zero
    assert ev.square_accuracy(_Masked(), loader, eps=0.25, queries=200, seed=0) == 0.0
    assert ev.square_accuracy(_Masked(), loader, eps=0.05, queries=200, seed=0) == 1.0   # 0.45 rounds to 0.4: out of reach


def test_square_counts_a_misclassified_clean_image_as_not_robust_and_refuses_bad_input():
    x = torch.cat([torch.full((2, 1, 8, 8), 0.4), torch.full((2, 1, 8, 8), 0.9)])
    loader = [(x, torch.zeros(4, dtype=torch.long))]              # the last two are wrong when clean
    assert ev.square_accuracy(_Masked(), loader, eps=0.01, queries=20) == 0.5
    with pytest.raises(ValueError, match="queries"):
        ev.square_accuracy(_Masked(), loader, eps=0.1, queries=0)
    with pytest.raises(ValueError, match="empty"):
        ev.square_accuracy(_Masked(), [], eps=0.1)
    with pytest.raises(ValueError, match="5x5"):
        ev.square_accuracy(_Masked(), [(torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long))], eps=0.1)
