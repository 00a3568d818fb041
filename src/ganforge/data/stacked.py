"""Stacked MNIST: three MNIST digits drawn independently, stacked as the R, G, B channels: 1000 modes.

The benchmark of Metz et al. 2017 (Unrolled GANs), Srivastava et al. 2017 (VEEGAN) and Lin et al. 2018
(PacGAN), at 28 x 28 x 3 as in VEEGAN and PacGAN. The download stage builds it from the (verified) MNIST
files: each split holds as many stacked images as the MNIST split of the same name (60,000 and 10,000),
each channel an MNIST digit of that split drawn uniformly at random, with replacement, from base.seed.
The label is 100 r + 10 g + b of the three digits (r, g, b their MNIST labels), so the mode of an image is
its label; classes are "000" .. "999".
"""

from __future__ import annotations

import hashlib

import numpy as np

MODES = 1000
CLASSES = tuple(f"{k:03d}" for k in range(MODES))


def stack(images: np.ndarray, labels: np.ndarray, n: int, seed: int, split: str
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MNIST images uint8 [M, 1, 28, 28] and labels [M] -> (stacked uint8 [n, 3, 28, 28], labels int64 [n],
    the source indices int64 [n, 3] of the R, G, B digits), the same for the same seed on every machine."""
    key = int.from_bytes(hashlib.sha256(f"stacked-mnist/{seed}/{split}".encode()).digest()[:8], "little")
    idx = np.random.default_rng(key).integers(len(images), size=(n, 3))  # [n, 3]
    stacked = images[idx, 0]  # [n, 3, 28, 28]
    digits = labels[idx]  # [n, 3]
    return stacked, (100 * digits[:, 0] + 10 * digits[:, 1] + digits[:, 2]).astype(np.int64), idx


def unstack(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stacked images [N, 3, H, W] with labels [N] -> their digits as MNIST images [3N, 1, H, W] (image i's
    R, G, B at 3i, 3i + 1, 3i + 2) and the digits' labels [3N]."""
    n = len(images)
    digits = np.stack([labels // 100, labels // 10 % 10, labels % 10], axis=1)  # [N, 3]
    return images.reshape(n * 3, 1, *images.shape[2:]), digits.reshape(n * 3).astype(np.int64)


def modes_of_digits(digits: np.ndarray) -> np.ndarray:
    """Predicted digits [3N] (R, G, B of each image in turn) -> the images' modes [N]: 100 r + 10 g + b."""
    d = digits.reshape(-1, 3).astype(np.int64)
    return 100 * d[:, 0] + 10 * d[:, 1] + d[:, 2]
