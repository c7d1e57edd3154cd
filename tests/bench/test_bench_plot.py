"""The model benchmark's latency ratios carry error bars from the timings' spreads (issue 26 item 11)."""
import pytest

from addernet.bench import report
from helpers.figures import saved_figures  # noqa: F401  (a fixture)


def _timing(ms, spread, samples=5):
    return {"median_ms": ms, "spread": spread, "samples": samples}


def _result():
    layers = []
    for i, (adder, conv, spread) in enumerate([(2.0, 1.0, 0.1), (3.0, 1.5, 0.3), (1.0, 1.0, 0.0)]):
        lat = {mode: {"native": _timing(adder, spread), "conv": _timing(conv, spread, samples=5 if i < 2 else 3)}
               for mode in ("fwd", "train")}
        layers.append({"name": f"l{i}", "conv": {"mults": 1e6, "adds": 1e6}, "adder": {"mults": 0, "adds": 2e6},
                       "latency": lat})
    return {"model": "m", "layers": layers, "kinds": ["conv", "adder"], "backends": ["native"],
            "input_shape": [1, 28, 28], "batch_size": 8, "device": "cpu", "threads": 1}


def test_ratio_band_combines_the_spreads():
    r, down, up = report.ratio_band(_timing(2.0, 0.3), _timing(1.0, 0.4))
    assert r == 2.0 and r + up == pytest.approx(2.0 * 1.5) and r - down == pytest.approx(2.0 / 1.5)
    assert report.ratio_band(_timing(2.0, 0.3, samples=3), _timing(1.0, 0.4))[1:] == (0.0, 0.0)


def test_latency_ratios_have_error_bars(tmp_path, saved_figures):
    from matplotlib.container import ErrorbarContainer

    report.plot(_result(), str(tmp_path / "b.png"))
    rx = saved_figures[-1].axes[1]
    bars = [c for c in rx.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2  # inference and fwd+bwd
    for c in bars:
        (segments,) = c.lines[2]
        heights = [seg[1][1] / seg[0][1] for seg in segments.get_segments()]  # top / bottom, per layer
        expected = [(1 + (2 * 0.1 ** 2) ** 0.5) ** 2, (1 + (2 * 0.3 ** 2) ** 0.5) ** 2, 1.0]  # 3 samples: none
        assert heights == pytest.approx(expected)
