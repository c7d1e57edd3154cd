"""``python benchmarks/bench_ops.py`` (addernet.cli.op_bench): a user's mistake is one line and exit
status 2 before the first timing. It was a traceback (--threads 0, --backends x, an unwritable
--json after every set had run), an exit 1 after earlier sets had run (an unknown set), or no error
at all (--modes x timed a forward and backward)."""
import pytest

from addernet.cli import op_bench


def _rc(argv):
    try:
        return op_bench.main(argv)
    except SystemExit as exc:  # argparse's own errors (a type= check) exit from parse_args
        return exc.code


@pytest.mark.parametrize("argv", [
    ["--sets", "nosuch"], ["--sets", "tiny:x"], ["--sets", "tiny:0"], ["--threads", "0"], ["--batch", "-1"],
    ["--repeats", "0"], ["--max-seconds", "nan"], ["--backends", "nosuch"], ["--modes", "x"], ["--modes", "fwd,"],
    ["--json", "/proc/x.json"], ["--markdown", "DIR"],
], ids=lambda a: "=".join(a))
def test_a_mistake_is_one_line_before_any_timing(argv, tmp_path, capsys, monkeypatch):
    timed = []
    monkeypatch.setattr(op_bench, "run", lambda args: timed.append(args) or [{}])
    argv = [str(tmp_path) if a == "DIR" else a for a in argv]
    assert _rc(["--sets", "tiny", *argv] if argv[0] != "--sets" else argv) == 2
    out = capsys.readouterr()
    assert out.err.count("\n") == 1 and out.err.startswith("bench_ops.py: error: ") and "Traceback" not in out.err
    assert not timed and out.out == ""


def test_good_flags_reach_the_run_and_its_folders_are_made(tmp_path, monkeypatch):
    got = []
    monkeypatch.setattr(op_bench, "run", lambda args: got.append(args) or [{}])
    out = tmp_path / "new" / "ops.json"
    assert _rc(["--sets", "tiny:2,lenet5_bn", "--modes", "fwd", "--backends", "reference", "--json", str(out)]) == 0
    assert got[0].sets == "tiny:2,lenet5_bn" and got[0].threads == 2 and out.parent.is_dir()
