"""ClusterFit (Yan et al., CVPR 2020, arXiv 1912.03330): cluster a pre-trained network's features,
then fit a new network on the cluster ids. Every stage works alone, on CNNs and AdderNets alike:

    feats, _, _ = cluster_features(n_pre, train_loader, layer="features")   # 1. L2-normalised features
    pseudo = make_pseudo_labels(feats, k=50)                                # 2. k-means (methods.common)
    pseudo.save("labels.pt")                                                # 3. ids + centroids + config
    train_cf(n_cf, "cifar10", pseudo, root=..., aug=CFAugment())            # 4. N_cf from scratch (fit)
    probe_accuracy(n_cf, train_plain, test_plain)                           # 5. linear probe, true labels

``train_pre`` trains N_pre on labels with symmetric noise (the paper's control experiment);
``experiment`` runs that experiment in miniature; ``python -m methods.clusterfit`` is the CLI.
"""
from .evaluation import plain_loaders, probe_accuracy
from .features import OFFICIAL_CROP, PCA, cluster_features, fit_pca, has_adder_layers, l2_normalize, random_crop_fn
from .fit_cf import AugmentedStep, CFAugment, train_cf
from .pretrain import train_pre
from .pseudo_labels import (MAX_POINTS_PER_CENTROID, OFFICIAL_ITERS, OFFICIAL_SEED, PseudoLabels,
                            check_pseudo_labels, make_pseudo_labels, random_pseudo_labels)

__all__ = [
    "AugmentedStep", "CFAugment", "MAX_POINTS_PER_CENTROID", "OFFICIAL_CROP", "OFFICIAL_ITERS", "OFFICIAL_SEED",
    "PCA", "PseudoLabels", "check_pseudo_labels", "cluster_features", "fit_pca", "has_adder_layers",
    "l2_normalize", "make_pseudo_labels", "plain_loaders", "probe_accuracy", "random_crop_fn", "random_pseudo_labels",
    "train_cf",
    "train_pre",
]
