"""Benchmark building blocks: layer shapes, fair timing, op counts, cost tables (energy, cycles) and FLOP formulas;
and the GPU check that benchmarks/bench_gpu.py drives: a backend's ops against the definition (op_check), the adder
op against cuDNN (vs_cudnn), both in one run (gpu_run)."""
from . import cost_table, energy, flops
from .counts import CONVENTION, count_ops
from .latency import Timing, thread_note, time_interleaved
from .shapes import LAYER_SETS, LayerShape

flops.register()  # FlopCounterMode then counts the adder ops; a no-op without the native build

__all__ = ["CONVENTION", "LAYER_SETS", "LayerShape", "Timing", "count_ops", "cost_table", "energy", "flops",
           "thread_note", "time_interleaved"]
