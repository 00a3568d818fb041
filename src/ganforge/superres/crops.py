"""HR crops for training and judging, from images of any sizes (the photos) or of one size (digits).

Training crops are drawn on the device from an explicit torch.Generator, with no host reads (the engine's
step contract): every image is flattened into one uint8 buffer and a crop is a gather at computed indices.
Each valid crop position of the whole set is equally likely (an image is picked with probability in
proportion to its number of positions), then, with `augment`, one of the 8 flips/quarter turns.
"""

from __future__ import annotations

import numpy as np
import torch

from ganforge.errors import ConfigError


class CropSampler:
    def __init__(self, images: list[np.ndarray], size: int, augment: bool, device: torch.device | str):
        # images: uint8 [C, H, W] each, every side at least `size`
        small = [x.shape[1:] for x in images if min(x.shape[1:]) < size]
        if small:
            raise ConfigError(f"{len(small)} train image(s) are smaller than the HR crop ({size} px; the "
                              f"smallest is {list(min(small))}): lower the crop or drop them")
        self.size, self.augment, self.channels = size, augment, images[0].shape[0]
        flat = [torch.from_numpy(np.ascontiguousarray(x)).reshape(-1) for x in images]
        self.buf = torch.cat(flat).to(device)  # uint8: every image, one after the other
        sizes = torch.tensor([x.size for x in images])
        self.offset = (sizes.cumsum(0) - sizes).to(device)  # [P] int64: where image p starts in buf
        self.H = torch.tensor([x.shape[1] for x in images]).to(device)
        self.W = torch.tensor([x.shape[2] for x in images]).to(device)
        self.positions = ((self.H - size + 1) * (self.W - size + 1)).double()  # [P]
        self.ar = torch.arange(size, device=device)

    def draw(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """uint8 [n, C, size, size]."""
        dev, s = self.buf.device, self.size
        p = torch.multinomial(self.positions, n, replacement=True, generator=gen)  # [n]
        H, W = self.H[p], self.W[p]
        y = (torch.rand(n, device=dev, generator=gen) * (H - s + 1)).long().clamp_(max=H - s)
        x = (torch.rand(n, device=dev, generator=gen) * (W - s + 1)).long().clamp_(max=W - s)
        c = torch.arange(self.channels, device=dev)
        idx = (self.offset[p, None, None, None] + (c[None, :, None, None] * H[:, None, None, None]
               + y[:, None, None, None] + self.ar[None, None, :, None]) * W[:, None, None, None]
               + x[:, None, None, None] + self.ar[None, None, None, :])  # [n, C, s, s]
        crops = self.buf[idx]
        if self.augment:  # the dihedral group: mirror, flip, transpose
            flips = torch.rand(n, 3, device=dev, generator=gen) < 0.5
            crops = torch.where(flips[:, 0, None, None, None], crops.flip(-1), crops)
            crops = torch.where(flips[:, 1, None, None, None], crops.flip(-2), crops)
            crops = torch.where(flips[:, 2, None, None, None], crops.transpose(-1, -2), crops)
        return crops


def grid_crops(images: list[np.ndarray], size: int, offset: int = 0) -> np.ndarray:
    """Non-overlapping size x size crops of each image on a regular grid starting `offset` pixels from its
    top-left corner, in image then row order (the judged patches: the same positions in HR, bicubic and SR
    images): uint8 [N, C, size, size]."""
    out = []
    for x in images:
        _, H, W = x.shape
        out += [x[:, i : i + size, j : j + size] for i in range(offset, H - size + 1, size)
                for j in range(offset, W - size + 1, size)]
    return np.stack(out)
