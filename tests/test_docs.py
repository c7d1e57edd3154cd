"""Every ```python block in README.md and docs/*.md runs, as a reader would run them: the blocks of
one page in order, in one namespace, from an empty folder (so their ``runs/...`` land in a temp dir).

A block that cannot run here (it needs a data root, a GPU or a file of the user's) says so on its
first line, where the reader sees it too::

    # doc-test: skip (needs a CIFAR-10 root)

Keep those few: a skipped block is an unchecked one.
"""
import pathlib
import re

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
def test_page_snippets_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__doc_snippet__"}
    for line, code in blocks(page):
        if skip_reason(code):
            continue
        try:
            exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"the snippet at {page.name} line {line} fails: {type(e).__name__}: {e}") from e
