"""BoWNet's prediction head: a linear layer with L2-normalised weight rows, times a learnable kappa."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BoWHead(nn.Module):
    """features (N, D) -> logits (N, K) = kappa * features @ normalize(W)^T; softmax of these is the
    predicted bag of words. Normalising the rows leaves kappa alone to set how peaked the prediction
    can be, so kappa must not be weight-decayed (``no_decay_parameters``)."""

    def __init__(self, in_features: int, num_words: int, kappa: float = 5.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_words, in_features))
        nn.init.normal_(self.weight, std=(2.0 / in_features) ** 0.5)
        self.kappa = nn.Parameter(torch.tensor(float(kappa)))

    def normalized_weight(self) -> torch.Tensor:
        return F.normalize(self.weight, dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.kappa * F.linear(features.flatten(1), self.normalized_weight())


class BoWNet(nn.Module):
    """A backbone's ``forward_features`` followed by a ``BoWHead``. The backbone's own classifier is
    not used (nor kept), so DDP sees no parameter without a gradient."""

    def __init__(self, backbone: nn.Module, num_words: int, *, feature_dim: int | None = None, kappa: float = 5.0,
                 input_shape: tuple[int, ...] | None = None):
        super().__init__()
        # The backbone's classifier layers become identities: unused parameters would stall DDP's
        # gradient reduction, and weight decay on them would be wasted work.
        for name in getattr(backbone, "head_layers", ()):
            setattr(backbone, name, nn.Identity())
        self.backbone = backbone
        if feature_dim is None:
            if input_shape is None:
                raise ValueError("BoWNet needs feature_dim or input_shape (C, H, W) to size its head")
            was = backbone.training
            backbone.eval()
            with torch.no_grad():
                feature_dim = backbone.forward_features(torch.zeros(2, *input_shape)).flatten(1).shape[1]
            backbone.train(was)
        self.bow_head = BoWHead(feature_dim, num_words, kappa)

    @property
    def feature_layers(self):
        return getattr(self.backbone, "feature_layers", ())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bow_head(self.backbone.forward_features(x))


def no_decay_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every BoWHead's kappa in ``model``: the parameters to exclude from weight decay."""
    return [m.kappa for m in model.modules() if isinstance(m, BoWHead)]
