"""addernet.convert: which convs become adder layers, and that they keep every hyper-parameter."""
import pytest
import torch
from torch import nn

from addernet.convert import LayerCount, convert, count_layers
from addernet.nn import AdderConv2d


class Block(nn.Module):
    """torchvision's BasicBlock, written out so the test needs no torchvision."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + idt)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(Block(8, 8), Block(8, 8))
        self.layer2 = nn.Sequential(Block(8, 16, 2), Block(16, 16))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(self.avgpool(self.layer2(self.layer1(x))).flatten(1))


def nested():
    return nn.ModuleDict({
        "stem": nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()),
        "body": nn.Sequential(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1)),
                              nn.ModuleDict({"a": nn.Conv2d(4, 4, 3), "b": nn.Conv2d(4, 6, 1)})),
        "head": nn.Conv2d(6, 2, 1),
    })


def names(model, kind):
    return count_layers(model).names[kind]


def test_tiny_resnet_all_but_endpoints():
    model = TinyResNet()
    out = convert(model)
    # 4 blocks x 2 convs + 1 downsample = 9 adder; conv1 (first) and fc (last, a Linear) stay.
    c = count_layers(out)
    assert (c.adder, c.conv, c.linear) == (9, 1, 1)
    assert c.names["conv"] == ["conv1"] and c.names["linear"] == ["fc"]
    assert "layer2.0.downsample.0" in c.names["adder"]
    assert out(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    # Not inplace: the original is untouched.
    assert count_layers(model).as_dict() == {"adder": 0, "conv": 10, "linear": 1}


def test_nested_moduledict_sequential_and_endpoints():
    model = nested()
    assert names(convert(model), "conv") == ["stem.0", "head"]
    assert names(convert(model, keep_first=False), "conv") == ["head"]
    assert names(convert(model, keep_last=False), "conv") == ["stem.0"]
    assert names(convert(model, keep_first=False, keep_last=False), "conv") == []
    assert names(convert(model), "adder") == ["body.0.0", "body.0.1", "body.1.a", "body.1.b"]


def test_linear_endpoint_is_never_converted():
    model = nn.Sequential(nn.Linear(4, 4), nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.Linear(4, 4))
    c = count_layers(convert(model))
    assert c.names == {"adder": ["1", "2"], "conv": [], "linear": ["0", "3"]}
    c = count_layers(convert(model, keep_first=False, keep_last=False))
    assert c.names == {"adder": ["1", "2"], "conv": [], "linear": ["0", "3"]}


def test_include_exclude_names_with_prefix_matching():
    model = TinyResNet()
    c = count_layers(convert(model, include=["layer1"]))
    assert c.names["adder"] == ["layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2"]
    c = count_layers(convert(model, include="layer2.0"))  # a bare string is one name
    assert c.names["adder"] == ["layer2.0.conv1", "layer2.0.conv2", "layer2.0.downsample.0"]
    c = count_layers(convert(model, exclude=["layer1", "layer2.0.downsample"]))
    assert c.names["adder"] == ["layer2.0.conv1", "layer2.0.conv2", "layer2.1.conv1", "layer2.1.conv2"]
    # Exact names, and exclude wins over include.
    c = count_layers(convert(model, include=["layer1.0.conv1", "layer1.1"], exclude=["layer1.1.conv2"]))
    assert c.names["adder"] == ["layer1.0.conv1", "layer1.1.conv1"]
    # keep_first applies on top of include.
    assert count_layers(convert(model, include=["conv1"])).adder == 0
    assert count_layers(convert(model, include=["conv1"], keep_first=False)).names["adder"] == ["conv1"]


def test_prefix_match_respects_dot_boundaries():
    model = nn.Sequential(*[nn.Conv2d(2, 2, 1) for _ in range(12)])
    c = count_layers(convert(model, include=["1"], keep_first=False, keep_last=False))
    assert c.names["adder"] == ["1"]  # not '10' and '11'


def test_include_exclude_predicate():
    model = TinyResNet()
    c = count_layers(convert(model, include=lambda name, m: m.kernel_size == (1, 1)))
    assert c.names["adder"] == ["layer2.0.downsample.0"]
    c = count_layers(convert(model, exclude=lambda name, m: name.endswith("conv2")))
    assert c.names["adder"] == ["layer1.0.conv1", "layer1.1.conv1", "layer2.0.conv1",
                                "layer2.0.downsample.0", "layer2.1.conv1"]


def test_unknown_names_are_an_error():
    with pytest.raises(ValueError, match="'layer9'.*'nope'"):
        convert(TinyResNet(), include=["nope", "layer1", "layer9"])
    with pytest.raises(ValueError, match="exclude"):
        convert(TinyResNet(), exclude=["layer"])  # only whole name parts match
    with pytest.raises(TypeError):
        convert(TinyResNet(), include=[1])


@pytest.mark.parametrize("kw", [
    dict(in_channels=4, out_channels=6, kernel_size=(3, 5), stride=(2, 1), padding=(1, 2), bias=True),
    dict(in_channels=4, out_channels=8, kernel_size=3, padding="same", dilation=2, groups=2, bias=False),
    dict(in_channels=4, out_channels=4, kernel_size=3, padding="valid", groups=4, bias=True),
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, padding_mode="reflect", bias=True),
    dict(in_channels=4, out_channels=6, kernel_size=2, padding=1, padding_mode="circular", bias=False),
])
def test_hyper_parameters_preserved(kw):
    conv = nn.Conv2d(**kw, dtype=torch.float64)
    model = nn.Sequential(nn.Conv2d(4, 4, 1, dtype=torch.float64), conv, nn.Conv2d(conv.out_channels, 1, 1, dtype=torch.float64))
    model.eval()
    new = convert(model)[1]
    assert type(new) is AdderConv2d
    for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                 "padding_mode"):
        assert getattr(new, attr) == getattr(conv, attr), attr
    assert (new.bias is None) == (conv.bias is None)
    assert new.weight.shape == conv.weight.shape and new.weight.dtype == torch.float64
    assert new.eta == 0.2 and not new.training
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    assert new(x).shape == conv(x).shape


def test_weights_fresh_unless_copied_and_eta_passed():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, bias=True), nn.Conv2d(4, 1, 1))
    fresh = convert(model, eta=None)[1]
    assert fresh.eta is None
    assert not torch.equal(fresh.weight, model[1].weight)
    assert torch.count_nonzero(fresh.bias) == 0
    # N(0, 1), as the official adder2d, not the conv's small kaiming-uniform weights.
    assert fresh.weight.abs().max() > model[1].weight.abs().max()
    copied = convert(model, copy_weights=True, eta=0.5)[1]
    assert copied.eta == 0.5
    assert torch.equal(copied.weight, model[1].weight) and torch.equal(copied.bias, model[1].bias)
    assert copied.weight.data_ptr() != model[1].weight.data_ptr()


def test_copy_versus_inplace():
    model = TinyResNet()
    copy = convert(model)
    assert copy is not model and count_layers(model).adder == 0
    assert copy.conv1.weight.data_ptr() != model.conv1.weight.data_ptr()
    same = convert(model, inplace=True)
    assert same is model and count_layers(model).adder == 9


def test_shared_module_replaced_everywhere_and_idempotent():
    shared = nn.Conv2d(2, 2, 3, padding=1)
    model = nn.Sequential(nn.Conv2d(1, 2, 1), shared, nn.ReLU(), shared, nn.Conv2d(2, 1, 1))
    out = convert(model)
    assert isinstance(out[1], AdderConv2d) and out[1] is out[3]
    again = convert(out)  # adder layers count as endpoints too, so the kept ones do not move inwards
    assert count_layers(again).names == count_layers(out).names


def test_root_conv_and_lazy_conv():
    conv = nn.Conv2d(2, 3, 3)
    assert convert(conv) is not conv and type(convert(conv)) is nn.Conv2d  # both first and last
    assert type(convert(conv, keep_first=False, keep_last=False)) is AdderConv2d
    lazy = nn.Sequential(nn.Conv2d(1, 2, 1), nn.LazyConv2d(3, 3), nn.Conv2d(3, 1, 1))
    with pytest.raises(ValueError, match="lazy"):
        convert(lazy)


def test_converted_model_trains():
    model = convert(TinyResNet())
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_count_layers_str_and_dict_access():
    c = count_layers(convert(TinyResNet()))
    assert isinstance(c, LayerCount)
    assert c["adder"] == c.adder == 9 and c.as_dict() == {"adder": 9, "conv": 1, "linear": 1}
    text = str(c)
    assert text.splitlines()[0] == "9 adder, 1 conv, 1 linear"
    assert "linear: fc" in text and "layer1.0.conv1" in text
