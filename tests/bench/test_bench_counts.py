"""Op counts against counts derived by hand from each architecture's layer shapes, the adder ops'
FlopCounterMode formulas, and the energy arithmetic and table validation."""
import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import addernet
from addernet.bench import energy, flops
from addernet.bench.counts import count_ops
from addernet.models import get_model


def mac(cout, hw, cin, k):
    """Multiply-accumulates of a k x k conv producing cout maps of hw x hw from cin channels."""
    return cout * hw * hw * cin * k * k


# Per architecture, by hand from the layer shapes: (stem/classifier MACs, their bias adds, adder-able MACs).
# The ResNets' and VGG's stem and classifier stay multiplicative in both kinds, as in the paper; LeNet-5-BN
# is all-adder, as the paper's MNIST network (LENET_ENDS: its conv1 and fc3, adder layers too).
LENET_ENDS = mac(6, 28, 1, 5) + mac(10, 1, 84, 1)
LENET = dict(fixed=0, bias=0,
             body=LENET_ENDS + mac(16, 10, 6, 5) + mac(120, 1, 16, 5) + mac(84, 1, 120, 1))


def _cifar_resnet(blocks):
    body = 2 * blocks * mac(16, 32, 16, 3)                                                     # layer1
    for c, s in ((32, 16), (64, 8)):                                                           # layer2, layer3
        body += mac(c, s, c // 2, 3) + (2 * blocks - 1) * mac(c, s, c, 3) + mac(c, s, c // 2, 1)  # + 1x1 shortcut
    return dict(fixed=mac(16, 32, 3, 3) + mac(10, 1, 64, 1), bias=0, body=body)


RESNET18 = dict(
    fixed=mac(64, 112, 3, 7) + 1000 * 512, bias=1000,
    body=4 * mac(64, 56, 64, 3)
    + sum(mac(c, s, c // 2, 3) + 3 * mac(c, s, c, 3) + mac(c, s, c // 2, 1) for c, s in ((128, 28), (256, 14), (512, 7))),
)


def _resnet50_body():
    body, cin, s_in = 0, 64, 56
    for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        s = s_in // stride
        # First block: 1x1 at the input size, 3x3 strided, 1x1 expand, 1x1 strided shortcut.
        body += mac(planes, s_in, cin, 1) + mac(planes, s, planes, 3) + mac(4 * planes, s, planes, 1)
        body += mac(4 * planes, s, cin, 1)
        body += (blocks - 1) * (mac(planes, s, 4 * planes, 1) + mac(planes, s, planes, 3) + mac(4 * planes, s, planes, 1))
        cin, s_in = 4 * planes, s
    return body


RESNET50 = dict(fixed=mac(64, 112, 3, 7) + 1000 * 2048, bias=1000, body=_resnet50_body())
VGG = dict(fixed=mac(128, 32, 3, 3) + 10 * 512 * 4 * 4, bias=10,
           body=mac(128, 32, 128, 3) + mac(256, 16, 128, 3) + mac(256, 16, 256, 3) + mac(512, 8, 256, 3)
           + mac(512, 8, 512, 3))

HAND = {
    "lenet5_bn": ((1, 1, 28, 28), LENET),
    "resnet20": ((1, 3, 32, 32), _cifar_resnet(3)),
    "resnet32": ((1, 3, 32, 32), _cifar_resnet(5)),
    "resnet18": ((1, 3, 224, 224), RESNET18),
    "resnet50": ((1, 3, 224, 224), RESNET50),
    "vgg_small": ((1, 3, 32, 32), VGG),
}


def test_hand_values():
    # The derivations above, spelled out once: these are the numbers the paper's table rounds.
    assert _cifar_resnet(3)["body"] == 40_370_176 and _cifar_resnet(3)["fixed"] == 443_008
    assert RESNET18["fixed"] + RESNET18["body"] == 1_814_073_344
    assert RESNET50["fixed"] + RESNET50["body"] == 4_089_184_256
    assert LENET["fixed"] + LENET["body"] == 416_520  # the paper reports 435K
    assert LENET_ENDS == 118_440


@pytest.mark.parametrize("name", sorted(HAND))
@pytest.mark.parametrize("kind", ["conv", "adder"])
def test_weight_layer_counts(name, kind):
    shape, hand = HAND[name]
    classes = 1000 if name.startswith("resnet") and shape[-1] == 224 else 10
    c = count_ops(get_model(name, kind=kind, num_classes=classes, in_channels=shape[1]), shape)
    w = c.totals(("conv", "adder", "linear"))
    fixed, body, bias = hand["fixed"], hand["body"], hand["bias"]
    if kind == "conv":
        assert (w["mults"], w["adds"], w["abs"]) == (fixed + body, fixed + body + bias, 0)
    else:  # each adder tap: a subtraction and an accumulation (2 adds) and an abs
        assert (w["mults"], w["adds"], w["abs"]) == (fixed, fixed + bias + 2 * body, body)
    assert c.uncounted == []


def test_resnet20_whole_model_and_paper():
    bn = 16 * 32 * 32 * 7 + 32 * 16 * 16 * 7 + 64 * 8 * 8 * 7 + 10  # stem BN + 6 per stage + shortcut BN; final BN
    relu = 16 * 32 * 32 * 7 + 32 * 16 * 16 * 6 + 64 * 8 * 8 * 6     # stem + 2 per block
    residual = 3 * (16 * 32 * 32 + 32 * 16 * 16 + 64 * 8 * 8)        # x + identity, functional
    pool_adds, pool_mults = 64 * (8 * 8 - 1), 64
    body, fixed = _cifar_resnet(3)["body"], _cifar_resnet(3)["fixed"]
    cnn = count_ops(get_model("resnet20", kind="conv"), (1, 3, 32, 32)).totals()
    add = count_ops(get_model("resnet20", kind="adder"), (1, 3, 32, 32)).totals()
    assert cnn["mults"] == fixed + body + bn + pool_mults == 41_013_962
    assert cnn["adds"] == fixed + body + bn + pool_adds + residual
    assert cnn["cmps"] == add["cmps"] == relu
    assert add["mults"] == fixed + bn + pool_mults
    assert add["adds"] == fixed + 2 * body + bn + pool_adds + residual
    assert add["abs"] == body
    # The paper: about 41M mults + 41M adds for the CNN, about 82M adds for AdderNet.
    assert abs((fixed + body) / 41e6 - 1) < 0.01
    assert abs((fixed + 2 * body) / 82e6 - 1) < 0.02


def test_lenet_whole_model_and_pools():
    c = count_ops(get_model("lenet5_bn", kind="adder"), (1, 1, 28, 28))
    by = {t: c.totals((t,)) for t in ("bn", "relu", "maxpool")}
    assert by["bn"]["mults"] == by["bn"]["adds"] == 6 * 28 * 28 + 16 * 10 * 10 + 120 + 84 + 10
    assert by["relu"]["cmps"] == 6 * 28 * 28 + 16 * 10 * 10 + 120 + 84
    assert by["maxpool"]["cmps"] == (6 * 14 * 14 + 16 * 5 * 5) * (2 * 2 - 1)


def test_adaptive_pool_and_batch():
    c = count_ops(get_model("resnet18", kind="conv"), (2, 3, 224, 224))
    pool = c.totals(("avgpool",))
    assert (pool["adds"], pool["mults"]) == (2 * 512 * (7 * 7 - 1), 2 * 512)
    assert c.totals(("maxpool",))["cmps"] == 2 * 64 * 56 * 56 * (3 * 3 - 1)
    # An uneven adaptive window: 5 -> 3 gives windows [0,2), [1,4), [3,5): lengths 2+3+2 = 7 per dim.
    c = count_ops(nn.AdaptiveAvgPool2d(3), (1, 4, 5, 5))
    assert c.totals()["adds"] == 4 * (7 * 7 - 9)


def test_fold_bn():
    shape = (1, 3, 32, 32)
    bn = 16 * 32 * 32 * 7 + 32 * 16 * 16 * 7 + 64 * 8 * 8 * 7 + 10
    stem_bn, fc_bn = 16 * 32 * 32, 10
    cnn = count_ops(get_model("resnet20", kind="conv"), shape, fold_bn=True).totals(("bn",))
    add = count_ops(get_model("resnet20", kind="adder"), shape, fold_bn=True).totals(("bn",))
    # After a conv only the bias add is left; after an adder layer the scale stays a multiplication.
    assert (cnn["mults"], cnn["adds"]) == (0, bn)
    assert (add["mults"], add["adds"]) == (bn - stem_bn - fc_bn, bn)


def test_fused_adder_layers_count_as_their_folded_originals():
    # fuse() folds each adder layer's BatchNorm and ReLU into its epilogue: the counts must be those of
    # the unfused model counted with fold_bn=True, and nothing may go uncounted.
    model = get_model("lenet5_bn", kind="adder").eval()
    x = torch.randn(1, 1, 28, 28)
    fused = addernet.fuse(model, x)
    assert any(type(m).__name__ == "FusedAdderConv2d" for m in fused.modules())
    fc, ref = count_ops(fused, x.shape), count_ops(model, x.shape, fold_bn=True)
    assert fc.uncounted == []
    assert fc.totals() == ref.totals()
    assert fc.totals(("adder",))["taps"] == ref.totals(("adder",))["taps"] > 0
    conv1 = next(r for r in fc.layers if r.name == "conv1")
    out = 6 * 28 * 28
    assert (conv1.type, conv1.mults, conv1.cmps, conv1.abs) == ("adder", out, out, out * 25)


def test_uncounted_are_listed():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.act = nn.GELU()

        def forward(self, x):
            return torch.sigmoid(self.act(self.conv(x))) + 1

    c = count_ops(Net(), (1, 3, 8, 8))
    assert c.uncounted == ["GELU", "aten.sigmoid"]
    assert c.totals(("functional",))["adds"] == 4 * 6 * 6
    assert c.totals(("conv",))["adds"] == 4 * 6 * 6 * 27 + 4 * 6 * 6  # with the bias


def test_data_dependent_model_falls_back_to_a_real_run():
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4, bias=False)

        def forward(self, x):
            return self.fc(x) if x.sum().item() >= 0 else x[:, :4]  # .item() cannot run on meta

    assert count_ops(Gate(), (2, 8)).totals()["mults"] == 2 * 4 * 8


def test_model_is_left_untouched():
    m = get_model("resnet20", kind="adder").train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    count_ops(m, (1, 3, 32, 32))
    assert m.training and all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_register_without_native_is_a_noop(monkeypatch):
    from torch.utils.flop_counter import flop_registry

    before = dict(flop_registry)
    monkeypatch.setattr(flops, "_registered", False)
    monkeypatch.setattr(flops, "ops_built", lambda: False)
    assert flops.register() is False and flop_registry == before


native = pytest.mark.skipif(not addernet.backends.native.extension.native_available(), reason="native extension not built")


@native
def test_flop_counter_forward_backward():
    assert flops.register()
    layer = addernet.AdderConv2d(4, 6, 3, stride=2, padding=1, groups=2, bias=False, eta=None, backend="native")
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    taps = 2 * 6 * 5 * 5 * (4 // 2) * 3 * 3
    with FlopCounterMode(display=False) as fc:
        y = layer(x)
    assert fc.get_total_flops() == 2 * taps
    with FlopCounterMode(display=False) as fc:
        y.sum().backward()
    # input: 5 per tap; weight: 2 per tap + sum of G per output + W * sum(G) per weight (mul + sub)
    assert fc.get_total_flops() == 5 * taps + 2 * taps + 2 * 6 * 5 * 5 + 2 * 6 * 2 * 3 * 3
    x.requires_grad_(False)
    y = layer(x)
    with FlopCounterMode(display=False) as fc:
        y.sum().backward()
    assert fc.get_total_flops() == 2 * taps + 2 * 6 * 5 * 5 + 2 * 6 * 2 * 3 * 3


@native
def test_flop_counter_fused_and_conv_parity():
    x, w = torch.randn(1, 3, 8, 8), torch.randn(5, 3, 3, 3)
    taps = 5 * 6 * 6 * 27
    with FlopCounterMode(display=False) as fc:
        torch.ops.addernet.adder_conv2d_fused(x, w, torch.ones(5), None, [1, 1], [0, 0], [1, 1], 1, True)
    assert fc.get_total_flops() == 2 * taps + 5 * 6 * 6
    with FlopCounterMode(display=False) as fc:  # the same figure as a conv of that shape
        torch.nn.functional.conv2d(x, w)
    assert fc.get_total_flops() == 2 * taps


def test_energy_arithmetic():
    t = energy.load_energy_table()
    assert "Horowitz" in t.source and "ISSCC 2014" in t.source
    counts = {"mults": 10, "adds": 20, "acc_adds": 8, "abs": 5, "cmps": 3}
    assert t.energy_pj(counts, "float32") == pytest.approx(10 * 3.7 + (20 + 5 + 3) * 0.9)
    assert t.energy_pj(counts, "float16") == pytest.approx(10 * 1.1 + 28 * 0.4)
    # int8: products and distances accumulate in int32.
    assert t.energy_pj(counts, "int8") == pytest.approx(10 * 0.2 + (12 + 5 + 3) * 0.03 + 8 * 0.1)
    with pytest.raises(energy.EnergyTableError, match="no 'bfloat16'"):
        t.energy_pj(counts, "bfloat16")


def test_custom_table(tmp_path):
    good = {"source": "my chip", "unit": "pJ", "ops": {"float32": {"add": 1, "mult": 2}}}
    p = tmp_path / "t.json"
    p.write_text(json.dumps(good))
    t = energy.load_energy_table(str(p))
    assert t.energy_pj({"mults": 3, "adds": 4}, "float32") == 3 * 2 + 4 * 1
    assert "my chip" in t.citation("float32")


@pytest.mark.parametrize("bad, message", [
    ([1, 2], "expected a JSON object"),
    ({"unit": "pJ", "ops": {"float32": {"add": 1, "mult": 2}}}, "'source'"),
    ({"source": "x", "ops": {"float32": {"add": -1, "mult": 2}}}, r"ops\['float32'\]\['add'\]"),
    ({"source": "x", "ops": {"float32": {"add": 1}}}, r"\['mult'\]"),
    ({"source": "x", "ops": {"int8": {"add": 1, "mult": 1, "accumulate": "int32"}}}, "accumulate"),
    ({"source": "x", "unit": "nJ", "ops": {"f": {"add": 1, "mult": 1}}}, "'unit'"),
    ({"source": "x", "ops": {}}, "'ops'"),
    ({"source": "x", "ops": {"f": {"add": 1, "mult": 1, "div": 3}}}, "unknown keys"),
])
def test_malformed_tables(tmp_path, bad, message):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(energy.EnergyTableError, match=message):
        energy.load_energy_table(str(p))


def test_unreadable_tables(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with pytest.raises(energy.EnergyTableError, match="not valid JSON"):
        energy.load_energy_table(str(p))
    with pytest.raises(energy.EnergyTableError, match="cannot read"):
        energy.load_energy_table(str(tmp_path / "missing.json"))


# ----------------------------------------------------------------- cost tables: cycles

def test_shipped_tables_and_units():
    from addernet.bench import cost_table
    via = cost_table.load_table("via_nano_2000")
    assert via.unit == "cycles" and via.name == "via_nano_2000" and "VIA Nano 2000" in via.source
    assert via.entry("float32") == {"add": 2, "mult": 4}
    assert energy.load_energy_table().name == "energy_45nm" and energy.load_energy_table().unit == "pJ"
    with pytest.raises(energy.EnergyTableError, match="'unit' must be 'pJ' here, got 'cycles'"):
        energy.load_energy_table(cost_table.SHIPPED["via_nano_2000"])
    with pytest.raises(cost_table.CostTableError, match="in cycles, not pJ"):
        via.energy_pj({"mults": 1, "adds": 1}, "float32")
    with pytest.raises(cost_table.CostTableError, match="shipped tables: energy_45nm, via_nano_2000"):
        cost_table.load_table("via_nano_3000")


def test_paper_cycle_counts_on_the_papers_operation_counts():
    # The paper: LeNet-5 on a VIA Nano 2000 (mult 4 cycles, add 2) costs 2.6M cycles as a CNN
    # (435K mults + 435K adds) and 1.7M as an AdderNet (870K adds, no multiplications).
    from addernet.bench import cost_table
    via = cost_table.load_table("via_nano_2000")
    cnn, adder = via.cost({"mults": 435_000, "adds": 435_000}, "float32"), via.cost({"mults": 0, "adds": 870_000}, "float32")
    assert (cnn, adder) == (2_610_000, 1_740_000)
    assert round(cnn / 1e6, 1) == 2.6 and round(adder / 1e6, 1) == 1.7


def test_this_lenets_cycle_counts():
    # Ours, weight layers: 416,520 taps. CNN: 416,520 * (4 + 2) cycles. AdderNet: 2 adds per tap (the
    # paper's 870K) = 1,666,080 cycles, plus 416,520 abs that the paper does not count; priced as adds
    # they bring the adder net to the CNN's cycles exactly.
    from addernet.bench.model_bench import bench_model
    r = bench_model("lenet5_bn", latency=False, cost_tables=("via_nano_2000",))
    cyc = r["costs"]["via_nano_2000"]
    assert cyc["unit"] == "cycles"
    taps = 416_520
    assert cyc["per_kind"]["conv"]["weight_layers"] == 6 * taps == 2_499_120
    assert cyc["per_kind"]["adder"]["weight_layers"] == 2 * (2 * taps) + 2 * taps
    w = r["counts"]["adder"]["weight_layers"]
    assert 2 * (w["adds"] - w.get("acc_adds", 0)) + 2 * w["acc_adds"] == 2 * 2 * taps == 1_666_080
    # Whole model: BatchNorm's scale and shift, ReLU and pool comparisons on top.
    bn = 6 * 28 * 28 + 16 * 10 * 10 + 120 + 84 + 10
    cmps = 6 * 28 * 28 + 16 * 10 * 10 + 120 + 84 + (6 * 14 * 14 + 16 * 5 * 5) * 3
    assert cyc["per_kind"]["adder"]["total"] == cyc["per_kind"]["adder"]["weight_layers"] + bn * (4 + 2) + 2 * cmps


def test_cost_table_prices_abs_and_cmp_when_given(tmp_path):
    from addernet.bench import cost_table
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"source": "s", "unit": "cycles", "ops": {"float32": {"add": 2, "mult": 4, "abs": 0, "cmp": 1}}}))
    t = cost_table.load_table(str(p))
    assert t.cost({"mults": 1, "adds": 10, "abs": 5, "cmps": 3, "acc_adds": 4}, "float32") == 4 + 2 * 10 + 0 + 3
    assert "abs 0 cycles, cmp 1 cycles" in t.citation("float32")
    p.write_text(json.dumps({"source": "s", "unit": "cycles", "ops": {"float32": {"add": 2, "mult": 4, "abs": "free"}}}))
    with pytest.raises(cost_table.CostTableError, match=r"\['abs'\] must be a non-negative number of cycles"):
        cost_table.load_table(str(p))
