"""Upscaling an image of any size in overlapping tiles (the answer to Real-ESRGAN's out-of-memory reports).

The LR image is cut into tile x tile cells; each is upscaled with `overlap` LR pixels of its neighbours around
it (less at the image's own borders), and only the cell's own part of the output is kept. An output pixel
depends on the input within net.receptive_radius() LR pixels (nets.py), so with overlap at least that the
tiled output is the untiled one: a cell's kept pixels see every input they would see whole, and the image's
true borders are padded in both cases alike. tests/test_superres.py checks tiled == untiled.
"""

from __future__ import annotations

import numpy as np
import torch

from ganforge.errors import ConfigError
from ganforge.superres.degrade import to_uint8, to_unit


@torch.no_grad()
def upscale(net, lr: np.ndarray, *, tile: int = 0, overlap: int | None = None,
            device: torch.device | str = "cpu", progress=None) -> np.ndarray:
    """uint8 LR [C, h, w] -> uint8 [C, h * scale, w * scale]. tile = 0: the whole image at once.
    overlap: LR pixels of context around each tile (None = the network's receptive radius).
    progress: called with (done, total) tiles."""
    s, (C, h, w) = net.scale, lr.shape
    if C != net.channels:
        raise ConfigError(f"the image has {C} channel(s), the model upscales {net.channels}")
    overlap = net.receptive_radius() if overlap is None else overlap
    x = to_unit(torch.from_numpy(np.ascontiguousarray(lr))[None].to(device))  # [1, C, h, w]
    if not tile or (tile >= h and tile >= w):
        return to_uint8(net(x))[0].cpu().numpy()
    if tile < 1 or overlap < 0:
        raise ConfigError(f"tile {tile} and overlap {overlap}: the tile must be at least 1 LR pixel and the "
                          "overlap at least 0")
    if min(h, w) < overlap:
        raise ConfigError(f"the image ({h} x {w} LR px) is smaller than the tiles' overlap ({overlap} px): "
                          "upscale it whole (tile 0), it fits")
    out = torch.empty(C, h * s, w * s, dtype=torch.uint8)
    cells = [(i, j) for i in range(0, h, tile) for j in range(0, w, tile)]
    for k, (i, j) in enumerate(cells):
        i0, j0 = max(i - overlap, 0), max(j - overlap, 0)
        i1, j1 = min(i + tile + overlap, h), min(j + tile + overlap, w)
        y = to_uint8(net(x[..., i0:i1, j0:j1]))[0].cpu()  # [C, (i1 - i0) s, (j1 - j0) s]
        th, tw = min(tile, h - i), min(tile, w - j)
        out[:, i * s : (i + th) * s, j * s : (j + tw) * s] = \
            y[:, (i - i0) * s : (i - i0 + th) * s, (j - j0) * s : (j - j0 + tw) * s]
        if progress is not None:
            progress(k + 1, len(cells))
    return out.numpy()
