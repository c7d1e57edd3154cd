"""Names the redesign moved (issue 23) keep working for one release, and each use warns with a
DeprecationWarning that names the new place and points at the line that used the old name."""
import importlib
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch

import addernet
from addernet import backends
from addernet.backends.native import extension
from helpers.paths import ROOT as _ROOT

ROOT = Path(_ROOT)

native = pytest.mark.skipif(not extension.native_available(), reason="the native extension is not built")

MOVED = [
    pytest.param("addernet.ops", "addernet.backends.native.ops", "adder_conv2d", marks=native),
    pytest.param("addernet.ops_u8", "addernet.backends.native.ops_u8", "u8_out_dtype", marks=native),
    ("addernet._extension", "addernet.backends.native.extension", "native_available"),
    ("addernet._native_checks", "addernet.backends.native.checks", "DEVICE_DTYPES"),
    ("addernet.quant.layer", "addernet.nn.quant_adder_conv", "QuantAdderConv2d"),
    ("addernet.quant.functional", "addernet.functional_u8", "quantize_tensor"),
]


def _one_warning_here(record, match):
    found = [w for w in record if issubclass(w.category, DeprecationWarning)]
    assert len(found) == 1, [str(w.message) for w in found]
    assert match in str(found[0].message) and "next release" in str(found[0].message)
    assert found[0].filename == __file__  # the user's line, not the alias machinery's


@pytest.mark.parametrize("old, new, name", MOVED)
def test_an_imported_old_module_still_works_and_warns(old, new, name):
    with pytest.warns(DeprecationWarning) as record:
        got = getattr(importlib.import_module(old), name)
    _one_warning_here(record, f"{old}.{name} moved to {new}.{name}")
    assert got is getattr(importlib.import_module(new), name)


@pytest.mark.parametrize("old, new, name", MOVED)
def test_an_old_module_reached_as_an_attribute_still_works_and_warns(old, new, name, monkeypatch):
    # As the old package allowed: `import addernet; addernet._extension.native_available()`.
    parent, short = old.rsplit(".", 1)
    monkeypatch.delitem(sys.modules, old, raising=False)
    monkeypatch.delattr(sys.modules[parent], short, raising=False)
    with pytest.warns(DeprecationWarning) as record:
        got = getattr(getattr(sys.modules[parent], short), name)
    _one_warning_here(record, f"{old}.{name} moved to {new}.{name}")
    assert got is getattr(importlib.import_module(new), name)


def test_from_import_of_an_old_name_warns_once():
    with pytest.warns(DeprecationWarning) as record:
        from addernet._extension import native_available
    _one_warning_here(record, "addernet._extension.native_available moved to "
                              "addernet.backends.native.extension.native_available")
    assert native_available is extension.native_available


def test_backends_all_still_works_and_warns():
    with pytest.warns(DeprecationWarning) as record:
        got = backends.ALL
    _one_warning_here(record, "addernet.backends.ALL moved to tuple(addernet.backends.REGISTRY)")
    assert got == tuple(backends.REGISTRY)


def test_backends_implementation_still_works_and_warns():
    import torch

    with pytest.warns(DeprecationWarning) as record:
        fn = backends.implementation("reference")
    _one_warning_here(record, "addernet.backends.implementation(name) moved to addernet.backends.op(")
    x, w = torch.randn(1, 2, 4, 4, dtype=torch.float64), torch.randn(3, 2, 3, 3, dtype=torch.float64)
    expected = backends.op("adder_conv2d", "reference")(x, w, (1, 1), (1, 1), (1, 1), 1)
    assert torch.equal(fn(x, w, (1, 1), (1, 1), (1, 1), 1), expected)  # (assert_close costs 2 s to load)


def test_the_quant_layer_keeps_its_old_name_with_a_warning_and_its_new_ones_without():
    import addernet.nn
    import addernet.quant

    with pytest.warns(DeprecationWarning) as record:
        got = addernet.quant.QuantAdderConv2d
    _one_warning_here(record, "addernet.quant.QuantAdderConv2d moved to addernet.nn.QuantAdderConv2d")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert got is addernet.QuantAdderConv2d is addernet.nn.QuantAdderConv2d
        assert got.__module__ == "addernet.nn.quant_adder_conv"


def _quant_layer():
    return addernet.QuantAdderConv2d(torch.randn(4, 3, 3, 3), torch.ones(4), torch.zeros(4), True, (1, 1), (1, 1),
                                     (1, 1), 1, (-1.0, 1.0))


def test_a_quant_layer_saved_whole_before_the_move_still_loads(monkeypatch, tmp_path):
    layer = _quant_layer()
    with monkeypatch.context() as m, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        m.setattr(addernet.QuantAdderConv2d, "__module__", "addernet.quant.layer")  # pickled as before the move
        torch.save(layer, tmp_path / "old.pt")
    assert b"addernet.quant.layer" in (tmp_path / "old.pt").read_bytes()
    with pytest.warns(DeprecationWarning, match="addernet.quant.layer.QuantAdderConv2d moved to"):
        loaded = torch.load(tmp_path / "old.pt", weights_only=False)
    assert type(loaded) is addernet.QuantAdderConv2d
    x = torch.rand(1, 3, 5, 5) * 2 - 1
    assert torch.equal(loaded(x), layer(x))
    torch.save(loaded, tmp_path / "new.pt")  # saved again: the new module, no alias needed
    assert b"addernet.nn.quant_adder_conv" in (tmp_path / "new.pt").read_bytes()


def test_a_name_that_is_not_an_old_module_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_module"):
        addernet.no_such_module  # noqa: B018



# Deprecation tests: they use the old names on purpose.
USES_OLD_NAMES = {"tests/test_deprecated_names.py", "tests/cli/test_cli_layer.py", "addernet/_deprecated.py"}
_FROM = re.compile(r"^\s*from\s+(\.*)([\w.]*)\s+import\s+\(?([\w\s,]+)", re.M)
_IMPORT = re.compile(r"^\s*import\s+([\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+(?:\s+as\s+\w+)?)*)", re.M)


def _old_names_used(rel: str, text: str, old: set) -> list[str]:
    """The old module names ``text`` imports (relative imports resolved) or reaches as attributes
    (``addernet._extension.x``) outside comments and docstrings' backticks; by text, which is ten
    times faster than parsing every file and finds what parsing would."""
    package = rel[:-3].replace("/", ".").rsplit(".", 1)[0]
    found = []
    for m in _FROM.finditer(text):
        dots, module, names = m.groups()
        if dots:
            parts = package.split(".")
            module = ".".join(parts[:len(parts) - len(dots) + 1] + ([module] if module else []))
        used = {module} | {f"{module}.{n.split()[0]}" for n in names.split(",") if n.split()}
        found += sorted(used & old)
    for m in _IMPORT.finditer(text):
        found += sorted({n.split()[0] for n in m.group(1).split(",")} & old)
    attr = re.compile(r"(?<![`\w.])(%s)\b(?!`)" % "|".join(re.escape(o) for o in sorted(old, key=len, reverse=True)))
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        found += attr.findall(code)
    return sorted(set(found))


def test_nothing_in_the_tree_uses_an_old_name():
    """The aliases are for users' code: the library, the methods, the benchmarks and the tests (bar
    the deprecation tests) use the new places, so no merge brings an old name back unseen."""
    from addernet._deprecated import MOVED_MODULES

    found = []
    for folder in ("addernet", "methods", "benchmarks", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in USES_OLD_NAMES:
                found += [f"{rel} uses {u}" for u in _old_names_used(rel, path.read_text(), set(MOVED_MODULES))]
    assert not found, "\n".join(found)


def test_the_old_name_finder_finds_each_form():
    old = {"addernet._extension", "addernet.quant.layer"}
    assert _old_names_used("x/y.py", "import addernet._extension as e\n", old) == ["addernet._extension"]
    assert _old_names_used("x/y.py", "from addernet import (_extension,\n  x)\n", old) == ["addernet._extension"]
    assert _old_names_used("addernet/quant/q.py", "    from .layer import A\n", old) == ["addernet.quant.layer"]
    assert _old_names_used("x/y.py", "ok = addernet._extension.native_available()\n", old) == ["addernet._extension"]
    assert _old_names_used("x/y.py", "from addernet.quant import layers\n# addernet._extension\n"
                           "'``addernet.quant.layer`` was its name'\n", old) == []
