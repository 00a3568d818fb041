"""Offline measurement of generated images in the feature space of a domain judge (metrics/evaluator.py).

A registry of small functions returning dicts (suite.METRICS): fid, kid, prdc, classes; plus standard
Inception FID (inception.py) when its weights are on disk.
"""

from ganforge.metrics.evaluator import (
    Evaluator,
    FeatureSet,
    extract,
    load_evaluator,
    save_evaluator,
    train_evaluator,
)
from ganforge.metrics.suite import (
    METRICS,
    EvaluatorResult,
    Reference,
    Settings,
    build_evaluator,
    compute_metrics,
    evaluate_images,
    in_training_evaluation,
    load_evaluator_metrics,
)

__all__ = [
    "METRICS",
    "Evaluator",
    "EvaluatorResult",
    "FeatureSet",
    "Reference",
    "Settings",
    "build_evaluator",
    "compute_metrics",
    "evaluate_images",
    "extract",
    "in_training_evaluation",
    "load_evaluator",
    "load_evaluator_metrics",
    "save_evaluator",
    "train_evaluator",
]
