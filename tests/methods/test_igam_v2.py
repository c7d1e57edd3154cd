"""IGAM's second version (issue 27): the new arms (non-robust teacher, gradient-norm penalty), the
pre-registered choice and merge rules, and each new arm's --quick chunk through the CLI."""
import json
import os

import pytest
import torch
import torch.nn.functional as F

from addernet.models import get_model
from methods.common.stats import describe, paired_difference
from methods.igam import IGAMStep, TeacherConfig, input_gradient, robust_teacher
from methods.igam import experiment as E
from methods.igam import preregistered as P
from methods.igam import teacher as teacher_mod

from helpers.method_cli import run_method  # noqa: E402


def _lenet(seed=0):
    torch.manual_seed(seed)
    return get_model("lenet5_bn", num_classes=5, kind="conv")


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 5, (n,), generator=g)


def test_gradnorm_step_is_ce_plus_lambda_times_the_squared_input_gradient_norm():
    model = _lenet().train()
    x, y = _batch()
    step = IGAMStep(None, beta=0.0, gamma=0.3, reduction="batchmean")
    loss = step(model, (x, y)).loss
    js, logits = input_gradient(model, x, y, target="prob", create_graph=True, return_logits=True)
    expected = F.cross_entropy(logits, y) + 0.3 * js.pow(2).flatten(1).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="needs a teacher"):
        IGAMStep(None, beta=1.0, gamma=0.0)


def test_make_student_step_builds_each_new_arm():
    robust, plain = _lenet(1), _lenet(2)
    cfg = E.Config(weights={"gradnorm": 0.05, "igam_plain": 0.5})
    g = E.make_student_step("gradnorm", robust, cfg, 10)
    assert g.teacher is None and g.beta == 0 and g.gamma == 0.05
    ip = E.make_student_step("igam_plain", plain, cfg, 10)
    assert ip.teacher is plain and ip.beta == cfg.beta and ip.gamma == 0.5
    ig = E.make_student_step("igam", robust, cfg, 10)
    assert ig.teacher is robust and ig.gamma == cfg.gamma     # not listed: gamma
    with pytest.raises(ValueError, match="student must be one of"):
        E.make_student_step("mixup", robust, cfg, 10)


def test_a_non_robust_teacher_trains_with_plain_cross_entropy(monkeypatch, tmp_path):
    def no_pgd(*_a, **_k):
        raise AssertionError("eps = 0 must not adversarially train")
    monkeypatch.setattr(teacher_mod, "PGDTrainingStep", no_pgd)
    x, y = _batch(16)
    cfg = TeacherConfig(eps=0.0, epochs=1)
    before = _lenet(3).state_dict()
    model = robust_teacher(cfg, lambda: _lenet(3), ([(x, y)], None), cache_dir=str(tmp_path))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())   # it trained
    assert cfg.key() != TeacherConfig().key()
    assert os.path.exists(tmp_path / f"teacher-{cfg.key()}.pt")


def _tune_chunk(seed, scores):
    cells = [{"arm": "ce", "weight": None, "clean": 98.0, "pgd20": {"0.1": 40.0}, "seed": seed}]
    for (arm, w), (clean, pgd20) in scores.items():
        cells.append({"arm": arm, "weight": w, "clean": clean, "pgd20": {"0.1": pgd20}, "seed": seed})
    return {"phase": "tune", "kind": "conv", "seed": seed, "cells": cells}


def test_choose_takes_the_most_robust_value_whose_clean_accuracy_is_within_five_points():
    scores = {("igam", 0.005): (97.0, 50.0), ("igam", 0.05): (95.0, 60.0), ("igam", 0.5): (90.0, 80.0),
              ("igam", 1.0): (60.0, 90.0),
              ("gradnorm", 0.005): (80.0, 50.0), ("gradnorm", 0.05): (70.0, 60.0), ("gradnorm", 0.5): (60.0, 70.0),
              ("gradnorm", 1.0): (50.0, 80.0),
              ("ldiff", 0.005): (97.0, 55.0), ("ldiff", 0.05): (97.0, 55.0), ("ldiff", 0.5): (97.0, 50.0),
              ("ldiff", 1.0): (97.0, 40.0)}
    choice = P.choose([_tune_chunk(100, scores), _tune_chunk(101, scores)])
    assert choice["weights"] == {"igam": 0.05,       # 0.5 and 1.0 lose more than 5 clean points
                                 "gradnorm": 0.005,  # none qualifies: the smallest value
                                 "ldiff": 0.005}     # a tie: grid order
    assert choice["seeds"] == [100, 101]
    with pytest.raises(ValueError, match="tuning"):
        P.choose([{"phase": "eval", "cells": []}])


def _eval_chunk(seed, strong):
    cells = [{"arm": a, "seed": seed, "clean": 95.0, "pgd20": {"0.1": v}, "strong": {"0.1": v},
              "square": {"accuracy": v + 1}, "transfer": 90.0 + seed, "grad_cosine": 0.1 * seed,
              "degenerate": a == "gradnorm" and seed == 2} for a, v in strong.items() if a != "igam_t03"]
    if "igam_t03" in strong:    # the eps-0.3 pair: its own teacher, and ce attacked at 0.3 too
        cells.append({"arm": "igam_t03", "seed": seed, "clean": 90.0, "pgd20": {"0.3": strong["igam_t03"]},
                      "strong": {"0.3": strong["igam_t03"]}, "degenerate": False})
        next(c for c in cells if c["arm"] == "ce")["strong"]["0.3"] = 10.0 + seed
    return {"phase": "eval", "kind": "conv", "seed": seed, "cells": cells}


def test_merge_computes_the_preregistered_claims_and_writes_the_summary_png(tmp_path):
    per_seed = {0: {"ce": 40.0, "igam": 55.0, "igam_plain": 45.0, "gradnorm": 41.0, "ldiff": 42.0},
                1: {"ce": 50.0, "igam": 62.0, "igam_plain": 49.0, "gradnorm": 52.0, "ldiff": 50.0},
                2: {"ce": 30.0, "igam": 47.0, "igam_plain": 36.0, "gradnorm": 30.0, "ldiff": 33.0}}
    m = P.merge_chunks([_eval_chunk(s, v) for s, v in per_seed.items()], out=str(tmp_path))
    igam = [per_seed[s]["igam"] for s in (0, 1, 2)]
    for name, other in (("C1", "ce"), ("C2", "igam_plain")):
        ref = paired_difference(igam, [per_seed[s][other] for s in (0, 1, 2)])
        assert m["claims"][name]["mean"] == pytest.approx(ref["mean"])
        assert m["claims"][name]["ci_low"] == pytest.approx(ref["ci_low"])
        assert m["claims"][name]["holds"] == ref["holds"]
    rows = {r["arm"]: r for r in m["rows"]}
    assert rows["gradnorm"]["degenerate seeds"] == "2"
    assert rows["ce"]["square@0.1"] == describe([41.0, 51.0, 31.0])
    assert rows["ce"]["transfer"] == describe([90.0, 91.0, 92.0])
    assert rows["igam"]["grad cosine"] == describe([0.0, 0.1, 0.2], digits=3)
    assert "igam (eps-0.3 teacher) - ce, strong @0.3" not in m["described"]     # no eps-0.3 cells here
    with_t03 = P.merge_chunks([_eval_chunk(s, {**v, "igam_t03": 20.0 + 2 * s}) for s, v in per_seed.items()])
    assert with_t03["described"]["igam (eps-0.3 teacher) - ce, strong @0.3"]["mean"] == pytest.approx(11.0)
    # chunks from before the secondary cells existed: those columns say so
    old = [_eval_chunk(s, v) for s, v in per_seed.items()]
    for chunk in old:
        for c in chunk["cells"]:
            del c["square"]
    assert {r["square@0.1"] for r in P.merge_chunks(old)["rows"]} == {"not run"}
    assert (tmp_path / "igam_v2_conv_summary.png").stat().st_size > 1000
    # a seed without its igam cell: the claims are not judged, not computed on fewer seeds
    broken = [_eval_chunk(s, {k: v for k, v in per_seed[s].items() if (s, k) != (1, "igam")}) for s in per_seed]
    assert P.merge_chunks(broken)["claims"]["C1"]["holds"] is None
    with pytest.raises(ValueError, match="repeat"):
        P.merge_chunks([_eval_chunk(0, per_seed[0]), _eval_chunk(0, per_seed[0])])


def _cli(*args, timeout=900):
    return run_method(["methods.igam"], *args, timeout=timeout)


@pytest.mark.slow  # about a minute: first in make test's queue (tests/conftest.py)
def test_quick_chunks_of_the_new_arms_run_and_say_they_are_too_small(tmp_path):
    tune = tmp_path / "tune.json"
    r = _cli("--phase", "tune", "--quick", "--kind", "conv", "--arms", "ce,gradnorm", "--seeds", "100",
             "--threads", "1", "--json", str(tune), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "too small to test the claim" in r.stdout
    t = json.loads(tune.read_text())
    assert t["note"] == P.TOO_SMALL and {(c["arm"], c["weight"]) for c in t["cells"]} == \
        {("ce", None), *(("gradnorm", w) for w in P.GRID)}
    choice = tmp_path / "choice.json"
    r = _cli("--phase", "tune", "--merge", str(tune), "--json", str(choice))
    assert r.returncode == 0, r.stderr[-3000:]
    weights = json.loads(choice.read_text())["weights"]
    assert set(weights) == {"gradnorm"} and weights["gradnorm"] in P.GRID
    choice.write_text(json.dumps({"weights": {**weights, "igam_plain": 0.005}}))
    ev = tmp_path / "eval.json"
    r = _cli("--phase", "eval", "--quick", "--kind", "conv", "--arms", "ce,igam_plain,gradnorm", "--seeds", "0",
             "--choice", str(choice), "--threads", "1", "--json", str(ev), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr[-3000:]
    e = json.loads(ev.read_text())
    assert e["note"] == P.TOO_SMALL and [c["arm"] for c in e["cells"]] == ["ce", "igam_plain", "gradnorm"]
    for c in e["cells"]:
        assert set(c["strong"]) == {"0.05", "0.1", "0.15"} and 0 <= c["strong"]["0.1"] <= c["clean"] <= 100
        assert isinstance(c["degenerate"], bool)
        # the secondary cells: a gradient-free attack, the transfer attack, the gradient cosine
        assert c["square"]["queries"] == 20 and c["square"]["images"] == 40
        assert 0 <= c["square"]["accuracy"] <= c["clean"] and 0 <= c["transfer"] <= 100
        assert -1 <= c["grad_cosine"] <= 1
    assert [c["disc_updates"] > 0 for c in e["cells"]] == [False, True, False]


@pytest.mark.slow  # about a minute: first in make test's queue (tests/conftest.py)
def test_phase_mistakes_exit_2_with_one_line(tmp_path):
    for args in (["--phase", "eval", "--kind", "conv"], ["--phase", "tune", "--kind", "both"],
                 ["--phase", "tune", "--kind", "conv", "--arms", "ce,mixup"],
                 ["--phase", "tune", "--kind", "conv", "--seeds", "100", "101"],
                 ["--phase", "eval", "--kind", "conv", "--choice", str(tmp_path / "missing.json")]):
        r = _cli(*args, timeout=120)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
