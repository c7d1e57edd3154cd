"""Builds addernet._C: the CPU kernels always, the CUDA kernels when torch has CUDA and nvcc is
found (or FORCE_CUDA=1). Install with `pip install --no-build-isolation .` so the build uses the
torch already installed instead of pulling a second one.

Options (environment variables):
  FORCE_CUDA=1          build the CUDA kernels even where no GPU is visible.
  ADDERNET_MARCH_NATIVE=1  compile for this CPU only (-march=native); the default runs on any x86-64.
  ADDERNET_DEBUG=1      -O0 -g.
  ADDERNET_QUICK_BUILD=1  -O1: compiles in about half the time, with slower kernels; for checks
                        that the package builds and runs (the sdist-to-wheel test), not for use.
"""
import glob
import os
import sys

try:
    import torch
except ImportError:
    # The extension compiles against the installed torch, so it must come first; one line, not a
    # traceback from inside the build.
    sys.exit("torch-addernet: install torch first (e.g. `pip install torch`), then "
             "`pip install --no-build-isolation .`")
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str) -> bool:
    return os.environ.get(name, "0") not in ("", "0", "false", "False")


def source_groups() -> dict[str, list[str]]:
    """csrc/sources.txt, the source lists that CMake reads too: {group: [glob, ...]}."""
    groups = {}
    with open(os.path.join(ROOT, "csrc", "sources.txt")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, _, globs = line.partition(":")
                groups[name.strip()] = globs.split()
    return groups


def _sources(*groups):
    table = source_groups()
    return sorted(os.path.relpath(p, ROOT) for g in groups for pat in table[g]
                  for p in glob.glob(os.path.join(ROOT, pat)))


def extension():
    with_cuda = _flag("FORCE_CUDA") or (torch.version.cuda is not None and CUDA_HOME is not None)
    opt = ["-O0", "-g"] if _flag("ADDERNET_DEBUG") else ["-O1"] if _flag("ADDERNET_QUICK_BUILD") else ["-O3"]
    cxx = opt + ["-std=c++17", "-ffp-contract=fast", "-fvisibility=hidden"]
    link = []
    if torch.backends.openmp.is_available():
        # at::parallel_for is inlined into our binding; it needs the same OpenMP as torch.
        cxx.append("-fopenmp")
        link.append("-fopenmp")
    if _flag("ADDERNET_MARCH_NATIVE"):
        cxx.append("-march=native")
    # Recorded for `addernet info`; plain 0/1 macros survive every build tool's quoting.
    cxx += [f"-DADDERNET_WITH_CUDA={int(with_cuda)}", f"-DADDERNET_MARCH_NATIVE={int(_flag('ADDERNET_MARCH_NATIVE'))}",
            f"-DADDERNET_OPENMP={int(torch.backends.openmp.is_available())}"]
    sources = _sources("cpu_bindings", "cpu_kernels")
    kwargs = dict(include_dirs=[os.path.join(ROOT, "csrc")], extra_link_args=link)
    if with_cuda:
        sources += _sources("cuda_bindings", "cuda_kernels")
        nvcc = opt + ["-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"]
        return CUDAExtension("addernet._C", sources, extra_compile_args={"cxx": cxx, "nvcc": nvcc}, **kwargs)
    return CppExtension("addernet._C", sources, extra_compile_args={"cxx": cxx}, **kwargs)


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
