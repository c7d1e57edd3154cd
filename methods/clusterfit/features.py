"""Stage 1: N_pre's features of D_cf, as ClusterFit clusters them.

VISSL's recipe: features of the penultimate layer, L2-normalised with 1e-5 added to the norm,
no PCA. Its ImageNet extraction config (configs/config/pretrain/clusterfit/
cluster_features_resnet_8gpu_imagenet.yaml) takes them after Resize(256) + CenterCrop(224); its
RotNet one (cluster_features_resnet_8gpu_rotation_in1k.yaml) after Resize(256) + RandomCrop(224).
``crop=`` gives either (centre by default), or none. PCA is an option here because large
feature maps (a ResNet's 2048-d pool) cluster faster and often better after it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Subset

from addernet.data import augment
from addernet.models import feature_extractor, recalibrate_bn
from addernet.nn import AdderConv2d
from methods.common import extract_features

# VISSL adds this to the L2 norm before dividing (its ``normalize`` uses x / (||x|| + 1e-5)).
NORM_EPS = 1e-5
# VISSL's feature crop: CenterCrop(224) after Resize(256) (RandomCrop in its RotNet config), a side
# fraction of 224 / 256.
OFFICIAL_CROP = 224 / 256
CROP_MODES = ("center", "random")


def has_adder_layers(model: nn.Module) -> bool:
    return any(isinstance(m, AdderConv2d) for m in model.modules())


def l2_normalize(x: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """Rows divided by (their L2 norm + eps), as VISSL does before k-means."""
    if x.dim() != 2:
        raise ValueError(f"features must be a 2-D (N, D) tensor, got shape {tuple(x.shape)}")
    return x / (x.norm(dim=1, keepdim=True) + eps)


@dataclass
class PCA:
    """A fitted PCA projection (optionally whitened): ``apply(x) = (x - mean) @ components.T / scale``."""
    mean: torch.Tensor
    components: torch.Tensor   # (dim, D)
    scale: torch.Tensor        # (dim,), ones unless whitened

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x)) @ self.components.to(x).T / self.scale.to(x)


def fit_pca(x: torch.Tensor, dim: int, *, whiten: bool = False, seed: int = 0) -> PCA:
    """PCA of (N, D) features via scikit-learn (randomised SVD where it pays)."""
    from sklearn.decomposition import PCA as _SkPCA

    n, d = x.shape
    if not 1 <= dim <= min(n, d):
        raise ValueError(f"PCA dimension must be in 1..{min(n, d)} (min of samples and feature size), got {dim}")
    sk = _SkPCA(n_components=dim, whiten=whiten, random_state=seed).fit(x.detach().double().cpu().numpy())
    scale = torch.as_tensor(sk.explained_variance_ ** 0.5 if whiten else [1.0] * dim, dtype=torch.float32)
    return PCA(torch.as_tensor(sk.mean_, dtype=torch.float32), torch.as_tensor(sk.components_, dtype=torch.float32),
               scale)


def random_crop_fn(fraction: float = OFFICIAL_CROP, seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A batch transform: a random square crop of ``fraction`` of each side, resized back to the input
    size (VISSL crops after a resize; resizing back keeps the network's input size)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"crop fraction must be in (0, 1], got {fraction}")
    gen: dict[torch.device, torch.Generator] = {}
    area = fraction * fraction

    def crop(x: torch.Tensor) -> torch.Tensor:
        g = gen.get(x.device)
        if g is None:
            g = gen[x.device] = torch.Generator(device=x.device).manual_seed(seed)
        return augment.random_resized_crop(x, tuple(x.shape[-2:]), scale=(area, area), ratio=(1.0, 1.0),
                                           generator=g)
    return crop


def center_crop_fn(fraction: float = OFFICIAL_CROP) -> Callable[[torch.Tensor], torch.Tensor]:
    """A batch transform: the central square of ``fraction`` of each side, resized back to the input size
    (bilinear), VISSL's Resize(256) + CenterCrop(224) at the network's own input size."""
    if not 0 < fraction <= 1:
        raise ValueError(f"crop fraction must be in (0, 1], got {fraction}")

    def crop(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
        top, left = (h - ch) // 2, (w - cw) // 2
        patch = x[..., top:top + ch, left:left + cw]
        return torch.nn.functional.interpolate(patch, size=(h, w), mode="bilinear", align_corners=False)
    return crop


def _layer_fn(model: nn.Module, layer: str, transform: Optional[Callable]):
    """x -> the (flattened by extract_features) output of ``layer``, after ``transform`` if given."""
    names = tuple(getattr(model, "feature_layers", ()))
    if names and layer not in names:
        raise ValueError(f"layer {layer!r} is not a feature point of {type(model).__name__}; "
                         f"choose one of {', '.join(names)}")
    fx = feature_extractor(model, [layer])

    def run(x: torch.Tensor) -> torch.Tensor:
        return fx(transform(x) if transform is not None else x)[layer]
    return run


def _shard(loader: DataLoader, rank: int, world: int) -> DataLoader:
    ds = loader.dataset
    return DataLoader(Subset(ds, range(rank, len(ds), world)), batch_size=loader.batch_size, shuffle=False,
                      num_workers=loader.num_workers, pin_memory=loader.pin_memory)


def _gather_strided(x: torch.Tensor, n: int, world: int) -> torch.Tensor:
    """Inverse of strided sharding: rank r holds rows r, r + world, ...; returns all n rows in order."""

    rows = -(-n // world)
    pad = torch.zeros((rows, *x.shape[1:]), dtype=x.dtype, device=x.device)
    pad[: len(x)] = x
    parts = [torch.empty_like(pad) for _ in range(world)]
    dist.all_gather(parts, pad)
    out = torch.stack(parts, 1).reshape(rows * world, *x.shape[1:])  # row i*world + r = rank r's row i
    return out[:n]


@torch.no_grad()
def cluster_features(model: nn.Module, loader: DataLoader, *, layer: str = "features", device="cpu",
                     normalize: bool = True, pca: Optional[int | PCA] = None, whiten: bool = False,
                     recalibrate: Optional[bool] = None, recalibrate_loader: Optional[DataLoader] = None,
                     recalibrate_batches: int = 50, crop: Optional[float] = None, crop_mode: str = "center",
                     seed: int = 0, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, Optional[PCA]]:
    """N_pre's features of every image of ``loader`` (which must not shuffle: row i is image i),
    as ClusterFit clusters them. Returns ``(features, labels, pca)`` on the CPU.

    - ``layer``: one of ``model.feature_layers``; "features" is the penultimate layer the paper uses.
    - ``recalibrate``: re-estimate BatchNorm statistics on ``recalibrate_loader`` (default: ``loader``)
      first. None means "if the model has adder layers": their outputs are in the hundreds and the
      running statistics of a short run lag far behind, so eval mode would squash the features.
    - ``crop``: take features after a square crop of this side fraction (VISSL: 224/256), resized back;
      ``crop_mode`` "center" (VISSL's ImageNet extraction config, the default) or "random" (its RotNet one).
    - ``pca``: a dimension to fit a PCA to, or a fitted ``PCA`` to apply; then L2 normalisation.
    - Under an initialised process group each rank extracts a strided shard and all ranks get the
      whole (N, D) tensor back in dataset order.
    """
    if getattr(loader, "sampler", None) is not None and not isinstance(loader.sampler,
                                                                        torch.utils.data.SequentialSampler):
        raise ValueError("cluster_features needs a loader that does not shuffle (row i must be image i): "
                         "build it with shuffle=False")
    if crop_mode not in CROP_MODES:
        raise ValueError(f"crop_mode must be one of {CROP_MODES}, got {crop_mode!r}")
    device = torch.device(device)
    model = model.to(device)
    if recalibrate is None:
        recalibrate = has_adder_layers(model)
    if recalibrate:
        recalibrate_bn(model, recalibrate_loader or loader, batches=recalibrate_batches, device=device)
    transform = None
    if crop:
        transform = center_crop_fn(crop) if crop_mode == "center" else random_crop_fn(crop, seed)
    fn = _layer_fn(model, layer, transform)
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    was_training = model.training
    model.eval()   # a plain function is the caller's to put in eval mode (methods.common.extract_features)
    try:
        if world > 1:
            n = len(loader.dataset)
            feats, labels = extract_features(fn, _shard(loader, dist.get_rank(), world), device, progress=progress)
            feats = _gather_strided(feats.to(device), n, world).cpu()
            labels = _gather_strided(labels.to(device), n, world).cpu()
        else:
            feats, labels = extract_features(fn, loader, device, progress=progress)
    finally:
        model.train(was_training)
    feats = feats.float().cpu()
    fitted = None
    if pca is not None:
        fitted = pca if isinstance(pca, PCA) else fit_pca(feats, int(pca), whiten=whiten, seed=seed)
        feats = fitted.apply(feats)
    if normalize:
        feats = l2_normalize(feats)
    return feats, labels.cpu(), fitted
