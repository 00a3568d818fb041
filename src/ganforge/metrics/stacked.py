"""Mode counting on Stacked MNIST (data/stacked.py) with the MNIST judge, as in VEEGAN and PacGAN.

The evaluator stage trains the usual CNN judge (metrics/evaluator.py) on MNIST digits: the R, G and B
channels of the stacked training images, unstacked. A sample's mode is then 100 r + 10 g + b of the digits
the judge reads in its three channels; the metrics are those of metrics/modes.py over the 1000 modes:
modes covered (at least evaluate.modes.min_count samples: the papers count a mode with one sample, so use
min_count 1 to compare with them) and the KL of the mode histogram from uniform, over evaluate.n samples
(PacGAN and VEEGAN use 26,000). Every sample has a mode here, so instead of the toy data's high-quality
share there is clear_samples: the share of images whose three digits the judge reads with probability
>= CLEAR (a judge reads unclear strokes as some digit all the same, and not evenly: a blotchy generator
skews the digit shares, and so the KL, without dropping a mode).

Where the KL lives: KL(q || uniform over 1000) = KL_r + KL_g + KL_b + dependence exactly, where KL_c is the
KL of channel c's digit shares from uniform over 10 and dependence (the total correlation, >= 0) measures
how far the three digits are from independent. A generator that draws too many 3s in every channel and one
that ties its channels together fail the same KL for different reasons; digit_kls tells which.
"""

from __future__ import annotations

import numpy as np
import torch

from ganforge.data.stacked import MODES, modes_of_digits, unstack
from ganforge.errors import GanforgeError
from ganforge.metrics.evaluator import Evaluator, FeatureSet, accuracy, extract, train_evaluator
from ganforge.metrics.modes import kl_from_uniform, mode_histogram, mode_metrics

CLEAR = 0.9  # a digit is read clearly when the judge gives its class at least this probability


def read_stacked(net: Evaluator, images: np.ndarray, device: torch.device | str
                 ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 3, 28, 28] -> (their modes int64 [N] as the MNIST judge reads their channels, whether
    it read all three digits of each clearly: bool [N])."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise GanforgeError(f"Stacked MNIST samples must be [N, 3, 28, 28], got {list(images.shape)}")
    digits, _ = unstack(images, np.zeros(len(images), np.int64))
    return _modes(extract(net, digits, device))


def stacked_features(net: Evaluator, images: np.ndarray, device: torch.device | str) -> np.ndarray:
    """uint8 images [N, 3, 28, 28] -> the MNIST judge's features of their three digits side by side
    [N, 3 * feature_dim]: the space of the memorisation check."""
    digits, _ = unstack(images, np.zeros(len(images), np.int64))
    return extract(net, digits, device).features.reshape(len(images), -1)


def _modes(read: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
    """The judge's reading of unstacked digits (R, G, B of each image in turn) -> read_stacked's pair."""
    return modes_of_digits(read.probs.argmax(axis=1)), (read.probs.max(axis=1) >= CLEAR).reshape(-1, 3).all(1)


def digit_kls(modes: np.ndarray) -> dict:
    """The mode KL split into its parts (module docstring): digit_kl_r, digit_kl_g, digit_kl_b and
    channel_dependence, which sum to the KL of the 1000-mode histogram from uniform."""
    counts = mode_histogram(modes, MODES).reshape(10, 10, 10)  # [r, g, b]: mode = 100 r + 10 g + b
    parts = {f"digit_kl_{c}": kl_from_uniform(counts.sum(axis=tuple(a for a in range(3) if a != i)))
             for i, c in enumerate("rgb")}
    parts["channel_dependence"] = kl_from_uniform(counts.ravel()) - sum(parts.values())
    return parts


def stacked_metrics(modes: np.ndarray, clear: np.ndarray, min_count: int) -> dict:
    """mode_metrics over the 1000 modes (read_stacked's), the KL's parts, and instead of the toy data's
    high-quality share (every image has a mode here) clear_samples: the share of images whose three digits
    the judge read clearly."""
    m = mode_metrics(modes, MODES, min_count)
    del m["high_quality"]
    return {**m, "clear_samples": float(clear.mean()) if len(clear) else 0.0, **digit_kls(modes)}


def stacked_judge(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
                  feature_dim: int, epochs: int, batch_size: int, lr: float, seed: int,
                  device: torch.device | str, floor_n: int, min_count: int, progress: bool
                  ) -> tuple[Evaluator, dict, np.ndarray]:
    """The evaluator stage's work for Stacked MNIST: (the MNIST judge trained on the unstacked digits,
    metrics.json: its digit accuracy on the unstacked test split, the test split's and the floor's mode
    metrics, and the test split's mode shares [1000]). The floor: the first floor_n real train images."""
    if floor_n > len(x_train):
        raise GanforgeError(f"evaluate.n is {floor_n} but the train split holds only {len(x_train)} images")
    digits, digit_labels = unstack(x_train, y_train)
    net = train_evaluator(digits, digit_labels, num_classes=10, feature_dim=feature_dim, epochs=epochs,
                          batch_size=batch_size, lr=lr, seed=seed, device=torch.device(device),
                          progress=progress)
    test_digits, test_digit_labels = unstack(x_test, y_test)
    test_read = extract(net, test_digits, device)  # once, for the digit accuracy and the modes
    test_modes, test_clear = _modes(test_read)
    metrics = {"judge": "stacked-mnist", "accuracy": accuracy(test_read, test_digit_labels),
               "test_n": len(x_test), "test_mode_accuracy": float((test_modes == y_test).mean()),
               "test": stacked_metrics(test_modes, test_clear, min_count),
               "floor": stacked_metrics(*read_stacked(net, x_train[:floor_n], device), min_count)}
    counts = mode_histogram(test_modes, MODES)
    return net, metrics, counts / max(counts.sum(), 1)
