"""Hole masks for inpainting, as LaMa's mask generators draw them, scaled to the image side.

A mask is bool [1, H, W], True = hole (the pixel is unknown). MASKS maps a params name to its generator:
  centre  a centred square of side `centre` x the image side (14 x 14 on 28 px at 0.5)
  boxes   1-3 axis-aligned boxes of side 0.15-0.45 of the image (LaMa's RandomRectangleMaskGenerator)
  thin, medium, thick  free-form strokes (LaMa's RandomIrregularMaskGenerator): random walks of 1-4
          segments with turns of up to 90 degrees, drawn as capsules of the kind's width (a share of the
          side: thin 0.04-0.08, medium 0.08-0.15, thick 0.15-0.25), 1-4 walks per mask
Mask i of a kind is drawn from its own generator seeded with (seed, i, the kind's index), so it does not
depend on how many are drawn. A mask with no hole, or no known pixel, is redrawn from the same generator.
Tables report every kind binned by the hole's share of the image (`bins`, params invert.inpaint.bins).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

STROKE_WIDTHS = {"thin": (0.04, 0.08), "medium": (0.08, 0.15), "thick": (0.15, 0.25)}  # share of the side


def centre(rng: np.random.Generator, size: int, share: float) -> np.ndarray:
    side = max(1, round(share * size))
    lo = (size - side) // 2
    m = np.zeros((size, size), dtype=bool)
    m[lo : lo + side, lo : lo + side] = True
    return m


def boxes(rng: np.random.Generator, size: int, share: float) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    for _ in range(rng.integers(1, 4)):
        h, w = (max(1, round(rng.uniform(0.15, 0.45) * size)) for _ in range(2))
        top, left = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        m[top : top + h, left : left + w] = True
    return m


def strokes(width: tuple[float, float]) -> Callable[[np.random.Generator, int, float], np.ndarray]:
    def draw(rng: np.random.Generator, size: int, share: float) -> np.ndarray:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5  # pixel centres
        m = np.zeros((size, size), dtype=bool)
        for _ in range(rng.integers(1, 5)):
            radius = rng.uniform(*width) * size / 2
            p = rng.uniform(0, size, 2)  # (x, y) start
            angle = rng.uniform(0, 2 * np.pi)
            for _ in range(rng.integers(1, 5)):
                angle += rng.uniform(-np.pi / 2, np.pi / 2)
                q = np.clip(p + rng.uniform(0.15, 0.5) * size * np.array([np.cos(angle), np.sin(angle)]),
                            0, size)
                m |= _segment_distance(xx, yy, p, q) <= max(radius, 0.5)
                p = q
        return m

    return draw


def _segment_distance(xx: np.ndarray, yy: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Distance of every pixel centre from the segment p-q: [H, W]."""
    d = q - p
    t = np.clip(((xx - p[0]) * d[0] + (yy - p[1]) * d[1]) / max(float(d @ d), 1e-12), 0, 1)
    return np.hypot(xx - (p[0] + t * d[0]), yy - (p[1] + t * d[1]))


MASKS: dict[str, Callable[[np.random.Generator, int, float], np.ndarray]] = {
    "centre": centre,
    "boxes": boxes,
    **{name: strokes(w) for name, w in STROKE_WIDTHS.items()},
}


def draw_masks(kind: str, n: int, size: int, seed: int, centre_share: float) -> np.ndarray:
    """bool [n, 1, size, size] of `kind` (a key of MASKS); True = hole."""
    index = list(MASKS).index(kind)
    out = np.empty((n, 1, size, size), dtype=bool)
    for i in range(n):
        rng = np.random.default_rng([seed, i, index])
        while True:
            m = MASKS[kind](rng, size, centre_share)
            if 0 < m.sum() < m.size:
                break
        out[i, 0] = m
    return out


def hole_share(masks: np.ndarray) -> np.ndarray:
    """float64 [n]: the share of each mask's pixels that are hole."""
    return masks.reshape(len(masks), -1).mean(1)


def bin_labels(bins: list[float]) -> list[str]:
    """'10-20%' for each pair of edges."""
    return [f"{round(100 * a)}-{round(100 * b)}%" for a, b in zip(bins[:-1], bins[1:], strict=True)]


def bin_index(share: np.ndarray, bins: list[float]) -> np.ndarray:
    """int [n]: the bin [bins[k], bins[k+1]) of each share (the last bin includes its upper edge)."""
    k = np.searchsorted(np.asarray(bins), share, side="right") - 1
    return np.clip(k, 0, len(bins) - 2)
