"""UCI optdigits (the 1,797 8x8 digits scikit-learn bundles), brought to MNIST's form.

digits.csv (sklearn/datasets/data/digits.csv.gz, decoded) has one row per digit: 64 values 0-16, row by row,
then the label 0-9. Each value counts the ink pixels of a 4x4 block of a 32x32 bitmap of the digit, so 16 is
full ink; the digits are ink-high like MNIST's (white on black), and fill their box.

To 28 px, as MNIST's digits sit in a 20x20 box inside 28x28: the 8x8 values are scaled to 0-255 (v * 255 /
16), resized to 20x20 by Pillow's bicubic filter on the float values (mode F; upsampling, so no antialiasing
blur is involved), rounded and clipped to 0..255 (bicubic overshoots at edges), and placed at rows and
columns 4..23 of a black 28x28 image: centred by the box, not by the centre of mass as MNIST is.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ganforge.errors import GanforgeError

SIDE, BOX, N_CLASSES = 28, 20, 10
ROWS = 1797  # what the UCI description and scikit-learn's docs say the file holds


def to_28px(values: np.ndarray) -> np.ndarray:
    """uint8 [N, 1, 28, 28] of optdigits values [N, 8, 8] (0-16): see the module docstring."""
    out = np.zeros((len(values), 1, SIDE, SIDE), np.uint8)
    pad = (SIDE - BOX) // 2
    for i, v in enumerate(values):
        im = Image.fromarray((v * (255 / 16)).astype(np.float32))  # mode F
        big = np.asarray(im.resize((BOX, BOX), Image.Resampling.BICUBIC))
        out[i, 0, pad:pad + BOX, pad:pad + BOX] = np.clip(np.rint(big), 0, 255).astype(np.uint8)
    return out


def read_digits(data: bytes, file: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 1, 28, 28], labels int64 [N]) of digits.csv's bytes; anything else than rows of
    64 values 0-16 and a label 0-9 is a GanforgeError naming `file`."""
    try:
        rows = np.loadtxt(data.decode("ascii").splitlines(), delimiter=",", ndmin=2)
    except (UnicodeDecodeError, ValueError) as e:
        raise GanforgeError(f"{file}: not the optdigits CSV ({e})") from None
    if rows.shape[1:] != (65,) or not len(rows) or (rows != np.rint(rows)).any() or \
            rows[:, :64].min() < 0 or rows[:, :64].max() > 16 or rows[:, 64].min() < 0 or \
            rows[:, 64].max() >= N_CLASSES:
        raise GanforgeError(f"{file}: {list(rows.shape)} values, not rows of 64 values 0-16 and a label 0-9")
    return to_28px(rows[:, :64].reshape(-1, 8, 8)), rows[:, 64].astype(np.int64)
