"""csrc/ keeps torchvision's shape (docs/architecture.md): one schema file per op, bindings named as
bindings, raw kernels without torch, and one set of source lists for every build."""
import glob
import os
import re

from helpers.paths import ROOT

CSRC = os.path.join(ROOT, "csrc")


def _read(path):
    with open(path) as f:
        return f.read()


def _sources(*patterns):
    return sorted({os.path.relpath(p, ROOT) for pat in patterns
                   for p in glob.glob(os.path.join(ROOT, pat), recursive=True)})


def test_schemas_live_in_one_file_per_op():
    where = {}
    for path in _sources("csrc/**/*.cpp", "csrc/**/*.cu", "csrc/*.cpp"):
        text = _read(os.path.join(ROOT, path))
        for name in re.findall(r'm\.def\(\s*"([A-Za-z_0-9]+)\(', text):
            where.setdefault(path, []).append(name)
        if "TORCH_LIBRARY(" in text:
            assert path == "csrc/extension.cpp", f"{path} opens the library; only csrc/extension.cpp does"
    assert where, "no schema found: the check would prove nothing"
    for path, names in where.items():
        assert os.path.dirname(path) == "csrc", f"{path} defines schemas {names}; they belong in csrc/<op>.cpp"
    assert set(where["csrc/adder_conv2d_u8.cpp"]) >= {"adder_conv2d_u8"}
    assert set(where["csrc/adder_conv2d.cpp"]) >= {"adder_conv2d", "adder_conv2d_backward", "adder_conv2d_fused"}


def test_bindings_and_kernels_cannot_be_confused():
    for path in _sources("csrc/cpu/*", "csrc/cuda/*"):
        assert path.endswith((".h", "_binding.cpp", "_binding.cu")), f"{path}: a binding is named *_binding.*"
    for path in filter(lambda p: os.path.isfile(os.path.join(ROOT, p)), _sources("csrc/kernels/**/*")):
        text = _read(os.path.join(ROOT, path))
        assert not re.search(r"#include <(torch|ATen|c10)/", text), f"{path}: a raw kernel includes a torch header"
        assert "TORCH_LIBRARY" not in text, f"{path}: a raw kernel registers an op"


def test_every_source_is_in_exactly_one_list():
    """setup.py and CMake both read csrc/sources.txt; every compiled file is in one of its groups."""
    groups = {}
    for line in _read(os.path.join(CSRC, "sources.txt")).splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, globs = line.partition(":")
            groups[name.strip()] = _sources(*globs.split())
    assert {"cpu_kernels", "cuda_kernels", "cpu_bindings", "cuda_bindings"} <= set(groups)
    listed = [f for files in groups.values() for f in files]
    assert all(groups.values()), groups
    assert len(listed) == len(set(listed)), "a file is in two groups"
    compiled = set(_sources("csrc/**/*.cpp", "csrc/**/*.cu", "csrc/*.cpp")) - set(_sources("csrc/tests/**/*"))
    assert compiled == set(listed), compiled ^ set(listed)
    setup = _read(os.path.join(ROOT, "setup.py"))
    assert "sources.txt" in setup and "csrc/kernels" not in setup
    cmake = _read(os.path.join(ROOT, "CMakeLists.txt")) + "".join(
        _read(p) for p in glob.glob(os.path.join(ROOT, "cmake", "*.cmake")))
    assert "addernet_sources(" in cmake and not re.search(r"csrc/kernels/\w+/\w+\.(cpp|cu)\b", cmake)
