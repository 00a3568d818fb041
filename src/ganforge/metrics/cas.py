"""Classification Accuracy Score (Ravuri & Vinyals 2019): can a classifier learn the real task from a
generator's labelled images alone?

The judge's own classifier architecture (metrics/evaluator.py, the evaluator section's epochs, batch size,
learning rate and width) is trained from scratch on the synthetic train split only and tested on the real
test split. Beside it: the same classifier trained on the real train split (exactly the evaluator stage's
judge, same settings and seed, so its test accuracy is read from results/evaluator/metrics.json instead
of being trained again), and trained on real + synthetic together (the data augmentation use).
A generator that ignores the class it is asked for gives labels that say nothing: CAS falls to chance.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ganforge.errors import GanforgeError
from ganforge.metrics.evaluator import accuracy, extract, train_evaluator


def trained_accuracy(
    x_train: np.ndarray, y_train: np.ndarray,  # uint8 [N, C, H, W], int64 [N]: what the classifier learns
    x_test: np.ndarray, y_test: np.ndarray,    # the real test split
    *, num_classes: int, epochs: int, batch_size: int, lr: float, feature_dim: int, seed: int,
    device: torch.device, progress: bool = True,
) -> float:
    """Test accuracy of the judge's architecture trained from scratch on (x_train, y_train)."""
    if x_train.shape[1:] != x_test.shape[1:]:
        raise GanforgeError(f"train images {list(x_train.shape[1:])} and test images "
                            f"{list(x_test.shape[1:])} differ in shape")
    net = train_evaluator(x_train, y_train, num_classes=num_classes, feature_dim=feature_dim, epochs=epochs,
                          batch_size=batch_size, lr=lr, seed=seed, device=device, progress=progress)
    return accuracy(extract(net, x_test, device), y_test)


def classification_accuracy_score(
    synthetic: tuple[np.ndarray, np.ndarray],  # the generator's labelled train split
    real_train: tuple[np.ndarray, np.ndarray] | None,  # the real train split, for the mix (None: no mix)
    real_test: tuple[np.ndarray, np.ndarray],
    *, real_accuracy: float, num_classes: int, classifier: dict, seed: int, device: torch.device,
    progress: bool = True, log: Callable[[str], None] | None = None,
) -> dict:
    """{cas, cas_real, cas_mix (with real_train), cas_gap = cas_real - cas}: test accuracies on the real test
    split. classifier: the evaluator section's epochs, batch_size, lr, feature_dim; real_accuracy: the judge's
    test accuracy (the same classifier trained on the real train split)."""
    x_test, y_test = real_test
    settings = dict(num_classes=num_classes, seed=seed, device=device, progress=progress, **classifier)
    out = {"cas": trained_accuracy(*synthetic, x_test, y_test, **settings), "cas_real": float(real_accuracy)}
    out["cas_gap"] = out["cas_real"] - out["cas"]
    if log:
        log(f"CAS {out['cas']:.4f} (synthetic only) vs {out['cas_real']:.4f} (real)")
    if real_train is not None:
        mix = (np.concatenate([real_train[0], synthetic[0]]), np.concatenate([real_train[1], synthetic[1]]))
        out["cas_mix"] = trained_accuracy(*mix, x_test, y_test, **settings)
        if log:
            log(f"real + synthetic: {out['cas_mix']:.4f}")
    return out
