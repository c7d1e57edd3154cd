"""Compiles the Triton kernels for GPUs without one: Triton lowers each to PTX and a cubin for a
named target, and cuobjdump reports each cubin's registers and spills. This catches what the interpreter cannot
(lowering errors, tl.dot shapes and dtypes, register pressure) on the machines CI runs on.

    python tests/backends/triton_compile_check.py [--all] [--cuobjdump PATH]

Run it without TRITON_INTERPRET: the interpreter replaces the kernels' JIT functions. Every
autotune config is compiled in float32 for sm_90; the first two configs in float16 and bfloat16
for sm_80 and sm_90 (--all: every config, dtype and target). Prints one row per compile and exits
non-zero if any compile fails or spills.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from addernet.backends import triton_kernels as tk  # noqa: E402

_PTR = {"float32": "*fp32", "float16": "*fp16", "bfloat16": "*bf16"}
# Pointer arguments that stay float32 whatever the input dtype.
_F32_PTRS = {"part_ptr"}


def _kernels():
    return [("forward", tk.adder_fwd_kernel), ("grad_input", tk.adder_grad_input_kernel),
            ("grad_weight", tk.adder_grad_weight_kernel)]


def compile_one(autotuned, config, dtype: str, arch: int):
    fn = autotuned.fn
    constexprs = dict(config.kwargs)
    if "DOT_F32" in fn.arg_names:
        constexprs["DOT_F32"] = dtype == "float32"  # as the backend launches it on a GPU
    signature = {}
    for name in fn.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = "*fp32" if name in _F32_PTRS else _PTR[dtype]
        else:
            signature[name] = "i32"
    src = ASTSource(fn=fn, signature=signature, constexprs=constexprs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": config.num_warps, "num_stages": config.num_stages})


def _triton_tool(name: str) -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def cubin_usage(cuobjdump: str, cubin: bytes) -> tuple[int, int]:
    """(registers, stack + local bytes) of the kernel in ``cubin``, as cuobjdump reports them.
    Stack or local memory in these kernels means spilled registers."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        out = subprocess.run([cuobjdump, "-res-usage", path], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"cuobjdump failed: {out.stderr.strip()[-500:]}")
    usage = re.search(r"REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)", out.stdout)
    if usage is None:
        raise RuntimeError(f"no resource usage in cuobjdump's output: {out.stdout[-300:]}")
    regs, stack, local = map(int, usage.groups())
    return regs, stack + local


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--all", action="store_true", help="every config for every dtype and target")
    p.add_argument("--cuobjdump", default=_triton_tool("cuobjdump"),
                   help="reads registers and spills from the cubins; default: the one Triton ships")
    args = p.parse_args(argv)
    if tk.INTERPRET:
        print("TRITON_INTERPRET is set: the kernels are interpreted functions, nothing to compile")
        return 2
    have_tool = os.path.exists(args.cuobjdump)
    failures = 0
    print(f"triton {triton.__version__}; cuobjdump: {args.cuobjdump if have_tool else 'not found (no register report)'}")
    print(f"{'kernel':<12} {'dtype':<9} {'arch':<6} {'config':<44} {'regs':>5} {'spill B':>8}")
    for name, kernel in _kernels():
        for i, config in enumerate(kernel.configs):
            for dtype in ("float32", "float16", "bfloat16"):
                for arch in (80, 90):
                    wanted = args.all or (dtype == "float32" and arch == 90) or i < 2
                    if not wanted:
                        continue
                    label = ", ".join(f"{k}={v}" for k, v in config.kwargs.items())
                    label += f", w{config.num_warps} s{config.num_stages}"
                    try:
                        compiled = compile_one(kernel, config, dtype, arch)
                        if "cubin" not in compiled.asm:
                            raise RuntimeError("no cubin produced")
                        regs, spill = cubin_usage(args.cuobjdump, compiled.asm["cubin"]) if have_tool else (-1, 0)
                    except Exception as exc:  # report every failing compile, then fail
                        failures += 1
                        print(f"{name:<12} {dtype:<9} sm_{arch:<3} {label:<44} FAILED: {type(exc).__name__}: {exc}")
                        continue
                    if spill:
                        failures += 1
                    print(f"{name:<12} {dtype:<9} sm_{arch:<3} {label:<44} {regs:>5} {spill:>8}"
                          + ("  (spills)" if spill else ""))
    print("all compiled, no spills" if failures == 0 else f"{failures} failed or spilled")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
