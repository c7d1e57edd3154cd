"""A CLI fuzz harness (issue 26): argument mutations from a table (out of range, NaN, wrong type,
wrong path kind) over every subcommand of `addernet` and of the three methods. Each case must end
in exit status 2, one line on stderr and no traceback, before any work.

The cases run in this process, one ``main(argv)`` each, so torch is imported once for all of them.
A case that gets past the checks would start training: an alarm stops it after ``LIMIT_S``, and it
fails as work begun.
"""
import contextlib
import io
import os
import pickle
import signal
import traceback

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LIMIT_S = 20


def _main(cli):
    if cli == "addernet":
        from addernet.cli import main
    else:
        import importlib

        main = importlib.import_module(f"methods.{cli}.__main__").main
    return main


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "dir").mkdir()
    (root / "file").write_text("x")
    (root / "garbage.pt").write_bytes(b"\x00not a torch file" * 10)
    with open(root / "evil.pt", "wb") as f:
        pickle.dump(_Evil(), f, protocol=2)  # what torch.save writes, so the refusal is by content
    torch.save({"not": "a model"}, root / "plain.pt")
    return {"OUT": str(root / "out"), "DIR": str(root / "dir"), "FILE": str(root / "file"),
            "UNDER_FILE": str(root / "file" / "sub"), "MISSING": str(root / "missing"),
            "GARBAGE": str(root / "garbage.pt"), "EVIL": str(root / "evil.pt"), "PLAIN": str(root / "plain.pt")}


NUM_POS_INT = ["0", "-1", "x", "1.5", "nan"]
NUM_NONNEG_INT = ["-1", "x", "nan"]
NUM_POS_FLOAT = ["nan", "inf", "-1", "0", "x"]
NUM_NONNEG_FLOAT = ["nan", "inf", "-1", "x"]
IN_FILE = ["MISSING", "DIR", "GARBAGE", "EVIL"]
OUT_DIR = ["FILE", "UNDER_FILE", ""]
OUT_FILE = ["DIR", "UNDER_FILE"]
DEVICE = ["cuda", "tpu", "cuda:7"]

Q = ["--no-progress"]
# (cli, base argv that would run, [(flag, bad values)]); a flag absent from the base is appended.
TABLE = [
    ("addernet", ["info"], [("--bogus", [None])]),
    ("addernet", ["train", "--data", "digits", "--model", "tinynet", "--epochs", "1", "--limit-batches", "1",
                  "--out", "OUT", *Q],
     [("--epochs", NUM_POS_INT), ("--batch-size", NUM_POS_INT[:3]), ("--lr", NUM_POS_FLOAT[:3]),
      ("--momentum", NUM_NONNEG_FLOAT[:2]), ("--eta", ["-0.2", "nan"]), ("--seed", ["-1", "x"]),
      ("--workers", ["-1"]), ("--out", OUT_DIR), ("--device", DEVICE[:2]), ("--data-root", ["MISSING"]),
      ("--data", ["cifar11"]), ("--model", ["resnet21"]), ("--kind", ["x"]), ("--resume", ["MISSING"]),
      ("--amp", ["fp8"]), ("--stop-after", ["0"])]),
    ("addernet", ["demo", "--epochs", "1", "--out", "OUT", *Q], [("--epochs", NUM_POS_INT[:3]), ("--out", OUT_DIR)]),
    ("addernet", ["bench", "--model", "lenet5_bn", "--no-latency"],
     [("--batch-size", NUM_POS_INT[:3]), ("--threads", ["0", "-2"]), ("--repeats", ["0"]),
      ("--max-seconds", NUM_POS_FLOAT[:3]), ("--model", ["resnet21"]), ("--device", ["tpu"]),
      ("--json", OUT_FILE), ("--markdown", ["DIR"]), ("--plot", ["DIR"]), ("--input", ["3x32", "0x28x28"]),
      ("--energy-table", ["MISSING", "GARBAGE"])]),
    ("igam", ["--quick", "--out", "OUT", *Q],
     [("--epochs", NUM_POS_INT[:3]), ("--seeds", ["-1", "x"]), ("--beta", ["nan", "inf", "-1"]),
      ("--gamma", ["nan", "-1"]), ("--eval-samples", ["0"]), ("--device", DEVICE), ("--out", OUT_DIR[:2]),
      ("--json", OUT_FILE), ("--kind", ["x"]), ("--data", ["cifar10"]), ("--threads", ["0"]),
      ("--merge", ["MISSING", "GARBAGE"])]),
    ("bownet", ["--quick", "--out", "OUT", *Q],
     [("--seeds", ["-1", "x"]), ("--crop-scale", [["1", "0.5"], ["0", "0.5"], ["nan", "1"]]),
      ("--lr", ["-0.1", "nan", "0"]), ("--train-subset", ["0", "-5"]), ("--inv-delta", ["nan", "-1", "inf"]),
      ("--words", ["0", "-1"]), ("--batch-size", ["0"]), ("--episodes", ["0"]), ("--rotnet-epochs", ["0", "-1"]),
      ("--device", DEVICE), ("--data-root", ["MISSING", "FILE"]), ("--data", ["cifar10", "x"]),
      ("--out", OUT_DIR[:2]), ("--json", OUT_FILE), ("--kind", ["x"]), ("--stages", ["x"]), ("--threads", ["-1"])]),
    ("clusterfit", ["run", "--quick", "--out", "OUT", *Q],
     [("--kind", ["x"]), ("--seeds", ["-1"]), ("--pre-epochs", ["0", "-1"]), ("--cf-epochs", ["0"]),
      ("--limit-batches", ["0"]), ("--threads", ["0"]), ("--device", DEVICE), ("--out", OUT_DIR[:2]),
      ("--json", OUT_FILE), ("--data", ["x"]), ("--merge", ["MISSING", "GARBAGE"])]),
    ("clusterfit", ["pretrain", "--out", "OUT", "--epochs", "1", "--limit-batches", "1", *Q],
     [("--epochs", ["0", "-1"]), ("--lr", ["-0.1", "nan"]), ("--noise", ["1", "-0.1", "nan"]),
      ("--batch-size", ["0"]), ("--seed", ["-1"]), ("--device", DEVICE[:2]), ("--out", OUT_DIR[:2]),
      ("--data", ["cifar10"]), ("--data-root", ["MISSING"]), ("--kind", ["x"]), ("--model", ["resnet21"])]),
    ("clusterfit", ["features", "--checkpoint", "PLAIN", "--out", "OUT", *Q],
     [("--checkpoint", IN_FILE), ("--pca", ["0", "-1"]), ("--crop", ["0", "1.5", "nan"]), ("--out", OUT_FILE)]),
    ("clusterfit", ["cluster", "--features", "PLAIN", "--k", "5", "--out", "OUT"],
     [("--features", IN_FILE), ("--k", ["0", "-1", "x"]), ("--iters", ["0"]), ("--sample", ["0"]),
      ("--out", OUT_FILE)]),
    ("clusterfit", ["fit", "--labels", "PLAIN", "--out", "OUT", "--epochs", "1", *Q],
     [("--labels", IN_FILE), ("--crop-scale", [["1", "0.5"], ["0", "1"]]), ("--jitter", ["-1", "nan"]),
      ("--lr", ["-0.1"]), ("--out", OUT_DIR[:2])]),
    ("clusterfit", ["probe", "--random", "lenet5_bn", *Q],
     [("--checkpoint", IN_FILE), ("--random", ["resnet21"]), ("--json", OUT_FILE), ("--device", DEVICE[:2])]),
]


def _cases():
    for cli, base, mutations in TABLE:
        for flag, values in mutations:
            for value in values:
                yield pytest.param(cli, base, flag, value, id=f"{cli}-{base[0]}-{flag}={value}")


CASES = list(_cases())


def test_the_table_is_large_enough():
    assert len(CASES) >= 100
    assert {c for c, *_ in TABLE} == {"addernet", "igam", "bownet", "clusterfit"}


def _argv(base, flag, value, paths):
    sub = lambda v: paths.get(v, v)  # noqa: E731
    argv = [sub(a) for a in base]
    if value is None:
        return argv + [flag]
    values = [sub(v) for v in (value if isinstance(value, list) else [value])]
    if flag in argv:
        i = argv.index(flag)
        j = i + 1
        while j < len(argv) and not argv[j].startswith("--"):
            j += 1
        return argv[:i + 1] + values + argv[j:]
    if flag == "--checkpoint" and "--random" in argv:  # the two are exclusive
        i = argv.index("--random")
        argv = argv[:i] + argv[i + 2:]
    return argv + [flag, *values]


class _Work(Exception):
    pass


def _alarm(*_):
    raise _Work


@pytest.mark.parametrize("cli,base,flag,value", CASES)
def test_mistake_is_one_line_exit_2(cli, base, flag, value, paths, capsys):
    if value in ("cuda",) and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = _argv(base, flag, value, paths)
    main = _main(cli)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(LIMIT_S)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as e:
                rc = e.code
    except _Work:
        pytest.fail(f"{cli} {' '.join(argv)}: still working after {LIMIT_S} s (the mistake was not caught)")
    except BaseException as e:  # noqa: BLE001 - a traceback is the failure being tested for
        pytest.fail(f"{cli} {' '.join(argv)}: traceback\n{''.join(traceback.format_exception(e))[-1500:]}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    text = err.getvalue() + capsys.readouterr().err
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert rc == 2, f"{cli} {' '.join(argv)}: exit {rc}\n{text}"
    assert len(lines) == 1 and "Traceback" not in text, f"{cli} {' '.join(argv)}:\n{text}"
