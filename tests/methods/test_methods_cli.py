"""The methods' command lines share one error type, one set of checks, one ``--seeds`` and one
``--merge`` reader (methods/common/cli.py)."""
from __future__ import annotations

import json

import pytest

from methods.common import cli


def _seeds(method: str, argv: list[str]):
    """``--seeds`` as each method's own parser reads it, flattened as its main does."""
    if method == "igam":
        from methods.igam.__main__ import parser
        args = parser().parse_args(argv)
    elif method == "bownet":
        from methods.bownet.__main__ import parse_args
        args, _ = parse_args(argv)
    else:
        from methods.clusterfit.__main__ import build_parser
        args = build_parser().parse_args(["run", *argv])
    return cli.seeds_of(args.seeds)


@pytest.mark.parametrize("method", ["igam", "bownet", "clusterfit"])
def test_seeds_is_the_same_list_in_every_method(method):
    assert _seeds(method, ["--seeds", "2"]) == (2,)          # igam read "2" as a count: seeds 0 and 1
    assert _seeds(method, ["--seeds", "0", "3", "5"]) == (0, 3, 5)
    assert _seeds(method, ["--seeds", "0,3", "5"]) == (0, 3, 5)
    assert _seeds(method, []) is None


@pytest.mark.parametrize("method", ["igam", "bownet", "clusterfit"])
def test_bad_seeds_are_one_line_and_exit_2(method, capsys):
    with pytest.raises(SystemExit) as e:
        _seeds(method, ["--seeds", "-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--seeds" in err[0] and "at least 0" in err[0]
    with pytest.raises(cli.UserError, match="names 1 twice"):
        _seeds(method, ["--seeds", "1", "2,1"])


def test_one_error_type_for_addernet_and_the_methods():
    from addernet.cli.checks import UsageError
    from methods.clusterfit.__main__ import UserError as clusterfit_error

    assert cli.UserError is UsageError and clusterfit_error is UsageError


def test_read_merge_reads_in_order_and_names_the_bad_file(tmp_path):
    a, b, bad = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "bad.json"
    a.write_text(json.dumps({"rows": [1]}))
    b.write_text(json.dumps({"rows": [2]}))
    bad.write_text("{not json")
    assert cli.read_merge([str(b), str(a)]) == [{"rows": [2]}, {"rows": [1]}]
    with pytest.raises(cli.UserError, match=r"--merge .*bad\.json"):
        cli.read_merge([str(a), str(bad)])
    with pytest.raises(cli.UserError, match=r"--merge .*missing\.json"):
        cli.read_merge([str(tmp_path / "missing.json")])


def test_run_main_says_a_user_error_in_one_line(capsys):
    def fails():
        raise cli.UserError("--k must be at least 1\n  (the number of clusters)")

    assert cli.run_main("prog", fails) == 2
    assert capsys.readouterr().err == "prog: error: --k must be at least 1 (the number of clusters)\n"
    assert cli.run_main("prog", lambda: None) == 0 and cli.run_main("prog", lambda: 3) == 3
    with pytest.raises(ValueError):  # not named as a user's mistake: a bug keeps its traceback
        cli.run_main("prog", lambda: int("x"))
    assert cli.run_main("prog", lambda: int("x"), (ValueError,)) == 2


@pytest.mark.parametrize("method", ["igam", "clusterfit"])
def test_merge_of_an_unreadable_file_is_one_line(method, tmp_path, capsys):
    missing = str(tmp_path / "nope.json")
    if method == "igam":
        from methods.igam.__main__ import main
        rc = main(["--merge", missing, "--json", str(tmp_path / "out.json")])
    else:
        from methods.clusterfit.__main__ import main
        rc = main(["--merge", missing, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and f"--merge {missing}" in err


@pytest.mark.parametrize("method", ["igam", "clusterfit"])
@pytest.mark.parametrize("content", ["[1]", "{}", '{"bad": 1}'])
def test_merge_of_a_json_that_is_not_a_result_is_one_line(method, content, tmp_path, capsys):
    """Another method's JSON, or any JSON that is not a result, is a user's mistake named by file
    (it was a KeyError or TypeError traceback from inside the merge)."""
    part = tmp_path / "part.json"
    part.write_text(content)
    if method == "igam":
        from methods.igam.__main__ import main
        rc = main(["--merge", str(part), "--json", str(tmp_path / "out.json")])
    else:
        from methods.clusterfit.__main__ import main
        rc = main(["--merge", str(part), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and f"--merge {part}" in err
    assert not (tmp_path / "out.json").exists()


def _image_root(tmp_path, bad: bool):
    from PIL import Image

    for split in ("train", "val"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / split / "a" / "ok.png")
    if bad:
        (tmp_path / "train" / "a" / "broken.png").write_text("not an image")
    return tmp_path


def test_check_data_opens_both_splits(tmp_path):
    cli.check_data("mnist5k", None)  # embedded: nothing to check
    cli.check_data("imagefolder", _image_root(tmp_path / "good", bad=False))
    with pytest.raises(cli.UserError, match=r"--data imagefolder --data-root .*broken\.png"):
        cli.check_data("imagefolder", _image_root(tmp_path / "bad", bad=True))
    with pytest.raises(cli.UserError, match=r"--data cifar10 --data-root .*could not find"):
        cli.check_data("cifar10", tmp_path / "good")


@pytest.mark.parametrize("method", ["bownet", "clusterfit"])
def test_a_bad_data_root_is_one_line_before_work(method, tmp_path, capsys):
    """The miniatures built their loaders inside the run: a bad image or a missing CIFAR batch was a
    traceback there (BadImageError, FileNotFoundError), after the output folder was made."""
    import importlib

    main = importlib.import_module(f"methods.{method}.__main__").main
    root, out = _image_root(tmp_path / "data", bad=True), tmp_path / "out"
    argv = ["--quick", "--data", "imagefolder", "--data-root", str(root), "--out", str(out), "--no-progress"]
    rc = main((["run"] if method == "clusterfit" else []) + argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "broken.png" in err, err
    assert not (out / "clusterfit.json").exists() and not (out / "bownet.json").exists()
