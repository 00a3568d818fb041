"""The numbers every inversion, inpainting and editing table reports.

PSNR is of uint8 pixels (peak 255) over the pixels a mask selects; a perfect match is capped at 100 dB so
that means and JSON stay finite. skimage.metrics.peak_signal_noise_ratio takes no mask: over the whole image
this agrees with it (tests/test_invert.py), which is why the masked form can be trusted.
"""

from __future__ import annotations

import numpy as np

MAX_PSNR_DB = 100.0


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """float64 [N]: PSNR in dB of uint8 images a vs b [N, C, H, W] over the pixels where `where` (bool,
    broadcast to [N, C, H, W]) is True; None = all pixels."""
    err = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    w = np.ones_like(err, dtype=bool) if where is None else np.broadcast_to(where, err.shape)
    mse = (err * w).reshape(len(a), -1).sum(1) / np.maximum(w.reshape(len(a), -1).sum(1), 1)
    with np.errstate(divide="ignore"):
        db = 10 * np.log10(255.0**2 / mse)
    return np.minimum(db, MAX_PSNR_DB)


def read_as(judge, images: np.ndarray, labels: np.ndarray, device) -> np.ndarray | None:
    """bool [N]: whether the classifier judge reads each image as its label; None for a label-free judge."""
    from ganforge.metrics import extract

    if getattr(judge, "kind", "classifier") != "classifier":
        return None
    return extract(judge, images, device).probs.argmax(1) == labels
