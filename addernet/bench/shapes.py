"""The layer shapes the benchmarks run, named so the tables say which layer is which: the paper's
networks (``LAYER_SETS``), a tiny set for dry runs, and the small shapes of the GPU correctness pass."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class LayerShape:
    name: str
    batch: int
    cin: int
    cout: int
    size: int  # input height = width
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    width: int | None = None  # input width when it differs from the height

    def with_batch(self, batch: int) -> "LayerShape":
        return replace(self, batch=batch)

    @property
    def in_hw(self) -> tuple[int, int]:
        return self.size, self.size if self.width is None else self.width

    @property
    def out_hw(self) -> tuple[int, int]:
        reach = self.dilation * (self.kernel - 1) + 1
        return tuple((s + 2 * self.padding - reach) // self.stride + 1 for s in self.in_hw)

    @property
    def out_size(self) -> int:
        return self.out_hw[0]

    @property
    def conv_args(self) -> tuple:
        """(stride, padding, dilation, groups) as the ops take them."""
        return (self.stride,) * 2, (self.padding,) * 2, (self.dilation,) * 2, self.groups

    @property
    def taps(self) -> int:
        """Multiply-accumulates of the conv (= |x-w| taps of the adder) in one forward."""
        oh, ow = self.out_hw
        return self.batch * self.cout * oh * ow * self.cin // self.groups * self.kernel ** 2


def _resnet20(batch: int) -> list[LayerShape]:
    return [
        LayerShape("16@32 3x3", batch, 16, 16, 32, 3, 1, 1),
        LayerShape("16->32@32 3x3/2", batch, 16, 32, 32, 3, 2, 1),
        LayerShape("16->32@32 1x1/2", batch, 16, 32, 32, 1, 2, 0),
        LayerShape("32@16 3x3", batch, 32, 32, 16, 3, 1, 1),
        LayerShape("32->64@16 3x3/2", batch, 32, 64, 16, 3, 2, 1),
        LayerShape("32->64@16 1x1/2", batch, 32, 64, 16, 1, 2, 0),
        LayerShape("64@8 3x3", batch, 64, 64, 8, 3, 1, 1),
    ]


def _resnet18(batch: int) -> list[LayerShape]:
    return [LayerShape(f"{c}@{s} 3x3", batch, c, c, s, 3, 1, 1) for c, s in ((64, 56), (128, 28), (256, 14), (512, 7))]


def _lenet(batch: int) -> list[LayerShape]:
    # The adder layers of the classic LeNet-5-BN: conv2, and fc1/fc2 written as convolutions.
    return [LayerShape("6->16@14 5x5", batch, 6, 16, 14, 5), LayerShape("16->120@5 5x5", batch, 16, 120, 5, 5),
            LayerShape("120->84@1 1x1", batch, 120, 84, 1, 1)]


def _tiny(batch: int) -> list[LayerShape]:
    # Dry runs and CI: every code path of a benchmark in milliseconds; no timing claim rests on them.
    return [LayerShape("tiny 4->8@8 3x3", batch, 4, 8, 8, 3, 1, 1),
            LayerShape("tiny 8->8@6 1x1/2", batch, 8, 8, 6, 1, 2)]


LAYER_SETS = {
    "resnet20": lambda batch=32: _resnet20(batch),
    "resnet18": lambda batch=8: _resnet18(batch),
    "lenet5_bn": lambda batch=256: _lenet(batch),
    "tiny": lambda batch=2: _tiny(batch),
}

# (layer set, batch) pairs the GPU check (benchmarks/bench_gpu.py) times, on a GPU and in its CPU dry run.
GPU_TIMED = (("resnet20", 256), ("resnet18", 64))
DRY_RUN_TIMED = (("tiny", 2),)

# Small shapes for the GPU correctness pass (benchmarks/bench_gpu.py): their channel counts, groups,
# dilation and odd sizes reach each tile configuration of the CUDA kernels.
CHECK_SHAPES = [
    LayerShape("direct og<=4", 2, 3, 4, 7, 3, 1, 1, width=6),
    LayerShape("depthwise s2", 2, 6, 6, 9, 3, 2, 1, groups=6, width=8),
    LayerShape("tiny 3x3", 3, 16, 16, 8, 3, 1, 1),
    LayerShape("rgb 5x5 s2", 2, 3, 12, 11, 5, 2, 2, width=13),
    LayerShape("small s2", 2, 16, 32, 9, 3, 2, 1),
    LayerShape("1x1 s2", 2, 32, 24, 8, 1, 2, 0),
    LayerShape("dilated", 2, 40, 48, 9, 3, 1, 2, dilation=2),
    LayerShape("grouped", 2, 64, 64, 6, 3, 1, 1, groups=2),
    LayerShape("large", 2, 72, 136, 5, 3, 1, 1),
    LayerShape("large cin", 2, 136, 40, 4, 1, 1, 0, width=3),
    LayerShape("batch 9", 9, 8, 20, 10, 3, 1, 0),
]
