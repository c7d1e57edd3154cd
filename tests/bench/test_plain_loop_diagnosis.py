"""benchmarks/plain_loop.py's BatchNorm diagnosis (issue 22): the precise-BN copy it compares the
running statistics with, and the BatchNorms its momentum options touch."""
import copy
import os
import sys

import pytest
import torch
from torch import nn

from addernet.models import get_model
from addernet.nn import AdderConv2d

from helpers.paths import ROOT  # noqa: E402
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import plain_loop as pl  # noqa: E402


def _trained_lenet(seed=0):
    """A centred LeNet-5-BN after a few SGD steps, so its running statistics lag the true ones."""
    torch.manual_seed(seed)
    model = get_model("lenet5_bn", kind="adder")
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for idx in torch.arange(128).split(32):
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, (x, y)


def test_precise_bn_holds_input_mean_and_averages_batch_statistics():
    model, (x, y) = _trained_lenet()
    before = copy.deepcopy(model.state_dict())
    true = pl.precise_bn(model, (x[:64], y[:64]))  # one batch: the statistics are that batch's
    for k, v in model.state_dict().items():  # the model itself is untouched
        assert torch.equal(v, before[k]), k
    for (n, a), b in zip(((n, m) for n, m in model.named_modules() if isinstance(m, AdderConv2d)),
                         (m for m in true.modules() if isinstance(m, AdderConv2d))):
        assert torch.equal(a.input_mean, b.input_mean), n  # the offset it evaluates with
    seen = {}
    probe = copy.deepcopy(model).train()
    for m in probe.modules():
        if isinstance(m, AdderConv2d):
            m.eval()
    bns = {n: m for n, m in probe.named_modules() if isinstance(m, nn.BatchNorm2d)}
    for n, m in bns.items():
        m.register_forward_hook(lambda mod, args, out, n=n: seen.__setitem__(n, args[0].detach()))
    order = torch.randperm(64, generator=torch.Generator().manual_seed(99))  # precise_bn's batch order
    with torch.no_grad():
        probe(x[:64][order])
    tbn = dict(true.named_modules())
    for n, inp in seen.items():
        torch.testing.assert_close(tbn[n].running_mean, inp.mean(dim=(0, 2, 3)))
        torch.testing.assert_close(tbn[n].running_var, inp.var(dim=(0, 2, 3), unbiased=True))
        assert tbn[n].momentum == bns[n].momentum  # restored after the cumulative average


def test_bn_diagnosis_is_zero_for_true_statistics():
    model, (x, y) = _trained_lenet()
    exact = pl.precise_bn(model, (x, y))
    d = pl.bn_diagnosis(exact, (x, y), (x, y))
    assert d["mean_err_sd_max"] < 1e-5 and d["abs_log_var_ratio_max"] < 1e-5
    assert d["acc_precise_bn"] == d["acc_true_mean_only"] == d["acc_true_var_only"]
    lagging = pl.bn_diagnosis(model, (x, y), (x, y))  # a few steps of SGD leave the running mean behind
    assert lagging["mean_err_sd_max"] > 0.01
    assert [layer["name"] for layer in lagging["layers"]] == [layer["name"] for layer in d["layers"]]


def test_momentum_options_touch_only_the_batchnorms_after_adder_layers():
    model = pl.make_model("resnet20", "adder", "center_mom0.3")
    touched = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and m.momentum == 0.3]
    assert len(touched) == 20 and "bn1" not in touched and "bn2" not in touched  # stem and head follow Conv2d
    assert all(m.bn_centered for m in model.modules() if isinstance(m, AdderConv2d))


def test_all_bn_momentum_options_reach_the_stem_and_head_and_the_cnn_twin():
    adder = pl.make_model("resnet20", "adder", "center_allmom0.5")
    cnn = pl.make_model("resnet20", "conv", "allmom0.5")
    for model in (adder, cnn):
        assert {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {0.5}
    assert all(m.bn_centered for m in adder.modules() if isinstance(m, AdderConv2d))
    assert {m.momentum for m in pl.make_model("resnet20", "conv", "-").modules() if isinstance(m, nn.BatchNorm2d)} == {0.1}


def test_eta_suffix_composes_with_the_momentum_option():
    model = pl.make_model("resnet20", "adder", "center_allmom0.5_eta0.5")
    adders = [m for m in model.modules() if isinstance(m, AdderConv2d)]
    assert adders and all(m.bn_centered and m.eta == 0.5 for m in adders)
    assert {m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {0.5}
    alone = pl.make_model("resnet20", "adder", "center_eta1.0")  # the older spelling: centred, momentum kept
    assert all(m.bn_centered and m.eta == 1.0 for m in alone.modules() if isinstance(m, AdderConv2d))
    assert {m.momentum for m in alone.modules() if isinstance(m, nn.BatchNorm2d)} == {0.1}
    default = pl.make_model("resnet20", "adder", "center")
    assert all(m.eta == 0.2 for m in default.modules() if isinstance(m, AdderConv2d))


@pytest.mark.parametrize("name", ["lenet", "resnet20", "usercnn"])
def test_lib_is_the_library_default_and_the_study_option_it_replaced(name):
    # The library final ('lib') builds what the study chose ('center_allmom0.5') with nothing set
    # on the model afterwards; '_eta<v>' reaches the adder layers through get_model/convert.
    def layout(model):
        return ([(m.bn_centered, m.eta) for m in model.modules() if isinstance(m, AdderConv2d)],
                [m.momentum for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)])
    lib, study = pl.make_model(name, "adder", "lib"), pl.make_model(name, "adder", "center_allmom0.5")
    assert layout(lib) == layout(study) and set(layout(lib)[1]) == {0.5}
    assert all(c and eta == 0.2 for c, eta in layout(lib)[0])
    assert {eta for _, eta in layout(pl.make_model(name, "adder", "lib_eta1.0"))[0]} == {1.0}
    assert layout(pl.make_model(name, "conv", "lib")) == layout(pl.make_model(name, "conv", "-"))


def test_an_unknown_option_is_refused_before_any_cell_trains(capsys):
    with pytest.raises(ValueError, match="unknown option 'centre'"):
        pl.make_model("lenet", "adder", "centre")
    with pytest.raises(SystemExit) as exc:
        pl.main(["--options", "center_allmom0.5_eat0.5", "--models", "lenet", "--seeds", "0"])
    assert exc.value.code == 2
    assert "unknown option 'center_allmom0.5_eat0.5'" in capsys.readouterr().err


def test_the_report_names_a_composed_option():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    from plain_loop_report import option_label
    assert option_label("center_allmom0.5_eta0.5") == "offset sum abs(w - mu), every BN momentum 0.5, eta 0.5 (official 0.2)"
    assert option_label("center_eta0.5") == "offset sum abs(w - mu), eta 0.5 (official 0.2)"
    assert option_label("center") == "offset sum abs(w - mu) (chosen)"
