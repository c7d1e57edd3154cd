"""GPU check of the adder convolution: correctness of the native ops, then timings against cuDNN.

    python benchmarks/bench_gpu.py --out OUT [--budget-s 150] [--skip-bench] [--skip-correctness]
    python benchmarks/bench_gpu.py --dry-run --out OUT    # CPU only: every step on tiny shapes

A thin driver over addernet.bench.gpu_run; it needs torch (and triton for that backend) only: the
GPU machines it runs on have nothing else installed.

Correctness (addernet.bench.op_check): per dtype the native kernels take (float32, float16,
bfloat16 on CUDA), fresh random inputs on shapes.CHECK_SHAPES; forward, fused, backward under both
weight-gradient routes (ADDERNET_CUDA_WGRAD=kernel|cudnn) and the output masks, against the float64
definition on the CPU, with the caching allocator poisoned with NaN before each call.

Timings (addernet.bench.vs_cudnn): the ResNet-20 layers at batch 256 and the ResNet-18 layers at
batch 64, forward and forward+backward, for the native op (each weight-gradient route), Triton and
the unfold reference (while the budget lasts), torch.cdist(p=1) on unfolded patches (forward) and
cuDNN with TF32 off and on, interleaved with CUDA events; medians, ratios against cuDNN with TF32
off. Writes OUT/gpu_results.json and OUT/gpu_results.md.

--dry-run runs the same code on the CPU: the native CPU ops (float32, bfloat16) against the same
definition, then the timing loop on the 'tiny' shapes for 2 rounds. Its times are no measurement:
it exists so that CI catches a change that breaks this script before a GPU runs it.

Exit status: 0 when every correctness check passed and every contender ran or was skipped for a
stated reason, 1 otherwise, 2 without a GPU (and without --dry-run) or for a mistake in the arguments.
"""
from __future__ import annotations

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from addernet.bench import gpu_run  # noqa: E402
from addernet.bench.shapes import DRY_RUN_TIMED, GPU_TIMED  # noqa: E402
from addernet.cli.checks import Parser, UsageError, check_out_dir, positive_float, positive_int, report  # noqa: E402

BACKEND = "native"
# The native CUDA kernels' two weight-gradient routes, each checked and timed (the CPU ignores it).
WGRAD = {f"wgrad={route}": {"ADDERNET_CUDA_WGRAD": route} for route in ("cudnn", "kernel")}


def main(argv=None) -> int:
    ap = Parser(prog="bench_gpu.py", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "out/gpu_bench"))
    ap.add_argument("--budget-s", type=positive_float, default=None,
                    help="time budget of the timing part (150; dry run 60)")
    ap.add_argument("--reps", type=positive_int, default=None, help="timed rounds per case (15; dry run 2)")
    ap.add_argument("--target-ms", type=positive_float, default=2.0, help="length of one timing sample")
    ap.add_argument("--skip-correctness", action="store_true")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--dry-run", action="store_true",
                    help="run every step on the CPU with tiny shapes (CI): checks the script, measures nothing")
    args = ap.parse_args(argv)
    dry = args.dry_run
    try:  # an unwritable --out was an OSError traceback
        check_out_dir(args.out, "--out")
    except UsageError as exc:
        return report("bench_gpu.py", exc)
    os.makedirs(args.out, exist_ok=True)
    if not dry and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device visible to torch; nothing to do (--dry-run runs it on the CPU)")
        return 2
    name = "CPU (dry run: no timing claims)" if dry else torch.cuda.get_device_name()
    print(f"device: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version() if not dry else '-'}", flush=True)
    threads = torch.get_num_threads()
    if dry:
        # One thread: a dry run shares its machine (CI, a laptop), where an OpenMP team that waits
        # for a descheduled thread turns a microsecond op into 100 ms.
        torch.set_num_threads(1)
    try:
        ok = gpu_run.run(BACKEND, "cpu" if dry else "cuda", name, args.out, DRY_RUN_TIMED if dry else GPU_TIMED,
                         budget_s=args.budget_s or (60.0 if dry else 150.0), reps=args.reps or (2 if dry else 15),
                         target_ms=args.target_ms, backward_variants=WGRAD, correctness=not args.skip_correctness,
                         timing=not args.skip_bench, log=lambda msg: print(msg, flush=True))
    finally:
        torch.set_num_threads(threads)  # main() is also called in-process, by the dry-run test
    print(f"bench_gpu: {'ok' if ok else 'FAILED'}; results in {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
