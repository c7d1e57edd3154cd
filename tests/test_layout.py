"""The test tree's one layout rule that pytest enforces only when every folder is collected: test
modules have unique basenames (the folders have no ``__init__.py``, so pytest imports each test file
by its basename, and a second ``test_registry.py`` stops the whole run at collection with an
'import file mismatch'; an area's own run does not show it)."""
from collections import defaultdict
from pathlib import Path

from helpers.paths import ROOT


def test_test_module_basenames_are_unique():
    where = defaultdict(list)
    for top in ("tests", "benchmarks"):
        for path in sorted((Path(ROOT) / top).rglob("test_*.py")):
            where[path.name].append(str(path.relative_to(ROOT)))
    assert len(where) > 50  # the walk sees the tree
    twice = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not twice, f"test modules with the same basename (rename one): {twice}"
