"""Every ```python block in README.md and docs/*.md runs alone, as a reader who pastes just that block
would run it: in a fresh interpreter, from an empty folder of its own (so its ``runs/...`` land in a
temp dir). A block that leans on an earlier one's imports or names fails here with its NameError.
The blocks of a page start together, as parallel processes, so a page costs about one import of
torch rather than one per block.

A block that cannot run here (it needs a data root, a GPU or a file of the user's) says so on its
first line, where the reader sees it too::

    # doc-test: skip (needs a CIFAR-10 root)

Keep those few: a skipped block is an unchecked one.
"""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
SKIP = re.compile(r"#\s*doc-test:\s*skip\s*\((.+)\)")


def blocks(page: pathlib.Path) -> list[tuple[int, str]]:
    """(line number, code) of each python block of ``page``."""
    text = page.read_text()
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def skip_reason(code: str):
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    m = SKIP.fullmatch(first.strip())
    return m.group(1) if m else None


def test_the_pages_have_snippets():
    assert sum(len(blocks(p)) for p in PAGES) >= 5


def test_few_snippets_are_skipped_and_each_says_why():
    skipped = [(p.name, line, skip_reason(code)) for p in PAGES for line, code in blocks(p) if skip_reason(code)]
    assert len(skipped) <= 3, skipped
    for code in (c for p in PAGES for _, c in blocks(p)):
        # A marker anywhere else, or without its reason, would be silently ignored: refuse it.
        assert "doc-test" not in code or skip_reason(code), code


# training.md trains for a few epochs (seconds on an idle machine): marked slow, for `-m "not slow"`.
TRAINS = {"training.md"}


@pytest.mark.parametrize("page", [pytest.param(p, marks=[pytest.mark.slow] if p.name in TRAINS else [])
                                  for p in PAGES], ids=[p.name for p in PAGES])
def test_page_snippets_run_alone(page, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    procs = []
    for line, code in blocks(page):
        if skip_reason(code):
            continue
        folder = tmp_path / f"line{line}"
        folder.mkdir()
        script = folder / "snippet.py"
        script.write_text(code)
        procs.append((line, subprocess.Popen([sys.executable, str(script)], cwd=folder, env=env, text=True,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    failed = []
    for line, proc in procs:
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            last = err.strip().splitlines()[-1] if err.strip() else f"exit status {proc.returncode}"
            failed.append(f"the snippet at {page.name} line {line} fails alone, in a fresh interpreter: {last}")
    assert not failed, "\n".join(failed)
