"""Benchmark building blocks: layer shapes, fair timing, and (later) op counts and energy."""
from .latency import Timing, compare, thread_note
from .shapes import LAYER_SETS, LayerShape

__all__ = ["LAYER_SETS", "LayerShape", "Timing", "compare", "thread_note"]
