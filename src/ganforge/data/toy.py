"""Toy 2-D data sets of the mode-collapse benchmarks: Gaussian mixtures whose modes can be counted.

ring8   8 Gaussians evenly spaced on a circle of radius 2, std 0.02 (Metz et al. 2017, "Unrolled GANs";
        Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN)
grid25  25 Gaussians on the 5 x 5 grid {-4, -2, 0, 2, 4}^2, std 0.05 (VEEGAN, PacGAN)

Nothing is downloaded: the download stage samples both splits from base.seed, each point from a uniformly
chosen mode. In the prepared format the points are float32 [N, 2, 1, 1]: two channels of a 1x1 "image", so
every image-shaped code path (losses, penalties, packing, minibatch stddev) runs on them unchanged; the
label is the index of the mode a point was drawn from. info.json carries the mode centres and the std, from
which the evaluator stage writes the mode table that judges samples (ganforge.metrics.modes).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

# Split sizes: like MNIST's 60,000 / 10,000, a property of the data set, not a hyperparameter.
TRAIN_POINTS = 100_000
TEST_POINTS = 10_000


@dataclass(frozen=True)
class Mixture:
    centres: tuple[tuple[float, float], ...]  # [K, 2] mode centres
    std: float  # of each isotropic Gaussian


def _ring(k: int, radius: float, std: float) -> Mixture:
    angles = [2 * math.pi * i / k for i in range(k)]
    return Mixture(tuple((round(radius * math.cos(a), 12), round(radius * math.sin(a), 12)) for a in angles),
                   std)


def _grid(side: int, spacing: float, std: float) -> Mixture:
    ticks = [spacing * (i - (side - 1) / 2) for i in range(side)]
    return Mixture(tuple((x, y) for x in ticks for y in ticks), std)


MIXTURES: dict[str, Mixture] = {
    "ring8": _ring(8, radius=2.0, std=0.02),
    "grid25": _grid(5, spacing=2.0, std=0.05),
}


def mode_names(name: str) -> tuple[str, ...]:
    """Class names of the modes: their centres, e.g. '(2, 0)'."""
    return tuple(f"({x:g}, {y:g})" for x, y in MIXTURES[name].centres)


def sample_points(name: str, n: int, seed: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(points float32 [n, 2, 1, 1], labels int64 [n] = the mode each was drawn from): the same for the
    same (name, n, seed, split) on every machine (numpy's PCG64 from a hash of them)."""
    mix = MIXTURES[name]
    key = int.from_bytes(hashlib.sha256(f"{name}/{seed}/{split}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(key)
    labels = rng.integers(len(mix.centres), size=n)  # [n]
    points = np.asarray(mix.centres)[labels] + mix.std * rng.standard_normal((n, 2))  # [n, 2]
    return points.astype(np.float32).reshape(n, 2, 1, 1), labels.astype(np.int64)


def toy_splits(name: str, seed: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """Both splits of toy data set `name`, and its info.json entries (classes, centres, std, source)."""
    mix = MIXTURES[name]
    splits = {"train": sample_points(name, TRAIN_POINTS, seed, "train"),
              "test": sample_points(name, TEST_POINTS, seed, "test")}
    info = {"classes": list(mode_names(name)), "centres": [list(c) for c in mix.centres], "std": mix.std,
            "source": f"sampled from base.seed {seed} (no download)"}
    return splits, info
