"""addernet.fuse: BatchNorm and ReLU folded into the adder kernel's epilogue, outputs unchanged."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import addernet
from addernet import AdderConv2d
from addernet.fuse import FusedAdderConv2d

BACKENDS = [b for b in ("native", "reference") if b in addernet.backends.available()]


def _randomise_bn(model):
    # Non-trivial running statistics and affine parameters, so that a wrong fold shows.
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-20, 20)
            m.running_var.uniform_(50, 400)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)
    return model.eval()


class Block(nn.Module):
    """torchvision-style: one ReLU module used twice, so only the BatchNorms can be folded."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = AdderConv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = AdderConv2d(4, 4, 3, padding=1, bias=True), nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_resnet20_fused_matches_unfused(backend):
    model = _randomise_bn(addernet.models.resnet20(kind="adder"))
    x = torch.randn(2, 3, 32, 32)
    with addernet.backends.use_backend(backend):
        fused = addernet.fuse(model, example_input=x)
        # 18 3x3 adder layers and 2 downsample shortcuts, each with its BN; the ReLU after each
        # block's first layer too (the one after the residual add follows no adder layer).
        assert len(fused.fused_layers) == 20
        assert sorted(r for _, _, r in fused.fused_layers if r is not None) == sorted(
            f"layer{s}.{b}.relu1" for s in (1, 2, 3) for b in range(3))
        assert sum(isinstance(m, FusedAdderConv2d) for m in fused.modules()) == 20
        with torch.no_grad():
            ref, got = model(x), fused(x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_lenet5_bn_folds_every_adder_layers_bn_and_relu():
    model = _randomise_bn(addernet.models.lenet5_bn(kind="adder"))
    fused = addernet.fuse(model)  # torch.fx traces LeNet
    # All five layers are adder layers (the paper's MNIST network); the classifier's BN has no ReLU after it.
    assert fused.fused_layers == [("conv1", "bn1", "relu1"), ("conv2", "bn2", "relu2"), ("fc1", "bn3", "relu3"),
                                  ("fc2", "bn4", "relu4"), ("fc3", "bn5", None)]
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        ref, got = model(x), fused(x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_fx_path_and_shared_relu():
    model = _randomise_bn(nn.Sequential(Block(), Block()))
    fused = addernet.fuse(model)  # torch.fx traces this one
    assert [r for _, _, r in fused.fused_layers] == [None] * 4
    assert isinstance(fused[0].bn1, nn.Identity) and isinstance(fused[0].relu, nn.ReLU)
    x = torch.randn(3, 4, 7, 6)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-3)
    # the original is untouched
    assert isinstance(model[0].bn1, nn.BatchNorm2d)


def test_sequential_with_relu_and_padding_modes():
    model = _randomise_bn(nn.Sequential(
        AdderConv2d(3, 8, 3, padding=1, padding_mode="reflect"), nn.BatchNorm2d(8), nn.ReLU(),
        AdderConv2d(8, 8, (2, 4), padding="same"), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        AdderConv2d(8, 4, 1, stride=2), nn.BatchNorm2d(4)))
    x = torch.randn(2, 3, 9, 9)
    for fused in (addernet.fuse(model), addernet.fuse(model, example_input=x)):
        assert [(a, r) for a, _, r in fused.fused_layers] == [("0", "2"), ("3", "5"), ("6", None)]
        with torch.no_grad():
            torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-3)


def test_output_used_twice_is_not_fused():
    class TwoUses(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = AdderConv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y

    model = TwoUses().eval()
    assert addernet.fuse(model).fused_layers == []
    assert addernet.fuse(model, example_input=torch.randn(1, 2, 4, 4)).fused_layers == []


def test_errors():
    with pytest.raises(ValueError, match="eval"):
        addernet.fuse(nn.Sequential(AdderConv2d(1, 1, 1), nn.BatchNorm2d(1)))

    class DataDependent(nn.Module):  # Python control flow on values: torch.fx cannot trace it
        def __init__(self):
            super().__init__()
            self.conv, self.bn = AdderConv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)

        def forward(self, x):
            y = self.bn(self.conv(x))
            return y if y.sum() > 0 else -y

    with pytest.raises(RuntimeError, match="example_input"):
        addernet.fuse(DataDependent().eval())


def test_resnet20_traces_with_fx_despite_its_input_check():
    """The models' input-size check is opaque to torch.fx, so fx and the recorded run agree."""
    model = _randomise_bn(addernet.models.resnet20(kind="adder"))
    x = torch.randn(2, 3, 32, 32)
    assert addernet.fuse(model).fused_layers == addernet.fuse(model, example_input=x).fused_layers
