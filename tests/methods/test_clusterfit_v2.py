"""ClusterFit's second version (issue 27): transfer (0-4 -> 5-9), the random-id control in every cell,
K chosen on the 0-4 validation images, the paired claim C3, and its --quick chunks through the CLI."""
import json

import numpy as np
import pytest

from methods.clusterfit import preregistered as P
from methods.common.split import SPLIT_SEED, validation_indices
from methods.common.stats import paired_difference

from helpers.method_cli import quick_tune_and_choose, run_method  # noqa: E402


def test_parts_keep_classes_apart_and_never_train_on_validation_images():
    from addernet.data import get_dataset
    fit_src, val_src = P._parts(P.SOURCE, False, "val")
    fit_tgt, test_tgt = P._parts(P.TARGET, True, "test")
    train = get_dataset("mnist5k", None, train=True, augment=False, normalize=False)
    fit_idx, val_idx = validation_indices(train.targets, seed=SPLIT_SEED)
    assert len(fit_src) == int(np.isin(train.targets[fit_idx], P.SOURCE).sum())
    assert len(val_src) == int(np.isin(train.targets[val_idx], P.SOURCE).sum())
    assert len(fit_tgt) == int(np.isin(train.targets[fit_idx], P.TARGET).sum())
    assert {int(fit_src[i][1]) for i in range(len(fit_src))} == set(range(5))   # renumbered 0..4
    assert len(test_tgt) == int(np.isin(get_dataset("mnist5k", None, train=False).targets, P.TARGET).sum())


def _cell(network, p, k, seed, transfer, same=90.0):
    return {"network": network, "noise": p, "K": k, "seed": seed, "transfer": transfer, "same_task": same}


def test_choose_takes_the_k_of_the_best_mean_validation_probe_ties_to_the_smaller():
    chunks = [{"phase": "tune", "seed": s, "cells": [
        _cell("cf", 0.8, 5, s, None, 90.0), _cell("cf", 0.8, 10, s, None, 93.0 + s % 2),
        _cell("cf", 0.8, 25, s, None, 94.0 - s % 2), _cell("cf", 0.0, 5, s, None, 97.0),
        _cell("cf", 0.0, 10, s, None, 97.0)]} for s in (100, 101)]
    choice = P.choose(chunks)
    assert choice["ks"] == {"0.8": 10, "0.0": 5}      # 10 and 25 tie at 93.5: the smaller
    with pytest.raises(ValueError, match="tuning"):
        P.choose([{"phase": "eval", "cells": []}])


def test_merge_gives_claim_c3_and_the_random_id_control(tmp_path):
    pre, cf, rand = [80.0, 82.0, 79.0], [88.0, 87.5, 86.0], [84.0, 85.0, 83.5]
    chunks = [{"phase": "eval", "kind": "conv", "seed": s, "cells": [
        _cell("random", None, None, s, 70.0), _cell("pre", 0.8, None, s, pre[s]),
        _cell("cf", 0.8, 25, s, cf[s]), _cell("cf_rand", 0.8, 25, s, rand[s])]} for s in range(3)]
    m = P.merge_chunks(chunks, out=str(tmp_path))
    ref = paired_difference(cf, pre)
    assert m["claims"]["C3"]["mean"] == pytest.approx(ref["mean"]) and m["claims"]["C3"]["holds"] == ref["holds"]
    assert m["described"]["p=0.8: cf - cf_rand"]["mean"] == pytest.approx(np.mean(np.subtract(cf, rand)))
    assert (tmp_path / "clusterfit_v2_conv_summary.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="repeat"):
        P.merge_chunks(chunks + chunks[:1])


def _cli(*args, timeout=900):
    return run_method(["methods.clusterfit", "run"], *args, timeout=timeout)


def test_quick_chunks_run_with_every_control_and_say_they_are_too_small(tmp_path):
    choice, ev = quick_tune_and_choose(_cli, tmp_path), tmp_path / "e.json"
    ks = json.loads(choice.read_text())["ks"]
    assert set(ks) == {"0.8"} and ks["0.8"] in P.K_GRID
    r = _cli("--phase", "eval", "--quick", "--kind", "conv", "--seeds", "0", "--choice", str(choice),
             "--json", str(ev))
    assert r.returncode == 0, r.stderr[-3000:]
    e = json.loads(ev.read_text())
    assert e["note"] == P.TOO_SMALL
    assert [c["network"] for c in e["cells"]] == ["random", "pre", "cf", "cf_rand"]
    for c in e["cells"]:
        assert 0 <= c["transfer"] <= 100 and 0 <= c["same_task"] <= 100
    r = _cli("--phase", "eval", "--kind", "conv", "--seeds", "0")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
