"""The toolkit the methods share, written once: k-means, a linear probe, few-shot episodes,
pixel-space attacks, feature extraction, a report writer, the validation split and the paired statistic.

    from methods.common import kmeans, assign, linear_probe, fewshot_eval, pgd, fgsm, extract_features
    from methods.common import report
"""
from . import report, stats
from .attacks import fgsm, pgd
from .features import extract_features
from .fewshot import fewshot_eval
from .kmeans import KMeansResult, assign, faiss_available, kmeans
from .probe import linear_probe
from .split import split_loaders, validation_split

__all__ = ["KMeansResult", "assign", "extract_features", "faiss_available", "fewshot_eval", "fgsm", "kmeans",
           "linear_probe", "pgd", "report", "split_loaders", "stats", "validation_split"]
