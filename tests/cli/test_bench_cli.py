"""`addernet bench` end to end: the files it writes, and the errors it gives before any work."""
import json

import pytest
import torch

import addernet
from addernet.cli import main


def test_counts_only(tmp_path, capsys):
    js, md, png = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.png"
    assert main(["bench", "--model", "resnet20", "--no-latency", "--dtype", "int8",
                 "--json", str(js), "--markdown", str(md), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    for text in ("Counting convention", "Horowitz", "int8", "AdderNet/CNN", "layer3.2.conv2"):
        assert text in out
    r = json.loads(js.read_text())
    assert r["counts"]["conv"]["totals"]["mults"] == 41_013_962
    assert r["counts"]["adder"]["weight_layers"]["mults"] == 443_008
    assert r["latency"] is None and len(r["layers"]) == 22
    assert r["counts"]["adder"]["energy_uJ"] < r["counts"]["conv"]["energy_uJ"]
    text = md.read_text()
    assert "| multiplications |" in text and "ISSCC 2014" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_with_latency(tmp_path, capsys):
    js, png = tmp_path / "r.json", tmp_path / "r.png"
    be = "native" if addernet.backends.native.extension.native_available() else "reference"
    threads_before = torch.get_num_threads()
    assert main(["bench", "--model", "lenet5_bn", "--batch-size", "2", "--backends", be, "--threads", "1",
                 "--repeats", "2", "--warmup", "0", "--json", str(js), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert f"inference ms [{be}]" in out and "1 threads" in out
    r = json.loads(js.read_text())
    assert r["threads"] == 1 and r["backends"] == [be]
    assert torch.get_num_threads() == threads_before  # restored after the run
    for mode in ("fwd", "train"):
        assert set(r["latency"][mode]) == {"conv", be}
        assert all(t["median_ms"] > 0 for t in r["latency"][mode].values())
        assert all(v > 0 for v in r["memory"][mode].values())
    timed = [row for row in r["layers"] if "latency" in row]
    assert [row["name"] for row in timed] == ["conv1", "conv2", "fc1", "fc2", "fc3"]  # all-adder, as the paper
    assert png.stat().st_size > 20_000


def test_unknown_model(capsys):
    with pytest.raises(SystemExit) as exit_:  # argparse's check: the flag is named, then exit 2
        main(["bench", "--model", "resnet21", "--no-latency"])
    assert exit_.value.code == 2
    assert "unknown model 'resnet21'" in capsys.readouterr().err


def test_input_size_comes_from_the_model_registry(capsys):
    from addernet.bench.model_bench import bench_model
    from addernet.models import model_spec

    r = bench_model("lenet5_bn", kind="conv", latency=False)
    assert tuple(r["input_shape"]) == model_spec("lenet5_bn").input_size
    # A fixed-size model refuses another size up front (lenet5_bn at 32x32 used to count 40 logits).
    assert main(["bench", "--model", "lenet5_bn", "--input", "1x32x32", "--no-latency"]) == 2
    err = capsys.readouterr().err
    assert "lenet5_bn takes 28x28 images only" in err and "Traceback" not in err
    # Other channel counts are fine, and the ImageNet ResNets take any size.
    assert bench_model("lenet5_bn", kind="conv", latency=False, input_size=(3, 28, 28))["input_shape"] == [3, 28, 28]
    assert bench_model("resnet18", kind="conv", latency=False, input_size=(3, 64, 64))["input_shape"] == [3, 64, 64]


def test_unknown_and_unavailable_backends(capsys, monkeypatch):
    assert main(["bench", "--model", "lenet5_bn", "--backends", "fast"]) == 2
    assert "unknown backend 'fast'; choose from native, triton, reference" in capsys.readouterr().err
    monkeypatch.setattr(addernet.backends, "why_unavailable", lambda name: "not built here")
    assert main(["bench", "--model", "lenet5_bn", "--backends", "native"]) == 2
    assert "backend 'native' is not available: not built here" in capsys.readouterr().err


def test_bad_energy_table_and_dtype(tmp_path, capsys):
    p = tmp_path / "t.json"
    p.write_text('{"source": "x", "ops": {"float32": {"add": "cheap", "mult": 1}}}')
    assert main(["bench", "--model", "lenet5_bn", "--no-latency", "--energy-table", str(p)]) == 2
    assert "malformed" in capsys.readouterr().err
    assert main(["bench", "--model", "lenet5_bn", "--no-latency", "--dtype", "float8"]) == 2
    assert "--dtype float8: the energy table has no such column" in capsys.readouterr().err
    assert main(["bench", "--model", "lenet5_bn", "--no-latency", "--cost-table", "via_nano_9"]) == 2
    err = capsys.readouterr().err
    assert "cannot read cost table via_nano_9" in err and "Traceback" not in err
    assert main(["bench", "--model", "lenet5_bn", "--no-latency", "--dtype", "int8", "--cost-table", "via_nano_2000"]) == 2
    assert "--cost-table via_nano_2000: it has no 'int8' column" in capsys.readouterr().err


def test_cycle_table(tmp_path, capsys):
    js = tmp_path / "r.json"
    assert main(["bench", "--model", "lenet5_bn", "--no-latency", "--cost-table", "via_nano_2000", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "cost table via_nano_2000: float32: add 2 cycles, mult 4 cycles" in out
    row = next(line for line in out.splitlines() if line.startswith("cycles (via_nano_2000, weight layers)"))
    assert row.split()[-3:] == ["2.5M", "2.5M", "1"]  # abs priced as an add: the adder net costs the CNN's cycles
    r = json.loads(js.read_text())
    assert r["costs"]["via_nano_2000"]["per_kind"]["conv"]["weight_layers"] == 2_499_120


@pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU")
def test_no_gpu(capsys):
    assert main(["bench", "--model", "lenet5_bn", "--device", "cuda"]) == 2
    assert "--device cuda: torch sees no CUDA device" in capsys.readouterr().err
