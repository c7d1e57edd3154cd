"""The house's import rules (shared/DESIGN.md): no module of ``addernet`` imports, at load time or
inside a function, a module that imports it back. (Once ``train/fit.py`` and ``train/configured.py``
imported each other, the second reaching for the first's private helpers.)"""
from __future__ import annotations

import ast
from pathlib import Path

from helpers.paths import ROOT

PACKAGE = Path(ROOT) / "addernet"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _imported(name: str, path: Path, mods: dict) -> set[str]:
    """The addernet modules ``name`` imports anywhere in its body (functions included)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            # ``from . import backends`` names a module; ``from .fit import fit`` names a thing in one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        for target in targets:
            while target not in mods and "." in target:
                target = target.rsplit(".", 1)[0]
            # Importing a.b.c runs a/__init__ and a/b/__init__ first: they are imported too. But a
            # module's own packages run before it does: importing them back is not a circle.
            while target in mods:
                if target != name and not name.startswith(target + "."):
                    found.add(target)
                target = target.rsplit(".", 1)[0] if "." in target else ""
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_addernet_has_no_import_cycle():
    mods = _modules()
    graph = {name: _imported(name, path, mods) for name, path in mods.items()}
    assert len(graph) > 50 and graph["addernet.train.configured"]  # the walk sees the package and its imports
    assert _cycles(graph) == []


def _private_imports(path: Path, name: str, mods: dict) -> list[tuple[str, str]]:
    """(module, private name) for each ``from addernet.X import _y`` in ``path`` where ``_y`` is a
    function, class or value of X rather than a module of its own (private modules are the
    backends' business: archops)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            for a in node.names:
                if (base or "").startswith("addernet") and a.name.startswith("_") and not a.name.startswith("__") \
                        and f"{base}.{a.name}" not in mods:
                    out.append((base, a.name))
    return out


def test_no_area_takes_another_areas_private_names():
    # quantize once took fuse's _flow_from_run and _set; they are fuse.data_flow and set_submodule.
    mods = _modules()
    area = lambda m: m.split(".")[1] if m.count(".") else ""  # noqa: E731
    taken = [(name, base, priv) for name, path in mods.items() for base, priv in _private_imports(path, name, mods)
             if area(base) != area(name)]
    assert not taken, taken



def test_methods_use_only_addernets_public_names():
    # shared/DESIGN.md: a method never reaches into addernet's private modules or names.
    reached = []
    for path in sorted((Path(ROOT) / "methods").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("addernet"):
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("addernet")]
            else:
                continue
            reached += [(path.name, n) for n in names if any(p.startswith("_") for p in n.split("."))]
    assert not reached, reached
