"""Benchmark building blocks: layer shapes, fair timing, op counts, energy and FLOP formulas."""
from . import energy, flops
from .counts import CONVENTION, count_ops
from .latency import Timing, thread_note, time_interleaved
from .shapes import LAYER_SETS, LayerShape

flops.register()  # FlopCounterMode then counts the adder ops; a no-op without the native build

__all__ = ["CONVENTION", "LAYER_SETS", "LayerShape", "Timing", "count_ops", "energy", "flops", "thread_note",
           "time_interleaved"]
