"""addernet.bench.vs_cudnn's table, on rows as a GPU run writes them (peak memory included), which
the CPU dry run cannot produce: each cell says its time and ratio, its skip reason or ERROR."""
from addernet.bench.vs_cudnn import markdown


def _row(layer, pass_, contender, ms=None, peak=None, **extra):
    row = dict(net="resnet20", layer=layer, pass_=pass_, contender=contender, **extra)
    if ms is not None:
        row.update(ms=ms, vs_cudnn_fp32=ms / 2.0, peak_mib=peak)
    return row


def test_the_table_of_a_gpu_run():
    rows = [_row("a", "fwd", "cudnn fp32", 2.0, 1.0), _row("a", "fwd", "toy", 4.0, 3.0),
            _row("a", "fwd", "slow", skipped="time budget"),
            _row("a", "fwd+bwd", "toy r1", 1.0, 10.4), _row("a", "fwd+bwd", "cudnn fp32", 2.0, 5.0),
            _row("a", "fwd+bwd", "toy r2", 3.0, None),
            _row("b", "fwd", "cudnn fp32", 2.0), _row("b", "fwd", "toy", error="boom")]
    lines = markdown(rows, "GPU", peak_of="toy").splitlines()
    assert "peak MiB above inputs of toy r1 / toy r2" in lines[0]
    assert lines[2] == ("| net | layer | fwd cudnn fp32 | fwd toy | fwd slow | fwd+bwd cudnn fp32 | fwd+bwd toy r1 "
                        "| fwd+bwd toy r2 | peak MiB toy f+b |")
    assert lines[4] == ("| resnet20 | a | 2.000 | 4.000 (2.0x) | skip: time budget | 2.000 | 1.000 (0.5x) "
                        "| 3.000 (1.5x) | 10 / - |")
    assert lines[5] == "| resnet20 | b | 2.000 | ERROR |  |  |  |  | - / - |"
