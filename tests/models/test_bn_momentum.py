"""BatchNorm momentum 0.5 in adder models (issue 22): get_model, convert, load_official, methods.

The momentum only sets how fast the running statistics follow the batch statistics, so a
training run's weights are the same at any momentum; only eval mode sees the difference.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import addernet
from addernet.models import ADDER_BN_MOMENTUM, MODELS, get_model, set_bn_momentum
from methods.common.backbone import REGISTERED_BN_MOMENTUM, build_backbone


def _momenta(model):
    return {m.momentum for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"resnet50"}))
def test_adder_models_use_the_adder_momentum_and_cnn_twins_pytorchs(name):
    assert ADDER_BN_MOMENTUM == 0.5
    assert _momenta(get_model(name, kind="adder")) == {0.5}
    assert _momenta(get_model(name, kind="conv")) == {0.1}
    assert _momenta(MODELS[name](kind="adder")) == {0.5}  # the builders too, not only get_model
    assert _momenta(get_model(name, kind="adder", bn_momentum=0.1)) == {0.1}
    assert _momenta(get_model(name, kind="conv", bn_momentum=0.3)) == {0.3}


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, True, "0.5", float("nan")])
def test_bad_momentum_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="bn_momentum"):
        get_model("lenet5_bn", bn_momentum=bad)
    with pytest.raises(ValueError, match="bn_momentum"):
        addernet.convert(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Conv2d(2, 2, 3)), bn_momentum=bad)


def test_momentum_changes_the_running_statistics_and_never_the_weights():
    torch.manual_seed(0)
    fast = get_model("lenet5_bn", kind="adder")
    slow = set_bn_momentum(copy.deepcopy(fast), 0.1)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    for model in (fast, slow):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        for i in range(4):
            loss = nn.functional.cross_entropy(model(x[16 * i:16 * i + 16]), y[16 * i:16 * i + 16])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for (name, p), q in zip(fast.named_parameters(), slow.parameters()):
        assert torch.equal(p, q), name
    means = [(m.running_mean, n.running_mean) for m, n in zip(fast.modules(), slow.modules())
             if isinstance(m, nn.BatchNorm2d)]
    assert means and all(not torch.equal(a, b) for a, b in means)


class _UserNet(nn.Module):
    def __init__(self, momentum=0.2):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=momentum)
        self.a, self.bn_a = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=momentum)
        self.head, self.bn_h = nn.Linear(4, 3), nn.BatchNorm1d(3, momentum=momentum)

    def forward(self, x):
        x = torch.relu(self.bn_a(self.a(torch.relu(self.bn0(self.stem(x))))))
        return self.bn_h(self.head(x.mean(dim=(2, 3))))


def test_convert_sets_every_batchnorm_once_a_layer_is_converted():
    net = _UserNet()
    assert _momenta(addernet.convert(net)) == {0.5}
    assert _momenta(addernet.convert(net, bn_momentum=0.3)) == {0.3}
    assert _momenta(addernet.convert(net, bn_momentum=None)) == {0.2}
    assert _momenta(net) == {0.2}  # the user's model (not inplace) is untouched
    # Nothing converted (the only middle conv excluded): the user's BatchNorms stay as they are.
    assert _momenta(addernet.convert(net, exclude=["a"])) == {0.2}


def test_load_official_builds_the_official_momentum():
    ref = get_model("resnet20", kind="adder", bn_momentum=0.1)
    state = {f"module.{k}": v for k, v in ref.state_dict().items() if not k.endswith("input_mean")}  # no centring
    assert _momenta(addernet.models.load_official(state, "resnet20")) == {0.1}


def test_methods_build_their_backbones_as_the_registered_runs_did():
    assert REGISTERED_BN_MOMENTUM == 0.1
    for name in ("lenet5_bn", "tinynet"):
        assert _momenta(build_backbone(name, kind="adder")) == {0.1}
