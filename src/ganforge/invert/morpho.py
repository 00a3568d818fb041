"""Morpho-MNIST's stroke measures of digit images (Castro et al. 2019), as its measure.py defines them.

Written here because Morpho-MNIST is not a maintained package on PyPI; the parts come from scikit-image
(medial_axis, pyramid_expand). Each image is upsampled 4x (cubic), binarised at half its intensity range,
and measured:
  thickness  2 x the mean distance-to-background along the medial axis, in pixels of the original image
  slant      arctan(-u11 / u02) of the upsampled image's central moments, in degrees (> 0: leaning right)
  width      the horizontal extent of the slant-corrected ink between its 1% and 99% quantiles, in pixels
"""

from __future__ import annotations

import numpy as np

ATTRIBUTES = ("thickness", "slant", "width")
SCALE = 4


def measure(images: np.ndarray) -> dict[str, np.ndarray]:
    """images uint8 [N, 1, H, W] (ink bright on dark) -> {attribute: float64 [N]}; an image without ink
    measures nan."""
    out = {a: np.full(len(images), np.nan) for a in ATTRIBUTES}
    for i, img in enumerate(images):
        for a, v in measure_one(img[0]).items():
            out[a][i] = v
    return out


def measure_one(img: np.ndarray) -> dict[str, float]:
    from skimage.morphology import medial_axis
    from skimage.transform import pyramid_expand

    hi = pyramid_expand(img.astype(np.float64) / 255, upscale=SCALE, order=3)  # [H*4, W*4]
    lo, top = hi.min(), hi.max()
    if top - lo < 1e-6:
        return {a: float("nan") for a in ATTRIBUTES}
    ink = hi >= lo + 0.5 * (top - lo)
    skel, dist = medial_axis(ink, return_distance=True, rng=0)  # seeded ties: same image, same measure
    thickness = 2 * dist[skel].mean() / SCALE if skel.any() else float("nan")
    w = np.clip(hi, 0, None)
    y, x = np.mgrid[0 : hi.shape[0], 0 : hi.shape[1]].astype(np.float64)
    m00 = w.sum()
    cx, cy = (x * w).sum() / m00, (y * w).sum() / m00
    u11 = ((x - cx) * (y - cy) * w).sum() / m00
    u02 = ((y - cy) ** 2 * w).sum() / m00
    shear = u11 / u02
    xs = (x - shear * (y - cy)).ravel()  # slant-corrected horizontal position
    order = np.argsort(xs)
    cdf = np.cumsum(w.ravel()[order]) / m00
    left, right = np.interp([0.01, 0.99], cdf, xs[order])
    return {"thickness": float(thickness), "slant": float(np.degrees(np.arctan(-shear))),
            "width": float((right - left) / SCALE)}
