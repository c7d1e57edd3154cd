"""One CLI layer: argument parsing lives in ``addernet/cli/`` (and the methods' ``__main__`` and
``methods/common/cli.py``), never in a library module; the names that moved there keep working,
with a DeprecationWarning, for one release."""
from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from helpers.paths import ROOT as _ROOT

ROOT = Path(_ROOT)


def _imports_argparse(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "argparse" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "argparse":
            return True
    return False


def _is_cli(path: Path) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return rel.startswith("addernet/cli/") or path.name == "__main__.py" or rel == "methods/common/cli.py"


def test_no_library_module_imports_argparse():
    files = [p for top in ("addernet", "methods") for p in sorted((ROOT / top).rglob("*.py"))]
    assert len(files) > 50 and any(_is_cli(p) and _imports_argparse(p) for p in files)  # the walk sees the CLI
    offenders = [str(p.relative_to(ROOT)) for p in files if not _is_cli(p) and _imports_argparse(p)]
    assert not offenders, f"argparse outside the CLI layer: {offenders}"


def test_the_console_script_entry_points_still_resolve():
    import addernet.cli

    assert callable(addernet.cli.main)
    for module in ("addernet", "addernet.cli"):
        out = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0 and out.stdout.startswith("addernet "), out.stdout + out.stderr


@pytest.mark.parametrize("old, new, name", [
    ("addernet.cli_checks", "addernet.cli.checks", "UsageError"),
    ("addernet.cli_info", "addernet.cli.info", "info_lines"),
    ("addernet.train.cli", "addernet.cli.train", "check_run_args"),
    ("addernet.bench.model_bench", "addernet.cli.bench", "add_parser"),
    ("addernet.bench.op_table", "addernet.cli.op_bench", "main"),
    ("addernet.train.fit", "addernet.train.runtime", "pick_device"),
])
def test_moved_names_still_import_with_a_warning(old, new, name):
    import importlib

    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to {new}\.{name}"):
        got = getattr(importlib.import_module(old), name)
    assert got is getattr(importlib.import_module(new), name)


def test_a_name_that_never_existed_is_still_an_attribute_error():
    import addernet.bench.model_bench as mb
    import addernet.cli_checks as old

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for a name that did not move
        for module in (mb, old):
            with pytest.raises(AttributeError):
                module.no_such_name  # noqa: B018
