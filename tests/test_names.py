"""One name for one thing: no two addernet modules define a public function or class of the same
name (once there were two count_ops, two LayerCount, two compare and two canonical_name, each
meaning something else), and the benchmark library does not reach up into the CLI."""
import collections
import importlib
import inspect
import pkgutil
import subprocess
import sys

import addernet

# Names every module of a kind defines on purpose, with one meaning each: a CLI module's entry
# points, a report module's renderer, and each op's implementations (a backend each, plus the
# dispatching functional form).
SHARED_BY_DESIGN = {"main", "run", "add_arguments", "markdown", "adder_conv2d", "adder_conv2d_u8"}


def test_each_public_name_is_defined_once():
    where = collections.defaultdict(set)
    for info in pkgutil.walk_packages(addernet.__path__, "addernet."):
        if info.name.endswith("__main__"):
            continue
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if getattr(obj, "__module__", None) == info.name:
                where[name].add(info.name)
    twice = {n: sorted(m) for n, m in where.items() if len(m) > 1 and n not in SHARED_BY_DESIGN}
    assert not twice, twice


def test_bench_library_does_not_import_the_cli():
    code = ("import sys, addernet.bench.model_bench, addernet.bench.op_table, addernet.train; "
            "print(sorted(m for m in sys.modules if m == 'addernet.cli' or m.startswith('addernet.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
