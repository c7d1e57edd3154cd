"""BoWNet (Gidaris et al., CVPR 2020): self-supervised learning by predicting bags of visual words.

The stages, each usable alone:

- ``train_rotnet`` / ``RotationStep`` / ``rotate_batch``: the first teacher, predicting rotations.
- ``build_vocabulary`` / ``Vocabulary``: k-means (``methods.common``) over a teacher layer's dense
  feature vectors, border dropped, sampled to a bounded count.
- ``bow_targets`` (``targets``): hard or soft (OBoW temperature) assignment, max or average
  pooling, L1 normalisation or binary presence.
- ``Perturbation``: the g(x) the student sees (crop, jitter; flips and grayscale where they apply).
- ``BoWHead`` / ``BoWNet`` / ``BoWStep``: the L2-normalised linear head times kappa, trained with
  soft cross-entropy against the frozen teacher's bags (an ``addernet.train`` step).
- ``train_bownet``: vocabulary + student training; call it again on the student for BoWNet x2.
- ``evaluate_representation``: linear probes (all labels, k per class) and few-shot episodes.
"""
from .evaluation import evaluate_representation, frozen_features, per_class_subset
from .head import BoWHead, BoWNet, no_decay_parameters
from .perturb import Perturbation
from .pipeline import random_init, train_bownet, train_rotnet
from .rotnet import RotationStep, rotate_batch, rotation_accuracy_by_class
from .step import BoWStep
from .targets import assignment_codes, bow_targets, drop_border, pool_codes, squared_distances
from .vocabulary import BoWTeacher, TeacherLayer, Vocabulary, build_vocabulary, sample_vectors

__all__ = [
    "BoWHead", "BoWNet", "BoWStep", "BoWTeacher", "Perturbation", "RotationStep", "TeacherLayer", "Vocabulary",
    "assignment_codes", "bow_targets", "build_vocabulary", "drop_border", "evaluate_representation",
    "frozen_features", "no_decay_parameters", "per_class_subset", "pool_codes", "random_init", "rotate_batch",
    "rotation_accuracy_by_class", "sample_vectors", "squared_distances", "train_bownet", "train_rotnet",
]
