"""Metrics on the evaluator's class predictions: how confident and how varied the generated images are.

classifier_score = exp E_x KL(p(y|x) || p(y)): the Inception Score with the domain judge as classifier
(one split over all samples). It is K for confident predictions spread evenly over K classes, 1 for a
single class or for uninformative predictions.
"""

from __future__ import annotations

import numpy as np

# A class counts as covered when the generated share of it is at least this fraction of its real share:
# a collapsed generator still has a few stray images predicted as every class, which should not count.
COVERED_SHARE = 0.1
_EPS = 1e-12


def classifier_score(probs: np.ndarray) -> float:
    """probs [N, K] softmax outputs."""
    p = np.asarray(probs, dtype=np.float64)
    p_y = p.mean(axis=0)  # [K] marginal
    kl = np.sum(p * (np.log(p + _EPS) - np.log(p_y + _EPS)), axis=1)  # [N]
    return float(np.exp(kl.mean()))


def class_histogram(probs: np.ndarray) -> np.ndarray:
    """Share of samples per predicted (argmax) class, [K] float64 summing to 1 (empty: no classes, a
    label-free judge)."""
    probs = np.asarray(probs)
    if probs.shape[1] == 0:
        return np.zeros(0)
    counts = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
    return counts / counts.sum()


def class_metrics(real_hist: np.ndarray, probs: np.ndarray) -> dict:
    """real_hist [K]: predicted-class shares of the real test split; probs [M, K] of the generated set."""
    gen = class_histogram(probs)
    real = np.asarray(real_hist, dtype=np.float64)
    nz = gen > 0
    # KL(generated || real): finite whenever the real split has every class the generator makes
    kl = float(np.sum(gen[nz] * (np.log(gen[nz]) - np.log(np.maximum(real[nz], _EPS)))))
    return {
        "classifier_score": classifier_score(probs),
        "class_kl": kl,
        "classes_covered": int(np.sum((real > 0) & (gen >= COVERED_SHARE * real))),
    }
