"""IGAM (methods/igam): input gradients, adapters, discriminator, the student step, the frozen teacher,
attacks, and a CLI smoke run."""
import copy
import dataclasses
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from addernet.models import get_model
from methods.common import pgd
from methods.igam import (CropPad, GradientDiscriminator, IGAMStep, TeacherConfig, Upsize, discriminator_loss,
                          finetune_head, input_gradient, l_diff, make_adapter, normalize_gradients,
                          rescale_gamma, robust_teacher, transfer_examples)


from helpers.paths import ROOT  # noqa: E402


def _lenet(kind="conv", classes=5, seed=0):
    torch.manual_seed(seed)
    return get_model("lenet5_bn", num_classes=classes, kind=kind)


def _batch(n=8, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g), torch.randint(0, 5, (n,), generator=g)


class TinyTeacher(nn.Module):
    """Any input size: conv + global pooling + a head, for adapter tests."""

    def __init__(self, classes=5):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, classes)

    def forward(self, x):
        return self.head(torch.tanh(self.conv(x)).mean((2, 3)))


# --- input gradients ---------------------------------------------------------------------------

def test_input_gradient_is_the_true_class_probability_gradient():
    model = _lenet().double().eval()
    x, y = _batch(4)
    x = x.double()
    j = input_gradient(model, x, y)
    # One sample by hand: d softmax(model(x))[y] / dx, alone (eval mode: samples are independent).
    xi = x[1:2].clone().requires_grad_(True)
    p = model(xi).softmax(1)[0, y[1]]
    (ref,) = torch.autograd.grad(p, xi)
    torch.testing.assert_close(j[1:2], ref)
    jl = input_gradient(model, x, y, target="loss")
    xi = x[1:2].clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(F.cross_entropy(model(xi), y[1:2]), xi)
    torch.testing.assert_close(jl[1:2], ref)
    assert not j.requires_grad


def test_input_gradient_rejects_bad_input():
    model = _lenet().eval()
    x, y = _batch(4)
    with pytest.raises(ValueError, match="target"):
        input_gradient(model, x, y, target="logit")
    with pytest.raises(ValueError, match="labels"):
        input_gradient(model, x, y[:2])
    with pytest.raises(ValueError, match="reduction"):
        l_diff(x, x, reduction="max")


def test_l_diff_reductions_and_gamma_rescaling():
    g = torch.Generator().manual_seed(1)
    js01, jt01 = torch.randn(6, 3, 4, 4, generator=g), torch.randn(6, 3, 4, 4, generator=g)
    n, p = 6, 3 * 4 * 4
    assert torch.isclose(l_diff(js01, jt01, "sum"), ((js01 - jt01) ** 2).sum())
    assert torch.isclose(l_diff(js01, jt01, "mean"), ((js01 - jt01) ** 2).mean())
    assert torch.isclose(l_diff(js01, jt01, "batchmean"), ((js01 - jt01) ** 2).sum() / n)
    # The same images in 0-255 pixels have gradients J / 255. gamma * L_diff must not change.
    official = 10.0 * l_diff(js01 / 255, jt01 / 255, "sum")
    for red in ("mean", "batchmean", "sum"):
        gamma = rescale_gamma(10.0, batch_size=n, num_pixels=p, to_reduction=red)
        assert torch.isclose(gamma * l_diff(js01, jt01, red), official, rtol=1e-5)
    assert rescale_gamma(10.0, batch_size=32, num_pixels=3072) == pytest.approx(10 * 32 * 3072 / 255 ** 2)


# --- adapters ----------------------------------------------------------------------------------

@pytest.mark.parametrize("adapter", [Upsize(32), Upsize((20, 36), mode="bicubic"), CropPad(32), CropPad(20),
                                     CropPad((24, 30)), make_adapter((1, 28, 28), (3, 32, 32))])
def test_gradients_flow_through_each_adapter_to_the_students_input(adapter):
    teacher = TinyTeacher()
    if isinstance(adapter, nn.Sequential):
        teacher.conv = nn.Conv2d(3, 4, 3, padding=1)
    teacher = teacher.double().eval()
    x, y = _batch(3, 28)
    x = x.double()
    j = input_gradient(teacher, x, y, adapter=adapter)
    assert j.shape == x.shape
    assert torch.isfinite(j).all() and j.abs().sum() > 0
    # Directional derivative check: J . v == (p(x + h v) - p(x - h v)) / 2h, summed over the batch.
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    prob = lambda z: teacher(adapter(z)).softmax(1).gather(1, y[:, None]).sum()
    h = 1e-6
    fd = (prob(x + h * v) - prob(x - h * v)) / (2 * h)
    assert torch.isclose((j * v).sum(), fd, rtol=1e-5, atol=1e-9)


def test_crop_pad_places_the_image():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    padded = CropPad(6)(x)
    assert padded.shape[-2:] == (6, 6) and torch.equal(padded[..., 1:5, 1:5], x) and padded.sum() == x.sum()
    assert torch.equal(CropPad(2)(x), x[..., 1:3, 1:3])
    assert torch.equal(CropPad(2, offset=(0, 2))(x), x[..., 0:2, 2:4])
    with pytest.raises(ValueError, match="offset"):
        CropPad(2, offset=(3, 0))(x)
    with pytest.raises(ValueError, match="adapter"):
        make_adapter((1, 28, 28), (1, 32, 32), how="warp")


def test_a_mismatched_teacher_size_is_a_clear_error():
    with pytest.raises(ValueError, match="adapter"):
        l_diff(torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, 32, 32))


# --- discriminator -----------------------------------------------------------------------------

def test_discriminator_architecture_matches_the_official_one():
    d = GradientDiscriminator((1, 28, 28))
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128, 256]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.bias is not None for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 5
    leaky = [m for m in d.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(leaky) == 5 and all(m.negative_slope == 0.1 for m in leaky)
    assert d.logit.in_features == 256 and d.logit.out_features == 2   # 28 -> 14 -> 7 -> 4 -> 2 -> 1 ('SAME')
    assert d(torch.randn(3, 1, 28, 28)).shape == (3, 2)
    with pytest.raises(ValueError, match="size"):
        d(torch.randn(3, 1, 32, 32))


def test_gradients_are_normalised_per_sample_and_scale_free():
    g = (torch.randn(4, 1, 6, 6) * torch.tensor([1e-4, 1.0, 30.0, 5.0]).view(4, 1, 1, 1) + 3.0).double()
    z = normalize_gradients(g)
    torch.testing.assert_close(z.mean((1, 2, 3)), torch.zeros(4, dtype=z.dtype), atol=1e-9, rtol=0)
    torch.testing.assert_close(z.flatten(1).norm(dim=1), torch.ones(4, dtype=z.dtype))
    d = GradientDiscriminator((1, 6, 6)).double().eval()
    torch.testing.assert_close(d(g), d(g * 1000 - 7))   # D sees the direction only


def test_student_and_teacher_gradients_share_batchnorm_statistics():
    torch.manual_seed(0)
    d = GradientDiscriminator((1, 28, 28)).train()
    js, jt = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    from methods.igam import discriminate
    logits, labels = discriminate(d, js, jt)
    assert labels.tolist() == [0] * 4 + [1] * 4
    torch.testing.assert_close(logits, d(torch.cat([js, jt])))
    # The student's logits depend on the teacher half through the shared batch statistics.
    logits2, _ = discriminate(d, js, jt * 0 + torch.randn(4, 1, 28, 28) * 5)
    assert not torch.allclose(logits[:4], logits2[:4])


def test_the_students_adversarial_term_falls_when_the_discriminator_is_fooled():
    torch.manual_seed(0)
    d = GradientDiscriminator((1, 16, 16))
    opt = torch.optim.SGD(d.parameters(), lr=0.05, momentum=0.9)
    blob = torch.zeros(1, 1, 16, 16)
    blob[..., 4:12, 4:12] = 1.0

    def teacher_like(n):   # structured gradients
        return blob + 0.3 * torch.randn(n, 1, 16, 16)

    def student_like(n):   # noise
        return torch.randn(n, 1, 16, 16)

    for _ in range(60):
        opt.zero_grad()
        loss, _ = discriminator_loss(d, student_like(32), teacher_like(32))
        loss.backward()
        opt.step()
    beta = 2.0
    with torch.no_grad():
        ce_caught, acc = discriminator_loss(d, student_like(32), teacher_like(32))
        ce_fooled, _ = discriminator_loss(d, teacher_like(32), teacher_like(32))
    assert acc > 0.9
    assert -beta * ce_fooled < -beta * ce_caught - 0.5


# --- the student step --------------------------------------------------------------------------

def _teacher(classes=5):
    return _lenet("conv", classes, seed=7).eval()


def test_igam_step_loss_is_ce_minus_beta_ce_d_plus_gamma_l_diff():
    teacher, student = _teacher(), _lenet(seed=1)
    x, y = _batch(8)
    step = IGAMStep(teacher, beta=2.0, gamma=3.0, input_size=(1, 28, 28), reduction="batchmean")
    state = copy.deepcopy(student.state_dict())
    disc_state = copy.deepcopy(step.discriminator.state_dict())
    out = step(student, (x, y))
    m = out.metrics
    assert set(m) >= {"loss", "ce", "l_diff", "adv", "d_acc", "acc"}
    torch.testing.assert_close(out.loss.detach(), m["ce"] + 3.0 * m["l_diff"] + m["adv"])
    # The student's backward leaves D's weights alone; D trains in its own step.
    out.loss.backward()
    assert all(p.grad is None for p in step.discriminator.parameters())
    assert all(p.grad is not None for p in student.parameters())
    # Recompute each term from scratch, with the same BN state.
    student.load_state_dict(state)
    step.discriminator.load_state_dict(disc_state)
    student.train()
    js, logits = input_gradient(student, x, y, create_graph=True, return_logits=True)
    jt = input_gradient(teacher, x, y)
    torch.testing.assert_close(m["ce"], F.cross_entropy(logits, y).detach())
    torch.testing.assert_close(m["l_diff"], ((js - jt) ** 2).sum().detach() / 8)
    ce_d, _ = discriminator_loss(step.discriminator, js, jt)
    torch.testing.assert_close(m["adv"], -2.0 * ce_d.detach())


def test_l_diff_reaches_every_student_parameter_conv():
    teacher, student = _teacher(), _lenet(seed=1)
    x, y = _batch(8)
    step = IGAMStep(teacher, beta=0.0, gamma=1.0)
    student.train()
    js = input_gradient(student, x, y, create_graph=True)
    loss = l_diff(js, input_gradient(teacher, x, y), "sum")
    grads = torch.autograd.grad(loss, list(student.parameters()), allow_unused=True)
    for (name, _), g in zip(student.named_parameters(), grads):
        assert g is not None and g.abs().sum() > 0, name
    assert step.discriminator is None


def _ldiff_param_grads(kind, backend):
    student = _lenet(kind, seed=1).double()
    for m in student.modules():
        if hasattr(m, "backend") and m.__class__.__name__ == "AdderConv2d":
            m.backend = backend
    teacher = _teacher().double()
    x, y = _batch(6)
    x = x.double()
    student.train()
    js = input_gradient(student, x, y, create_graph=True)
    loss = l_diff(js, input_gradient(teacher, x, y), "sum")
    return dict(zip([n for n, _ in student.named_parameters()],
                    torch.autograd.grad(loss, list(student.parameters()), allow_unused=True)))


def test_l_diff_reaches_every_student_parameter_on_native_equal_to_reference():
    ref = _ldiff_param_grads("adder", "reference")
    nat = _ldiff_param_grads("adder", "native")
    for name, g in ref.items():
        assert g is not None and g.abs().sum() > 0, f"reference: no gradient for {name}"
        assert nat[name] is not None, f"native: no gradient for {name}"
        torch.testing.assert_close(nat[name], g, rtol=1e-7, atol=1e-9, msg=name)


def test_l_diff_reaches_every_adder_student_parameter_on_reference():
    for name, g in _ldiff_param_grads("adder", "reference").items():
        assert g is not None and g.abs().sum() > 0, name


def test_discriminator_steps_after_every_fifth_student_step_and_not_in_warmup():
    teacher, student = _teacher(), _lenet(seed=1)
    step = IGAMStep(teacher, beta=1.0, gamma=1.0, input_size=(1, 28, 28), warmup_steps=3)
    opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.5)
    calls = []
    real = step.disc_optimizer.step
    step.disc_optimizer.step = lambda *a, **k: (calls.append(step.steps - 1), real(*a, **k))[1]
    for i in range(12):
        x, y = _batch(8, seed=i)
        out = step(student, (x, y))
        if i < 3:
            assert "l_diff" not in out.metrics
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        step.discriminator_step(student, opt)
    assert calls == [5, 10]
    assert step.disc_optimizer.param_groups[0]["lr"] == 0.01
    assert step.disc_optimizer.param_groups[0]["momentum"] == 0.5
    decays = {id(p): g["weight_decay"] for g in step.disc_optimizer.param_groups for p in g["params"]}
    assert decays[id(step.discriminator.logit.weight)] == 2e-4 and decays[id(step.discriminator.logit.bias)] == 0
    assert step.state_dict() == {"steps": 12, "disc_updates": 2}
    fresh = IGAMStep(teacher, beta=1.0, gamma=1.0, input_size=(1, 28, 28))
    fresh.load_state_dict(step.state_dict())
    assert (fresh.steps, fresh.disc_updates) == (12, 2)
    fresh.load_state_dict({"steps": 7})          # a checkpoint from before the counter
    assert (fresh.steps, fresh.disc_updates) == (7, 0)
    assert set(step.extra_state()) == {"igam_step", "igam_discriminator", "igam_disc_optimizer"}


def test_igam_step_does_not_change_the_teacher():
    teacher, student = _teacher(), _lenet(seed=1)
    before = copy.deepcopy(teacher.state_dict())
    step = IGAMStep(teacher, beta=1.0, gamma=1.0, input_size=(1, 28, 28))
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    for i in range(3):
        out = step(student, _batch(8, seed=i))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        step.discriminator_step(student, opt)
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_checkpoint_and_resume_carry_the_discriminator_and_the_step_counter(tmp_path):
    from addernet.train import fit

    def run(out, **kw):
        torch.manual_seed(5)
        student = _lenet(seed=1)
        step = IGAMStep(_teacher(), beta=1.0, gamma=1.0, input_size=(1, 28, 28))
        fit(student, _loaders(n=48), step=step, callbacks=step.callbacks(), extra_state=step.extra_state(),
            epochs=2, out=str(out), progress=False, log=None, limit_batches=3, lr=0.05, **kw)
        return student, step

    whole, whole_step = run(tmp_path / "a")
    run(tmp_path / "b", stop_after=1)
    resumed, resumed_step = run(tmp_path / "b", resume=True)
    assert resumed_step.steps == whole_step.steps == 6
    for a, b in ((whole, resumed), (whole_step.discriminator, resumed_step.discriminator)):
        for k, v in a.state_dict().items():
            torch.testing.assert_close(b.state_dict()[k], v, rtol=0, atol=0, msg=k)
    mom = lambda st: [s["momentum_buffer"] for s in st.disc_optimizer.state_dict()["state"].values()]
    for x, y in zip(mom(whole_step), mom(resumed_step)):
        assert torch.equal(x, y)


# --- teacher -----------------------------------------------------------------------------------

def _loaders(n=64, classes=5, seed=0, size=28):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    ds = torch.utils.data.TensorDataset(x, y)
    return (torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True, generator=g),
            torch.utils.data.DataLoader(ds, batch_size=16))


def test_head_finetuning_leaves_the_backbone_and_its_bn_buffers_unchanged():
    teacher = _lenet("conv", 5, seed=3)
    before = copy.deepcopy(teacher.state_dict())
    tuned = finetune_head(teacher, _loaders(classes=3), 3, epochs=2, lr=1e-2, progress=False)
    head_ptrs = {t.data_ptr() for t in tuned.head.state_dict().values()}
    changed_head = False
    for name, value in tuned.state_dict().items():
        if value.data_ptr() in head_ptrs:
            changed_head |= name not in before or value.shape != before[name].shape or not torch.equal(value, before[name])
            continue
        assert torch.equal(value, before[name]), f"backbone tensor {name} changed"
    assert changed_head
    assert not tuned.training and all(not p.requires_grad for p in tuned.parameters())
    assert tuned(torch.rand(2, 1, 28, 28)).shape == (2, 3)
    for k, v in teacher.state_dict().items():   # the robust teacher itself is untouched
        assert torch.equal(v, before[k])


def test_robust_teacher_is_cached_by_its_config(tmp_path):
    cfg = TeacherConfig(epochs=1, steps=2, limit_batches=2, batch_size=16)
    build = lambda: _lenet("conv", 5, seed=11)
    a = robust_teacher(cfg, build, _loaders(), cache_dir=str(tmp_path))
    files = os.listdir(tmp_path)
    assert len(files) == 1 and cfg.key() in files[0]
    b = robust_teacher(cfg, lambda: _lenet("conv", 5, seed=99), None, cache_dir=str(tmp_path))  # no data: cached
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert TeacherConfig(epochs=2).key() != TeacherConfig(epochs=1).key()


# --- attacks -----------------------------------------------------------------------------------

def test_pgd_stays_inside_the_eps_ball_and_the_pixel_range():
    model = _lenet().eval()
    x, y = _batch(8)
    x[:, :, :4] = 0.0
    x[:, :, -4:] = 1.0
    for eps in (0.05, 0.1, 0.15):
        adv = pgd(model, x, y, eps=eps, steps=5, generator=torch.Generator().manual_seed(0))
        assert (adv - x).abs().max() <= eps + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1
        assert (adv - x).abs().max() > 0.5 * eps
    test_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    for adv, yy in transfer_examples(model, test_loader, eps=0.1, steps=3):
        assert adv.min() >= 0 and adv.max() <= 1


def test_adder_grad_mode_switches_every_layer_and_restores_it():
    from methods.igam import adder_grad_mode
    from methods.igam.evaluation import adder_layers
    model = _lenet("adder")
    layers = adder_layers(model)
    assert layers and all(m.grad_mode == "paper" for m in layers)
    with adder_grad_mode(model, "exact"):
        assert all(m.grad_mode == "exact" for m in layers)
        x, y = _batch(4)
        # train mode: batch statistics (an untrained adder net's eval-mode BN leaves every ReLU off)
        g_exact = input_gradient(model.train(), x, y, target="loss")
    g_paper = input_gradient(model, x, y, target="loss")
    assert g_paper.abs().sum() > 0
    assert all(m.grad_mode == "paper" for m in layers)
    assert not torch.allclose(g_exact, g_paper)   # the two attacks really follow different gradients
    with pytest.raises(ValueError, match="grad_mode"):
        with adder_grad_mode(model, "hardtanh"):
            pass


def test_official_schedule_drops_the_lr_at_half_and_three_quarters_and_igam_is_on_for_the_last_eighth():
    from methods.igam.schedule import OfficialFactor, official_lr_schedule, official_warmup_epochs
    f = OfficialFactor(320)
    assert [f(t) for t in (0, 159, 160, 239, 240, 319)] == [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    # the official script's epochs: 320k steps, IGAM from step 280k
    assert official_warmup_epochs(320) == 280 and official_warmup_epochs(128) == 112
    assert official_warmup_epochs(8) == 7 and official_warmup_epochs(1) == 0
    with pytest.raises(ValueError, match="epochs"):
        official_warmup_epochs(0)
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = official_lr_schedule(opt, 8)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.05] * 4 + [0.005] * 2 + [0.0005] * 2)
    again = official_lr_schedule(torch.optim.SGD(model.parameters(), lr=0.05), 8)
    again.load_state_dict(sched.state_dict())     # a checkpoint resumes the same schedule
    assert again.lr_lambdas[0].total == 8 and again.last_epoch == 8


def test_official_config_is_the_preregistered_protocol():
    from methods.igam.experiment import official_config
    cfg = official_config()
    assert (cfg.schedule, cfg.epochs, cfg.warmup_epochs, cfg.student_batch_size) == ("official", 128, 112, 32)
    assert (cfg.beta, cfg.gamma, cfg.seeds, cfg.adapter_teacher) == (2.0, 1.0, (0, 1, 2), None)
    assert cfg.teacher.batch_size == 64   # the teacher (and its cache) stays the one of the cosine runs


@pytest.mark.parametrize("student", ["ce", "igam"])
def test_shared_warmup_branch_is_the_students_own_run(student, tmp_path):
    # The official-schedule run trains each seed's plain-CE warm-up once and continues every student
    # from it: that must be the run the student makes alone, bit for bit (D included).
    from methods.igam import experiment as E
    cfg = E.official_config(quick=True, epochs=4, warmup_epochs=3, limit_batches=3, progress=False)
    loaders = E._loaders(E.TARGET_CLASSES, cfg, 0, student=True)
    teacher = _lenet(seed=7)
    alone_info, branch_info = {}, {}
    alone = E.train_student(student, "conv", 0, teacher, cfg, loaders, info=alone_info)
    warm = E.train_warmup("conv", 0, cfg, loaders, str(tmp_path / "warm"))
    branch = E.train_student(student, "conv", 0, teacher, cfg, loaders, info=branch_info, warm_start=warm)
    a, b = alone.state_dict(), branch.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert alone_info == branch_info == {"disc_updates": 1 if student == "igam" else 0}
    with pytest.raises(ValueError, match="warm-up"):
        E.train_warmup("conv", 0, dataclasses.replace(cfg, warmup_epochs=0), loaders, str(tmp_path / "w0"))


def test_margin_loss_and_strong_pgd():
    from methods.igam.evaluation import margin_loss, strong_pgd
    logits = torch.tensor([[2.0, 1.0, -1.0], [0.0, 3.0, 1.0]])
    assert margin_loss(logits, torch.tensor([0, 2])).item() == pytest.approx((1.0 - 2.0) + (3.0 - 1.0))
    model = _lenet(seed=3).eval()
    x, y = _batch(16, seed=5)
    loader = [(x, y)]
    clean = (model(x).argmax(1) == y).float().mean().item()
    strong = strong_pgd(model, loader, eps=0.3, steps=5, restarts=1)
    assert 0.0 <= strong <= clean
    assert strong_pgd(model, loader, eps=0.0, steps=2, restarts=1) == pytest.approx(clean)
    adder = _lenet("adder", seed=3).eval()
    adder_clean = (adder(x).argmax(1) == y).float().mean().item()
    assert 0.0 <= strong_pgd(adder, loader, eps=0.3, steps=2, restarts=1) <= adder_clean


# --- CLI ---------------------------------------------------------------------------------------

def _cli(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "methods.igam", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


SMOKE = ("--quick", "--seeds", "1", "--epochs", "1", "--teacher-epochs", "1", "--limit-batches", "2",
         "--eval-samples", "8", "--no-progress", "--threads", "1")


@pytest.mark.parametrize("kind", ["conv", "adder"])
def test_cli_smoke(kind, tmp_path):
    import json
    path = tmp_path / "igam.json"
    extra = () if kind == "conv" else ("--no-adapter",)
    r = _cli(*SMOKE, "--kind", kind, "--json", str(path), "--out", str(tmp_path / "out"), *extra)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads(path.read_text())["rows"]
    expected = {("ce", "conv"), ("ldiff", "conv"), ("igam", "conv")} if kind == "conv" else {("ce", "adder"),
                                                                                            ("igam", "adder")}
    assert {(r["student"], r["kind"]) for r in rows} == expected
    for row in rows:
        assert set(row) == {"student", "kind", "clean", "fgsm", "pgd", "transfer", "degenerate"}
        assert set(row["pgd"]) == {"0.05", "0.1", "0.15"}
        for v in [*row["clean"], *row["fgsm"], *row["transfer"], *sum(row["pgd"].values(), [])]:
            assert 0 <= v <= 100
    assert "too small to test the claim" in r.stdout
    assert json.loads(path.read_text())["note"].startswith("quick run: too small")
    if kind == "conv":
        assert (tmp_path / "out" / "igam_gradients.png").stat().st_size > 1000


def test_cli_official_schedule_smoke(tmp_path):
    import json
    path = tmp_path / "igam.json"
    r = _cli(*SMOKE, "--schedule", "official", "--epochs", "4", "--limit-batches", "3", "--kind", "conv",
             "--students", "igam", "--json", str(path), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(path.read_text())
    assert result["config"]["schedule"] == "official" and result["config"]["warmup_epochs"] == 3
    assert result["config"]["student_batch_size"] == 32 and result["adapter_rows"] == []
    # 3 batches an epoch, IGAM on in epoch 4 (steps 9, 10, 11): D steps on step 10 alone (k = 5)
    assert result["details"][0]["disc_updates"] == [1]


@pytest.mark.slow  # about a minute: first in make test's queue (tests/conftest.py)
def test_cli_user_mistakes_exit_2_with_one_line():
    for args in (["--data", "cifar10"], ["--seeds", "x"], ["--schedule", "fast"],
                 ["--epochs", "2", "--warmup-epochs", "3"]):
        r = _cli(*args, timeout=120)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
