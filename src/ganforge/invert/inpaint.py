"""Inpainting: the known pixels kept as they are, the hole filled by a method. Masks: True = hole.

  gan          masked inversion (projector.project with known = ~hole): the hole from G(z*)
  biharmonic   scikit-image's inpaint_biharmonic (the classical baseline: smooth, no prior of the data)
  nearest      the hole's pixels from the train image nearest the target over the known pixels (the
               baseline of a memory without a model)
"""

from __future__ import annotations

import numpy as np


def compose(target: np.ndarray, fill: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """uint8 [N, C, H, W]: target where known, fill in the hole (hole bool [N, 1, H, W], broadcast over C).
    A known pixel is copied, never recomputed."""
    return np.where(hole, fill, target).astype(np.uint8)


def biharmonic(target: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """uint8 [N, C, H, W]: each image's hole filled by skimage.restoration.inpaint_biharmonic."""
    from skimage.restoration import inpaint_biharmonic

    out = np.empty_like(target)
    for i, (x, m) in enumerate(zip(target, hole, strict=True)):
        filled = inpaint_biharmonic(x.astype(np.float64) / 255, m[0], channel_axis=0)  # [C, H, W] in [0, 1]
        out[i] = np.clip(np.round(filled * 255), 0, 255).astype(np.uint8)
    return compose(target, out, hole)


def nearest(target: np.ndarray, hole: np.ndarray, train: np.ndarray) -> np.ndarray:
    """uint8 [N, C, H, W]: each hole filled with the pixels of the train image (uint8 [M, C, H, W]) closest
    to the target in squared distance over the target's known pixels."""
    return compose(target, train[nearest_index(target, hole, train)], hole)


def nearest_index(target: np.ndarray, hole: np.ndarray | None, pool: np.ndarray, chunk: int = 8192,
                  with_distance: bool = False):
    """int64 [N]: the index of the image of `pool` (uint8 [M, C, H, W]) closest to each target in squared
    distance over the target's known pixels (hole None: all of them); with_distance: (index, distance)."""
    hole = np.zeros((len(target), 1, *target.shape[2:]), dtype=bool) if hole is None else hole
    known = np.broadcast_to(~hole, target.shape).reshape(len(target), -1).astype(np.float32)  # [N, P]
    t = target.reshape(len(target), -1).astype(np.float32) * known  # [N, P]
    best_d = np.full(len(target), np.inf, dtype=np.float64)
    best = np.zeros(len(target), dtype=np.int64)
    for lo in range(0, len(pool), chunk):
        x = pool[lo : lo + chunk].reshape(-1, t.shape[1]).astype(np.float32)  # [M', P]
        # sum_p k_p (t_p - x_p)^2 = sum k t^2 - 2 (k t) . x + k . x^2   [N, M']
        d = (t * t).sum(1, keepdims=True) - 2 * t @ x.T + known @ (x * x).T
        j = d.argmin(1)
        dj = d[np.arange(len(d)), j]
        better = dj < best_d
        best_d[better], best[better] = dj[better], lo + j[better]
    return (best, best_d) if with_distance else best
