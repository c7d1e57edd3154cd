"""How every method builds its backbone: ``addernet.models.get_model`` at BatchNorm momentum 0.1.

addernet builds the BatchNorms of an adder model at momentum 0.5 since issue 22, so that their
running statistics follow a plain loop at a constant lr. The methods' registered experiments
(benchmarks/RESULTS.md section 10) ran at PyTorch's 0.1, and their schedules decay the lr, so
their backbones keep 0.1 and rerun as they ran. The momentum never changes the trained weights.
"""
from __future__ import annotations

from torch import nn

from addernet.models import get_model

REGISTERED_BN_MOMENTUM = 0.1


def build_backbone(name: str, **kwargs) -> nn.Module:
    """``get_model(name, **kwargs)`` with every BatchNorm at ``REGISTERED_BN_MOMENTUM``."""
    return get_model(name, bn_momentum=REGISTERED_BN_MOMENTUM, **kwargs)
