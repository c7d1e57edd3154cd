"""One name for one thing: no two modules of addernet and methods define a public function or class
of the same name (once there were two count_ops, two LayerCount, two compare and two
canonical_name, each meaning something else; methods had two describe, two is_main and a validate
beside addernet's), and the benchmark library does not reach up into the CLI."""
import collections
import importlib
import inspect
import pkgutil
import subprocess
import sys

import addernet
import methods

# Names every module of a kind defines on purpose, with one meaning each: a CLI module's entry
# points, a report module's renderers, and each op's implementations (a backend each, plus the
# dispatching functional form).
SHARED_BY_DESIGN = {"main", "run", "add_arguments", "markdown", "plot", "table", "adder_conv2d",
                    "adder_conv2d_u8"}


def _role(module: str):
    """methods.<name>.<role>: the methods share one layout (shared/DESIGN.md), so their modules of
    one role (experiment, step, ...) may define the same names, meaning the same thing each time."""
    parts = module.split(".")
    return parts[2] if parts[0] == "methods" and len(parts) == 3 else None


def _public_definitions() -> dict[str, set[str]]:
    where = collections.defaultdict(set)
    for package in (addernet, methods):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            mod = importlib.import_module(info.name)
            for name, obj in vars(mod).items():
                if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                    continue
                if getattr(obj, "__module__", None) == info.name:
                    where[name].add(info.name)
    return where


def test_each_public_name_is_defined_once():
    where = _public_definitions()
    assert any(m.startswith("methods.common.") for ms in where.values() for m in ms)  # methods are walked
    twice = {n: sorted(m) for n, m in where.items() if len(m) > 1 and n not in SHARED_BY_DESIGN
             and not (len({_role(x) for x in m}) == 1 and _role(next(iter(m))) is not None)}
    assert not twice, twice


def test_bench_library_does_not_import_the_cli():
    code = ("import sys, addernet.bench.model_bench, addernet.bench.op_table, addernet.train; "
            "print(sorted(m for m in sys.modules if m == 'addernet.cli' or m.startswith('addernet.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def _outside_backends():
    import ast
    import pathlib

    root = pathlib.Path(addernet.__file__).parent
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] != "backends":
            yield rel, ast.parse(path.read_text())


def _docstrings(tree):
    import ast

    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                yield first.value


def test_no_module_outside_backends_names_a_backend():
    """A new backend touches its own module and one registry line: nothing above backends/ may test
    for a backend by name (``backend == "native"``), import one's module, or call its ops directly."""
    import ast

    from addernet import backends

    from addernet._deprecated import MOVED_MODULES

    names = set(backends.REGISTRY)
    modules = {f"addernet.backends.{n}" for n in names} | set(MOVED_MODULES)  # the old names of moved modules
    found = []
    for rel, tree in _outside_backends():
        docs = {id(d) for d in _docstrings(tree)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docs:
                found.append(f"{rel}:{node.lineno} names backend {node.value!r}")
            elif isinstance(node, ast.ImportFrom):
                package = ["addernet", *rel.parts[:-1]]
                base = package[: len(package) - node.level + 1] if node.level else []
                mod = ".".join([*base, *([node.module] if node.module else [])])
                targets = {mod} | {f"{mod}.{a.name}" for a in node.names}
                found += [f"{rel}:{node.lineno} imports {t}" for t in sorted(targets & modules)]
            elif isinstance(node, ast.Import):
                found += [f"{rel}:{node.lineno} imports {a.name}" for a in node.names if a.name in modules]
    assert not found, "\n".join(found)
