"""BoWNet's second version (issue 27): RotNet with g(x), a random-init teacher's vocabulary, self-supervised
on 0-4 and few-shot on 5-9, the layer chosen on validation, the paired claim C4 and the degeneracy check."""
import json

import pytest

from methods.bownet import preregistered as P
from methods.common.stats import paired_difference

from helpers.method_cli import quick_tune_and_choose, run_method  # noqa: E402


def _cell(arm, seed, five, words=None, crop=None, best="pool2"):
    layers = {layer: {"5shot": five - (0 if layer == best else 3), "1shot": five - 20} for layer in P.LAYERS}
    return {"arm": arm, "seed": seed, "words": words, "crop": crop, "layers": layers}


def test_choose_picks_the_setting_then_each_arms_layer():
    chunks = []
    for s in (100, 101):
        cells = [_cell("random", s, 60), _cell("rotnet", s, 62, best="relu3"), _cell("rotnet_g", s, 63, crop=0.8),
                 _cell("rotnet_g", s, 61, crop=0.5)]
        for crop in P.CROPS:
            for w in P.WORDS:
                five = 70 + (5 if (w, crop) == (128, 0.5) else 0)
                cells += [_cell("bownet", s, five, w, crop, best="pool1"), _cell("bownet_randteacher", s, 65, w, crop)]
        chunks.append({"phase": "tune", "seed": s, "cells": cells})
    c = P.choose(chunks)
    assert (c["words"], c["crop"]) == (128, 0.5)
    assert c["layers"] == {"random": "pool2", "rotnet": "relu3", "rotnet_g": "pool2", "bownet": "pool1",
                           "bownet_randteacher": "pool2"}


def test_merge_gives_c4_and_calls_a_pretext_degenerate_when_it_does_not_beat_random(tmp_path):
    layers = {a: "pool2" for a in P.ARMS}
    per = {0: (60, 61, 70, 66, 60), 1: (62, 61, 73, 65, 61), 2: (59, 60, 71, 64, 60)}
    chunks = [{"phase": "eval", "kind": "conv", "seed": s, "choice": {"layers": layers},
               "cells": [_cell(a, s, v) for a, v in zip(("random", "rotnet_g", "bownet", "bownet_randteacher",
                                                         "rotnet"), vals)]} for s, vals in per.items()]
    m = P.merge_chunks(chunks, out=str(tmp_path))
    ref = paired_difference([per[s][2] for s in per], [per[s][1] for s in per])
    assert m["claims"]["C4"]["mean"] == pytest.approx(ref["mean"]) and m["claims"]["C4"]["holds"] == ref["holds"]
    assert m["rotation_pretext_degenerate"] is True      # rotnet_g - random: +0.33, interval includes 0
    assert (tmp_path / "bownet_v2_conv_summary.png").stat().st_size > 1000


def _cli(*args, timeout=1200):
    return run_method(["methods.bownet"], *args, timeout=timeout)


def test_quick_chunks_of_every_arm_run_and_say_they_are_too_small(tmp_path):
    choice, ev = quick_tune_and_choose(_cli, tmp_path), tmp_path / "e.json"
    c = json.loads(choice.read_text())
    assert set(c["layers"]) == set(P.ARMS) and set(c["layers"].values()) <= set(P.LAYERS)
    r = _cli("--phase", "eval", "--quick", "--kind", "conv", "--seeds", "0", "--choice", str(choice),
             "--json", str(ev))
    assert r.returncode == 0, r.stderr[-3000:]
    e = json.loads(ev.read_text())
    assert e["note"] == P.TOO_SMALL and [x["arm"] for x in e["cells"]] == list(P.ARMS)
    for x in e["cells"]:
        assert set(x["layers"]) == set(P.LAYERS)
        assert all(0 <= v["5shot"] <= 100 for v in x["layers"].values())
    r = _cli("--phase", "eval", "--kind", "conv")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_digits_quick_chunk_runs_on_tinynet_and_bad_data_is_refused():
    t = P.run_chunk("conv", "tune", 100, quick=True, data="digits", log=None)
    assert t["data"] == "digits" and t["note"] == P.TOO_SMALL
    assert {x["arm"] for x in t["cells"]} == set(P.ARMS)
    assert all(set(x["layers"]) == set(P.SETUPS["digits"][3]) for x in t["cells"])
    assert set(P.choose([t])["layers"].values()) <= set(P.SETUPS["digits"][3])
    with pytest.raises(ValueError, match="data must be one of"):
        P.run_chunk("conv", "tune", 100, quick=True, data="cifar10")
