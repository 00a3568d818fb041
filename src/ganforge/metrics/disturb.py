"""Disturbances of real images at rising levels: the check that a judge's FID sees what it should.

Heusel et al. 2017 (appendix A1) validate FID by disturbing real images (Gaussian noise, Gaussian blur,
salt and pepper, swirl, ...) and showing that FID rises with the disturbance level; a judge whose FID does
not rise is blind to that defect. Mode dropping (real images of a subset of the classes) is the other
check: bench/judge_validity.py and tests/test_label_free.py run both.

Every disturbance maps uint8 images [N, C, H, W] to uint8 images of the same shape, seeded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Four levels each, from barely visible to strong (pixel values scaled to [0, 1]):
#   noise        std of added Gaussian noise
#   blur         sigma of a Gaussian blur, in pixels
#   salt_pepper  share of pixels set to black or white
#   swirl        strength of skimage's swirl about the image centre, radius the image side
LEVELS: dict[str, tuple[float, ...]] = {
    "noise": (0.05, 0.1, 0.2, 0.4),
    "blur": (0.5, 1.0, 1.5, 2.5),
    "salt_pepper": (0.02, 0.05, 0.1, 0.2),
    "swirl": (1.0, 2.0, 3.0, 5.0),
}


def _noise(x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(0, level, x.shape)


def _blur(x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(x, sigma=(0, 0, level, level), mode="nearest")


def _salt_pepper(x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    n, c, h, w = x.shape
    hit = rng.random((n, 1, h, w)) < level  # one mask for all channels: a pixel turns black or white
    salt = rng.random((n, 1, h, w)) < 0.5
    return np.where(hit, salt.astype(x.dtype), x)


def _swirl(x: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    from skimage.transform import swirl

    side = x.shape[-1]
    out = np.empty_like(x)
    for i, img in enumerate(x):
        out[i] = swirl(img.transpose(1, 2, 0), strength=level, radius=side, mode="edge").transpose(2, 0, 1)
    return out


DISTURBANCES: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "noise": _noise, "blur": _blur, "salt_pepper": _salt_pepper, "swirl": _swirl,
}


def disturb(images: np.ndarray, kind: str, level: float, seed: int = 0) -> np.ndarray:
    """uint8 images [N, C, H, W] disturbed by `kind` (a key of DISTURBANCES) at `level`."""
    x = images.astype(np.float64) / 255
    y = DISTURBANCES[kind](x, level, np.random.default_rng(seed))
    return np.clip(np.rint(y * 255), 0, 255).astype(np.uint8)


def drop_modes(images: np.ndarray, labels: np.ndarray, keep: int, n: int, seed: int = 0) -> np.ndarray:
    """n real images drawn (seeded, without replacement where possible) from the first `keep` classes
    only: a generator that dropped the other modes."""
    pool = np.flatnonzero(labels < keep)
    pick = np.random.default_rng(seed).choice(pool, n, replace=n > len(pool))
    return images[np.sort(pick)]
