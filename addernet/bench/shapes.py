"""The layer shapes the paper's networks run, named so the tables say which layer is which."""
from __future__ import annotations

from dataclasses import dataclass


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

    def with_batch(self, batch: int) -> "LayerShape":
        return LayerShape(self.name, batch, self.cin, self.cout, self.size, self.kernel, self.stride, self.padding)

    @property
    def out_size(self) -> int:
        return (self.size + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def taps(self) -> int:
        """Multiply-accumulates of the conv (= |x-w| taps of the adder) in one forward."""
        return self.batch * self.cout * self.out_size ** 2 * self.cin * self.kernel ** 2


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


LAYER_SETS = {
    "resnet20": lambda batch=32: _resnet20(batch),
    "resnet18": lambda batch=8: _resnet18(batch),
    "lenet5_bn": lambda batch=256: _lenet(batch),
}
