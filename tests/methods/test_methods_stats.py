"""methods.common.stats: the paired statistic of issue 27, checked against scipy.stats on fixed data."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from methods.common.report import save_figure
from methods.common.stats import describe, is_degenerate, paired_difference, summary_figure

# The official-schedule IGAM run's per-seed PGD-20 @0.1 (methods/README.md): IGAM and CE.
IGAM = [45.4, 72.2, 64.2]
CE = [37.0, 52.4, 47.8]
# Eight fixed pairs with ties and a negative difference.
A8 = [61.2, 58.0, 70.4, 66.6, 59.8, 64.0, 71.2, 63.3]
B8 = [55.0, 58.4, 61.0, 60.2, 57.8, 58.0, 66.1, 63.9]


def test_mean_interval_and_t_p_match_scipy_paired_t_test():
    r = paired_difference(A8, B8)
    ref = sps.ttest_rel(A8, B8)
    ci = ref.confidence_interval(0.95)
    d = np.subtract(A8, B8)
    assert r["n"] == 8 and r["diffs"] == pytest.approx(d.tolist())
    assert r["mean"] == pytest.approx(d.mean())
    assert r["std"] == pytest.approx(d.std(ddof=1))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert r["t_p"] == pytest.approx(ref.pvalue)
    assert r["wilcoxon_p"] == pytest.approx(sps.wilcoxon(A8, B8).pvalue)


def test_issue_numbers_reproduce():
    # issue 27 item 1: the paired differences +8.4 / +19.8 / +16.4 give t = 4.40, p = 0.048 (df 2)
    r = paired_difference(IGAM, CE)
    assert r["diffs"] == pytest.approx([8.4, 19.8, 16.4])
    assert r["t_p"] == pytest.approx(0.048, abs=5e-4)
    # the 95% interval still includes 0 with n = 3? t(0.975, 2) = 4.303 < 4.40, so it excludes it narrowly
    assert r["ci_low"] > 0 and r["holds"] is True


def test_verdict_follows_the_interval_and_the_direction():
    assert paired_difference(A8, B8)["holds"] is True            # CI above 0, claimed a > b
    assert paired_difference(A8, B8, direction=-1)["holds"] is False
    assert paired_difference(B8, A8, direction=-1)["holds"] is True
    noisy = paired_difference([1.0, -2.0, 3.0, -1.0], [0.0, 0.0, 0.0, 0.0])
    assert noisy["ci_low"] < 0 < noisy["ci_high"] and noisy["holds"] is False
    assert "does not exclude" in noisy["verdict"]


def test_one_seed_or_missing_value_is_not_judged():
    one = paired_difference([70.0], [60.0])
    assert one["holds"] is None and "fewer than 2" in one["verdict"] and math.isnan(one["ci_low"])
    gap = paired_difference([70.0, None, 65.0], [60.0, 61.0, 62.0])
    assert gap["holds"] is None and "no value" in gap["verdict"]
    assert math.isnan(gap["diffs"][1])


def test_constant_differences_and_all_ties():
    same = paired_difference([3.0, 4.0, 5.0], [1.0, 2.0, 3.0])
    assert same["ci_low"] == same["ci_high"] == 2.0 and same["holds"] is True
    tie = paired_difference([3.0, 4.0], [3.0, 4.0])
    assert tie["wilcoxon_p"] is None and tie["holds"] is False


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one value per seed"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="direction"):
        paired_difference([1.0, 2.0], [1.0, 2.0], direction=0)


def test_describe_prints_a_spread_only_with_two_seeds():
    assert describe([50.0]) == "50.0 (1 seed)"
    assert describe([50.0, 52.0]) == "51.0 ± 1.4"
    assert describe([]) == "n/a"


def test_is_degenerate_flags_a_constant_predictor():
    assert is_degenerate([2, 2, 2, 2])
    assert not is_degenerate([2, 2, 3, 2])
    assert not is_degenerate([])


def test_summary_figure_writes_a_png(tmp_path):
    comps = {"igam - ce": paired_difference(A8, B8), "one seed": paired_difference([1.0], [0.0])}
    path = save_figure(summary_figure(comps, title="t"), tmp_path / "s.png")
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError):
        summary_figure({}, title="t")
